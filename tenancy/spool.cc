// The spool's file: one JSON object per line, {"row": {...}, "token": ...} or {"done": id}.
#include "tenancy/spool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/json.h"

namespace terse::tenancy {
namespace {

Json RowJson(const UsageRow& r) {
  return Json{{"request_id", r.request_id},
              {"time_us", absl::ToUnixMicros(r.time)},
              {"tenant_id", r.tenant_id},
              {"key_id", r.key_id},
              {"route", r.route},
              {"provider", r.provider},
              {"model", r.model},
              {"original_prompt_tokens", r.original_prompt_tokens},
              {"sent_prompt_tokens", r.sent_prompt_tokens},
              {"completion_tokens", r.completion_tokens},
              {"cached_tokens", r.cached_tokens},
              {"cost", r.cost},
              {"savings", r.savings},
              {"latency_ms", r.latency_ms},
              {"http_status", r.http_status},
              {"compressed", r.compressed},
              {"shed", r.shed}};
}

UsageRow RowOf(const Json& j) {
  UsageRow r;
  r.request_id = j.at("request_id").get<std::string>();
  r.time = absl::FromUnixMicros(j.at("time_us").get<int64_t>());
  r.tenant_id = j.at("tenant_id").get<std::string>();
  r.key_id = j.at("key_id").get<std::string>();
  r.route = j.at("route").get<std::string>();
  r.provider = j.at("provider").get<std::string>();
  r.model = j.at("model").get<std::string>();
  r.original_prompt_tokens = j.at("original_prompt_tokens").get<int64_t>();
  r.sent_prompt_tokens = j.at("sent_prompt_tokens").get<int64_t>();
  r.completion_tokens = j.at("completion_tokens").get<int64_t>();
  r.cached_tokens = j.at("cached_tokens").get<int64_t>();
  r.cost = j.at("cost").get<int64_t>();
  r.savings = j.at("savings").get<int64_t>();
  r.latency_ms = j.at("latency_ms").get<int64_t>();
  r.http_status = j.at("http_status").get<int>();
  r.compressed = j.at("compressed").get<bool>();
  r.shed = j.at("shed").get<bool>();
  return r;
}

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat("spool: ", what, ": ", strerror(errno)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("cannot open " + path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return absl::FailedPreconditionError(
        path + " is in use by another process; each gateway needs a data_dir of its own");
  }
  // The file's name must survive a power cut too.
  if (const int dir = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_CLOEXEC);
      dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  std::unique_ptr<Spool> spool(new Spool(path, fd));
  absl::Status status;
  {
    absl::MutexLock lock(&spool->mu_);
    status = spool->Load();
  }
  if (!status.ok()) return status;
  return spool;
}

Spool::~Spool() { ::close(fd_); }

absl::Status Spool::Load() {
  std::ifstream in(path_, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  const std::string all = text.str();
  size_t start = 0, end;
  while ((end = all.find('\n', start)) != std::string::npos) {
    const Json line = Json::parse(all.begin() + start, all.begin() + end, nullptr, false);
    start = end + 1;
    if (line.is_discarded() || !line.is_object()) continue;
    try {
      if (line.contains("done")) {
        if (auto it = by_id_.find(line.at("done").get<std::string>()); it != by_id_.end()) {
          entries_.erase(it->second);
          by_id_.erase(it);
        }
      } else if (line.contains("row")) {
        Entry entry{RowOf(line.at("row")), line.value("token", "")};
        if (by_id_.contains(entry.row.request_id)) continue;
        by_id_[entry.row.request_id] = next_;
        entries_.emplace(next_++, std::move(entry));
      }
    } catch (const Json::exception&) {
      // A line of another shape: skipped, as a torn one is.
    }
  }
  if (start < all.size() && ::ftruncate(fd_, static_cast<off_t>(start)) != 0) {
    return Errno("cannot cut a torn line off " + path_);
  }
  if (entries_.empty() && start > 0 && ::ftruncate(fd_, 0) != 0) return Errno("truncate");
  return absl::OkStatus();
}

absl::Status Spool::Append(const std::string& line, bool sync) {
  const std::string data = line + "\n";
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errno("write " + path_);
    done += static_cast<size_t>(n);
  }
  if (sync && ::fdatasync(fd_) != 0) return Errno("fsync " + path_);
  return absl::OkStatus();
}

absl::StatusOr<bool> Spool::Add(const UsageRow& row, const std::string& token) {
  absl::MutexLock lock(&mu_);
  if (by_id_.contains(row.request_id)) return false;
  std::string line;
  try {
    line = Json{{"row", RowJson(row)}, {"token", token}}.dump();
  } catch (const Json::exception&) {
    return absl::InvalidArgumentError("spool: row " + row.request_id + " is not valid UTF-8");
  }
  if (absl::Status s = Append(line, /*sync=*/true); !s.ok()) return s;
  by_id_[row.request_id] = next_;
  entries_.emplace(next_++, Entry{row, token});
  return true;
}

bool Spool::Contains(const std::string& request_id) const {
  absl::MutexLock lock(&mu_);
  return by_id_.contains(request_id);
}

std::vector<Spool::Entry> Spool::Entries() const {
  absl::MutexLock lock(&mu_);
  std::vector<Entry> out;
  for (const auto& [seq, entry] : entries_) out.push_back(entry);
  return out;
}

absl::Status Spool::Remove(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(request_id);
  if (it == by_id_.end()) return absl::OkStatus();
  entries_.erase(it->second);
  by_id_.erase(it);
  if (entries_.empty()) {
    // Nothing waits: the file starts over (O_APPEND writes go to the new end).
    if (::ftruncate(fd_, 0) != 0) return Errno("truncate " + path_);
    return absl::OkStatus();
  }
  return Append(Json{{"done", request_id}}.dump(), /*sync=*/false);
}

size_t Spool::size() const {
  absl::MutexLock lock(&mu_);
  return by_id_.size();
}

}  // namespace terse::tenancy
