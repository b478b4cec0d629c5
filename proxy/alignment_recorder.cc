// Prompt/response pairs for tools/align.py: a bounded queue and one writer thread, so a slow or
// failing disk never holds up a request.
#include "proxy/alignment_recorder.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "compressor/chat_compression.h"
#include "json/codec.h"
#include "proxy/log.h"

namespace terse::proxy {
namespace {

std::string TextOf(const Json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  if (!content.is_array()) return out;
  for (const Json& part : content) {
    if (!part.is_object() || part.value("type", "") != "text") continue;
    auto text = part.find("text");
    if (text == part.end() || !text->is_string()) continue;
    if (!out.empty()) out += '\n';
    out += text->get<std::string>();
  }
  return out;
}

// Appends all of `line` with O_APPEND writes; false (errno set) on failure.
bool WriteAll(int fd, const std::string& line) {
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string RenderAlignmentPrompt(const Json& messages) {
  std::string out;
  if (!messages.is_array()) return out;
  for (const Json& message : messages) {
    if (!message.is_object()) continue;
    auto content = message.find("content");
    if (content == message.end()) continue;
    std::string text = compressor::WithoutMarkup(TextOf(*content));
    if (text.empty()) continue;
    if (!out.empty()) out += '\n';
    out += message.value("role", "user");
    out += ": ";
    out += text;
  }
  return out;
}

std::string AlignmentAnswerText(const Json& response_or_chunk) {
  auto choices = response_or_chunk.find("choices");
  if (choices == response_or_chunk.end() || !choices->is_array()) return "";
  for (const Json& choice : *choices) {
    if (!choice.is_object() || choice.value("index", 0) != 0) continue;
    for (const char* holder : {"message", "delta"}) {
      auto it = choice.find(holder);
      if (it == choice.end() || !it->is_object()) continue;
      auto content = it->find("content");
      if (content != it->end() && content->is_string()) return content->get<std::string>();
      return "";
    }
    auto text = choice.find("text");
    if (text != choice.end() && text->is_string()) return text->get<std::string>();
    return "";
  }
  return "";
}

struct AlignmentRecorder::State {
  // Constant after construction.
  size_t capacity = 1024;

  std::mutex mu;
  std::condition_variable wake;                    // the writer waits here for lines or stop
  std::condition_variable progress;                // Flush waits here
  std::deque<std::pair<std::string, Json>> queue;  // guarded by mu
  uint64_t queued = 0;       // lines ever accepted into the queue; guarded by mu
  uint64_t finished = 0;     // of those, lines written or dropped by the writer; guarded by mu
  bool stopping = false;     // guarded by mu
  bool warned_full = false;  // guarded by mu

  std::atomic<uint64_t> written{0};
  std::atomic<uint64_t> dropped{0};

  // The writer thread's own.
  std::map<std::string, int> files;  // path -> O_APPEND descriptor
  std::set<std::string> warned_paths;
  std::thread writer;

  void Run() {
    std::unique_lock lock(mu);
    for (;;) {
      wake.wait(lock, [&] { return stopping || !queue.empty(); });
      if (queue.empty()) break;  // stopping, and everything is written
      std::deque<std::pair<std::string, Json>> batch;
      batch.swap(queue);
      lock.unlock();
      for (auto& [path, pair] : batch) Append(path, pair);
      lock.lock();
      finished += batch.size();
      progress.notify_all();
    }
    for (auto& [path, fd] : files) ::close(fd);
    files.clear();
  }

  void Append(const std::string& path, const Json& pair) {
    std::string line = json::DumpJson(pair);
    line += '\n';
    auto it = files.find(path);
    if (it == files.end()) {
      int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) return Fail(path, "cannot open", errno);
      it = files.emplace(path, fd).first;
    }
    // One write per line: O_APPEND puts it at the end in one piece.
    if (!WriteAll(it->second, line)) {
      const int error = errno;
      ::close(it->second);
      files.erase(it);  // reopened for the next line: the trouble may pass
      return Fail(path, "cannot write", error);
    }
    written.fetch_add(1, std::memory_order_relaxed);
  }

  void Fail(const std::string& path, const char* what, int error) {
    dropped.fetch_add(1, std::memory_order_relaxed);
    if (!warned_paths.insert(path).second) return;
    LogJson(LogLevel::kWarn, Json{{"msg", "alignment pairs are not being recorded"},
                                  {"path", path},
                                  {"error", std::string(what) + ": " + std::strerror(error)}});
  }
};

AlignmentRecorder::AlignmentRecorder(size_t queue_capacity) : state_(std::make_unique<State>()) {
  state_->capacity = queue_capacity > 0 ? queue_capacity : 1;
  state_->writer = std::thread([s = state_.get()] { s->Run(); });
}

AlignmentRecorder::~AlignmentRecorder() {
  {
    std::lock_guard lock(state_->mu);
    state_->stopping = true;
  }
  state_->wake.notify_all();
  state_->writer.join();
}

void AlignmentRecorder::Record(std::string path, Json pair) {
  bool warn = false;
  {
    std::lock_guard lock(state_->mu);
    if (state_->queue.size() < state_->capacity) {
      state_->queue.emplace_back(std::move(path), std::move(pair));
      ++state_->queued;
    } else {
      state_->dropped.fetch_add(1, std::memory_order_relaxed);
      warn = !std::exchange(state_->warned_full, true);
    }
  }
  if (warn) {
    LogJson(LogLevel::kWarn, Json{{"msg", "alignment pair queue full; dropping pairs"},
                                  {"capacity", state_->capacity}});
    return;
  }
  state_->wake.notify_one();
}

void AlignmentRecorder::Flush() {
  std::unique_lock lock(state_->mu);
  const uint64_t target = state_->queued;
  state_->progress.wait(lock, [&] { return state_->finished >= target; });
}

uint64_t AlignmentRecorder::written() const {
  return state_->written.load(std::memory_order_relaxed);
}

uint64_t AlignmentRecorder::dropped() const {
  return state_->dropped.load(std::memory_order_relaxed);
}

}  // namespace terse::proxy
