// The fake upstream: plain POSIX sockets, one thread per connection, a small HTTP/1.1 parser.
#include "tests/support/fake_upstream.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <type_traits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace terse::testing {
namespace {

// Longest wait of one poll, so that shutdown and client departures are noticed quickly even when
// a poll is not woken by them.
constexpr int kPollSliceMs = 50;
constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr size_t kMaxBodyBytes = 64 * 1024 * 1024;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// absl::StrCat does not take std::string_view with Debian's abseil; this small one does.
void AppendOne(std::string& out, std::string_view s) { out.append(s); }
template <typename T>
requires std::is_arithmetic_v<T>
void AppendOne(std::string& out, T n) { out += std::to_string(n); }
template <typename... Args>
void Append(std::string& out, const Args&... args) {
  (AppendOne(out, args), ...);
}
template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  Append(out, args...);
  return out;
}

bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

int CountWords(std::string_view text) {
  int words = 0;
  bool in_word = false;
  for (char c : text) {
    if (IsSpace(c)) {
      in_word = false;
    } else if (!in_word) {
      in_word = true;
      ++words;
    }
  }
  return words;
}

// "Hello big  world" -> "Hello ", "big  ", "world": each word keeps the whitespace after it, so
// the pieces concatenate back to the text.
std::vector<std::string> SplitWords(std::string_view text) {
  std::vector<std::string> pieces;
  size_t start = 0;
  for (size_t i = 1; i <= text.size(); ++i) {
    if (i == text.size() || (IsSpace(text[i - 1]) && !IsSpace(text[i]))) {
      pieces.emplace_back(text.substr(start, i - start));
      start = i;
    }
  }
  if (pieces.empty()) pieces.emplace_back("");
  return pieces;
}

// The text of an OpenAI or Anthropic message `content`: a string, or the text of its parts.
std::string ContentText(const Json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string text;
  if (content.is_array()) {
    for (const Json& part : content) {
      if (!part.is_object()) continue;
      if (part.value("type", "") == "text" && part.contains("text") && part["text"].is_string()) {
        if (!text.empty()) text += "\n";
        text += part["text"].get<std::string>();
      } else if (part.value("type", "") == "tool_result" && part.contains("content")) {
        if (!text.empty()) text += "\n";
        text += ContentText(part["content"]);
      }
    }
  }
  return text;
}

struct PromptInfo {
  std::string last_user_text;
  int words = 0;
};

PromptInfo ReadMessages(const Json& body) {
  PromptInfo info;
  if (body.contains("system")) info.words += CountWords(ContentText(body["system"]));
  if (body.contains("messages") && body["messages"].is_array()) {
    for (const Json& message : body["messages"]) {
      if (!message.is_object() || !message.contains("content")) continue;
      std::string text = ContentText(message["content"]);
      info.words += CountWords(text);
      if (message.value("role", "") == "user") info.last_user_text = text;
    }
  }
  return info;
}

std::string PromptText(const Json& body) {
  if (!body.contains("prompt")) return "";
  const Json& prompt = body["prompt"];
  if (prompt.is_string()) return prompt.get<std::string>();
  if (prompt.is_array() && !prompt.empty() && prompt[0].is_string()) {
    return prompt[0].get<std::string>();
  }
  return "";
}

Json Usage(int prompt, int completion) {
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion}};
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 529:
      return "Overloaded";
    default:
      return "Status";
  }
}

}  // namespace

std::string FakeRequest::Header(std::string_view name) const {
  std::string key = Lower(name);
  for (const auto& [k, v] : headers) {
    if (k == key) return v;
  }
  return "";
}

bool FakeRequest::HasHeader(std::string_view name) const {
  std::string key = Lower(name);
  for (const auto& [k, v] : headers) {
    if (k == key) return true;
  }
  return false;
}

Json FakeRequest::JsonBody() const {
  return Json::parse(body, nullptr, /*allow_exceptions=*/false);
}

FakeReply FakeReply::Text(std::string text) {
  FakeReply reply;
  reply.text = std::move(text);
  return reply;
}

FakeReply FakeReply::SlowStream(absl::Duration chunk_delay) {
  FakeReply reply;
  reply.chunk_delay = chunk_delay;
  return reply;
}

FakeReply FakeReply::Fail(int status, std::string message, std::string type, std::string code) {
  FakeReply reply;
  reply.action = Action::kFail;
  reply.status = status;
  reply.error_message = std::move(message);
  reply.error_type = std::move(type);
  reply.error_code = std::move(code);
  return reply;
}

FakeReply FakeReply::Reset() {
  FakeReply reply;
  reply.action = Action::kReset;
  return reply;
}

FakeReply FakeReply::Stall() {
  FakeReply reply;
  reply.action = Action::kStall;
  return reply;
}

// Serves one connection: reads requests, answers them as the server's replies say.
class FakeConnectionServer {
 public:
  FakeConnectionServer(FakeUpstream& server, FakeUpstream::Connection& connection, int fd)
      : server_(server), connection_(connection), fd_(fd) {}

  void Run() {
    while (!server_.stopping_) {
      std::optional<FakeRequest> request = ReadRequest();
      if (!request) break;
      request->received = absl::Now();
      bool client_wants_close = Lower(request->Header("connection")) == "close";
      {
        std::lock_guard<std::mutex> lock(server_.mu_);
        server_.requests_.push_back(*request);
        server_.changed_.notify_all();
      }
      FakeReply reply = server_.NextReply();
      Outcome outcome = Answer(*request, reply);
      if (outcome == Outcome::kReset) {
        server_.CloseConnection(&connection_, /*reset=*/true);
        return;
      }
      if (outcome == Outcome::kCutByClient) {
        std::lock_guard<std::mutex> lock(server_.mu_);
        ++server_.cut_by_client_;
        server_.changed_.notify_all();
        break;
      }
      if (outcome == Outcome::kKeepAlive) {
        std::lock_guard<std::mutex> lock(server_.mu_);
        ++server_.answers_written_;
        server_.changed_.notify_all();
      }
      if (outcome == Outcome::kGone || reply.close_after || reply.close_silently_after ||
          client_wants_close) {
        break;
      }
    }
    server_.CloseConnection(&connection_, /*reset=*/false);
  }

 private:
  enum class Outcome { kKeepAlive, kReset, kCutByClient, kGone };
  enum class Wait { kData, kClosed, kStopping, kTimeout };

  // Waits up to `timeout` for readable data (want_data) or only for the peer to leave.
  Wait WaitOn(bool want_data, absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (true) {
      if (server_.stopping_) return Wait::kStopping;
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return Wait::kTimeout;
      int slice = left > absl::Milliseconds(kPollSliceMs)
                      ? kPollSliceMs
                      : static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
      pollfd p{fd_, static_cast<short>(want_data ? (POLLIN | POLLRDHUP) : POLLRDHUP), 0};
      int n = ::poll(&p, 1, slice);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Wait::kClosed;
      if (n == 0) continue;
      if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return Wait::kClosed;
      if (want_data && (p.revents & POLLIN)) return Wait::kData;
      if (p.revents & POLLRDHUP) return Wait::kClosed;
    }
  }

  // Appends what the socket has to buffer_; false when the peer closed or the server stops.
  bool ReadMore() {
    while (true) {
      Wait w = WaitOn(/*want_data=*/true, absl::Hours(24));
      if (w != Wait::kData) {
        // POLLRDHUP with data still queued: drain what is there first.
        if (w == Wait::kClosed) {
          char buf[16384];
          ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
          if (n > 0) {
            buffer_.append(buf, static_cast<size_t>(n));
            return true;
          }
        }
        return false;
      }
      char buf[16384];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return false;
      buffer_.append(buf, static_cast<size_t>(n));
      return true;
    }
  }

  std::optional<FakeRequest> ReadRequest() {
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (buffer_.size() > kMaxHeaderBytes || !ReadMore()) return std::nullopt;
    }
    std::string head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);

    FakeRequest request;
    std::vector<std::string> lines = absl::StrSplit(head, "\r\n");
    std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
    if (first.size() < 2) return std::nullopt;
    request.method = first[0];
    request.target = first[1];
    request.path = request.target.substr(0, request.target.find('?'));
    for (size_t i = 1; i < lines.size(); ++i) {
      size_t colon = lines[i].find(':');
      if (colon == std::string::npos) continue;
      request.headers.emplace_back(Lower(Trim(std::string_view(lines[i]).substr(0, colon))),
                                   std::string(Trim(std::string_view(lines[i]).substr(colon + 1))));
    }

    if (Lower(request.Header("transfer-encoding")).find("chunked") != std::string::npos) {
      while (true) {
        size_t line_end;
        while ((line_end = buffer_.find("\r\n")) == std::string::npos) {
          if (!ReadMore()) return std::nullopt;
        }
        size_t size = std::strtoul(buffer_.substr(0, line_end).c_str(), nullptr, 16);
        while (buffer_.size() < line_end + 2 + size + 2) {
          if (!ReadMore()) return std::nullopt;
        }
        request.body.append(buffer_, line_end + 2, size);
        buffer_.erase(0, line_end + 2 + size + 2);
        if (size == 0) break;
        if (request.body.size() > kMaxBodyBytes) return std::nullopt;
      }
    } else {
      size_t length = 0;
      std::string cl = request.Header("content-length");
      if (!cl.empty() && !absl::SimpleAtoi(cl, &length)) return std::nullopt;
      if (length > kMaxBodyBytes) return std::nullopt;
      while (buffer_.size() < length) {
        if (!ReadMore()) return std::nullopt;
      }
      request.body = buffer_.substr(0, length);
      buffer_.erase(0, length);
    }
    return request;
  }

  bool Write(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // The outcome of a failed write or wait: the client left, or the server is stopping.
  Outcome Lost() const { return server_.stopping_ ? Outcome::kGone : Outcome::kCutByClient; }

  // Sleeps `d`, or returns false when the client leaves or the server stops first.
  bool Pause(absl::Duration d) {
    if (d <= absl::ZeroDuration()) return true;
    return WaitOn(/*want_data=*/false, d) == Wait::kTimeout;
  }

  std::string Head(int status, std::string_view content_type, const FakeReply& reply,
                   std::optional<size_t> content_length) {
    std::string head = Cat("HTTP/1.1 ", status, " ", Reason(status), "\r\n",
                           "Content-Type: ", content_type, "\r\n");
    if (content_length) {
      Append(head, "Content-Length: ", *content_length, "\r\n");
    } else {
      Append(head, "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n");
    }
    for (const auto& [k, v] : reply.headers) Append(head, k, ": ", v, "\r\n");
    if (reply.close_after) Append(head, "Connection: close\r\n");
    Append(head, "\r\n");
    return head;
  }

  Outcome SendJson(int status, const Json& body, const FakeReply& reply) {
    return SendText(status, body.dump(), reply);
  }

  Outcome SendText(int status, const std::string& text, const FakeReply& reply) {
    if (!Pause(reply.head_delay)) return Lost();
    if (!Write(Head(status, "application/json", reply, text.size()) + text)) return Lost();
    return Outcome::kKeepAlive;
  }

  bool WriteChunk(std::string_view data) {
    if (data.empty()) return true;
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return Write(Cat(size, data, "\r\n"));
  }

  // Streams `events` (whole SSE events); content events (`is_content`) get the chunk delay and
  // count towards reset_after_chunks.
  struct Event {
    std::string bytes;
    bool is_content = false;
  };
  Outcome SendStream(const std::vector<Event>& events, const FakeReply& reply) {
    if (!Pause(reply.head_delay)) return Lost();
    if (!Write(Head(200, "text/event-stream", reply, std::nullopt))) return Lost();
    int content_sent = 0;
    for (const Event& event : events) {
      if (event.is_content) {
        if (reply.reset_after_chunks >= 0 && content_sent == reply.reset_after_chunks) {
          return Outcome::kReset;
        }
        if (reply.stall_after_chunks >= 0 && content_sent == reply.stall_after_chunks) {
          Wait w = WaitOn(/*want_data=*/false, absl::InfiniteDuration());
          return w == Wait::kClosed ? Outcome::kCutByClient : Outcome::kGone;
        }
        if (!Pause(reply.chunk_delay)) return Lost();
        ++content_sent;
      }
      if (!WriteChunk(event.bytes)) return Lost();
    }
    if (!Write("0\r\n\r\n")) return Lost();
    return Outcome::kKeepAlive;
  }

  static std::string Data(const Json& j) { return "data: " + j.dump() + "\n\n"; }
  static std::string Typed(std::string_view type, const Json& j) {
    return Cat("event: ", type, "\ndata: ", j.dump(), "\n\n");
  }

  Outcome Answer(const FakeRequest& request, const FakeReply& reply) {
    switch (reply.action) {
      case FakeReply::Action::kReset:
        return Outcome::kReset;
      case FakeReply::Action::kStall: {
        Wait w = WaitOn(/*want_data=*/false, absl::InfiniteDuration());
        return w == Wait::kClosed ? Outcome::kCutByClient : Outcome::kGone;
      }
      case FakeReply::Action::kFail: {
        Json error;
        if (absl::EndsWith(request.path, "/messages")) {
          error = {{"type", "error"},
                   {"error", {{"type", reply.error_type}, {"message", reply.error_message}}}};
        } else {
          error = {{"error",
                    {{"message", reply.error_message},
                     {"type", reply.error_type},
                     {"param", nullptr},
                     {"code", reply.error_code.empty() ? Json(nullptr) : Json(reply.error_code)}}}};
        }
        return SendJson(reply.status, error, reply);
      }
      case FakeReply::Action::kAnswer:
        break;
    }

    Json body = request.JsonBody();
    if (!body.is_object()) body = Json::object();
    bool stream = body.value("stream", false);
    if (stream && !reply.raw_stream.empty()) {
      std::vector<Event> events;
      for (const std::string& piece : reply.raw_stream) events.push_back({piece, true});
      return SendStream(events, reply);
    }
    if (!stream && reply.raw_body) return SendText(200, *reply.raw_body, reply);
    if (!stream && reply.body) return SendJson(200, *reply.body, reply);

    const std::string& path = request.path;
    if (absl::EndsWith(path, "/chat/completions")) return AnswerChat(body, stream, reply);
    if (absl::EndsWith(path, "/completions")) return AnswerCompletion(body, stream, reply);
    if (absl::EndsWith(path, "/embeddings")) return AnswerEmbeddings(body, reply);
    if (absl::EndsWith(path, "/messages")) return AnswerMessages(body, stream, reply);
    if (absl::EndsWith(path, "/models")) {
      return SendJson(
          200,
          {{"object", "list"},
           {"data",
            Json::array({{{"id", "fake-model"}, {"object", "model"}, {"owned_by", "fake"}}})}},
          reply);
    }
    FakeReply not_found = reply;
    return SendJson(404,
                    {{"error",
                      {{"message", "no such path: " + path},
                       {"type", "invalid_request_error"},
                       {"param", nullptr},
                       {"code", nullptr}}}},
                    not_found);
  }

  int NextId() {
    std::lock_guard<std::mutex> lock(server_.mu_);
    return static_cast<int>(server_.requests_.size());
  }

  bool IncludeUsage(const Json& body) {
    return body.contains("stream_options") && body["stream_options"].is_object() &&
           body["stream_options"].value("include_usage", false);
  }

  Outcome AnswerChat(const Json& body, bool stream, const FakeReply& reply) {
    PromptInfo prompt = ReadMessages(body);
    std::string text = reply.text.value_or(prompt.last_user_text);
    int completion_words = CountWords(text);
    std::string id = Cat("chatcmpl-fake-", NextId());
    std::string model = body.value("model", "fake-model");
    int n = std::max(1, body.value("n", 1));
    if (!stream) {
      Json choices = Json::array();
      for (int i = 0; i < n; ++i) {
        choices.push_back({{"index", i},
                           {"message", {{"role", "assistant"}, {"content", text}}},
                           {"logprobs", nullptr},
                           {"finish_reason", "stop"}});
      }
      return SendJson(200,
                      {{"id", id},
                       {"object", "chat.completion"},
                       {"created", 1700000000},
                       {"model", model},
                       {"choices", choices},
                       {"usage", Usage(prompt.words, completion_words * n)}},
                      reply);
    }
    auto chunk = [&](Json choices) {
      return Json{{"id", id},
                  {"object", "chat.completion.chunk"},
                  {"created", 1700000000},
                  {"model", model},
                  {"choices", std::move(choices)}};
    };
    std::vector<Event> events;
    events.push_back({Data(chunk(Json::array({{{"index", 0},
                                               {"delta", {{"role", "assistant"}, {"content", ""}}},
                                               {"finish_reason", nullptr}}}))),
                      false});
    for (const std::string& piece : SplitWords(text)) {
      events.push_back(
          {Data(chunk(Json::array(
               {{{"index", 0}, {"delta", {{"content", piece}}}, {"finish_reason", nullptr}}}))),
           true});
    }
    events.push_back({Data(chunk(Json::array(
                          {{{"index", 0}, {"delta", Json::object()}, {"finish_reason", "stop"}}}))),
                      false});
    if (IncludeUsage(body)) {
      Json usage_chunk = chunk(Json::array());
      usage_chunk["usage"] = Usage(prompt.words, completion_words);
      events.push_back({Data(usage_chunk), false});
    }
    events.push_back({"data: [DONE]\n\n", false});
    return SendStream(events, reply);
  }

  Outcome AnswerCompletion(const Json& body, bool stream, const FakeReply& reply) {
    std::string prompt = PromptText(body);
    std::string text = reply.text.value_or(prompt);
    std::string id = Cat("cmpl-fake-", NextId());
    std::string model = body.value("model", "fake-model");
    Json usage = Usage(CountWords(prompt), CountWords(text));
    if (!stream) {
      return SendJson(200,
                      {{"id", id},
                       {"object", "text_completion"},
                       {"created", 1700000000},
                       {"model", model},
                       {"choices", Json::array({{{"text", text},
                                                 {"index", 0},
                                                 {"logprobs", nullptr},
                                                 {"finish_reason", "stop"}}})},
                       {"usage", usage}},
                      reply);
    }
    auto chunk = [&](std::string piece, Json finish) {
      return Json{{"id", id},
                  {"object", "text_completion"},
                  {"created", 1700000000},
                  {"model", model},
                  {"choices", Json::array({{{"text", std::move(piece)},
                                            {"index", 0},
                                            {"logprobs", nullptr},
                                            {"finish_reason", std::move(finish)}}})}};
    };
    std::vector<Event> events;
    for (const std::string& piece : SplitWords(text)) {
      events.push_back({Data(chunk(piece, nullptr)), true});
    }
    events.push_back({Data(chunk("", "stop")), false});
    if (IncludeUsage(body)) {
      Json usage_chunk = chunk("", nullptr);
      usage_chunk["choices"] = Json::array();
      usage_chunk["usage"] = usage;
      events.push_back({Data(usage_chunk), false});
    }
    events.push_back({"data: [DONE]\n\n", false});
    return SendStream(events, reply);
  }

  Outcome AnswerEmbeddings(const Json& body, const FakeReply& reply) {
    std::vector<std::string> inputs;
    if (body.contains("input")) {
      const Json& input = body["input"];
      if (input.is_string()) {
        inputs.push_back(input.get<std::string>());
      } else if (input.is_array()) {
        for (const Json& item : input)
          inputs.push_back(item.is_string() ? item.get<std::string>() : item.dump());
      }
    }
    Json data = Json::array();
    int words = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      int w = CountWords(inputs[i]);
      words += w;
      size_t hash = std::hash<std::string>()(inputs[i]);
      data.push_back(
          {{"object", "embedding"},
           {"index", i},
           {"embedding", Json::array({static_cast<double>(inputs[i].size()), static_cast<double>(w),
                                      static_cast<double>(hash % 1000) / 1000.0, 0.5})}});
    }
    return SendJson(200,
                    {{"object", "list"},
                     {"data", data},
                     {"model", body.value("model", "fake-embedding")},
                     {"usage", {{"prompt_tokens", words}, {"total_tokens", words}}}},
                    reply);
  }

  Outcome AnswerMessages(const Json& body, bool stream, const FakeReply& reply) {
    PromptInfo prompt = ReadMessages(body);
    std::string text = reply.text.value_or(prompt.last_user_text);
    int completion_words = CountWords(text);
    std::string id = Cat("msg_fake_", NextId());
    std::string model = body.value("model", "fake-claude");
    if (!stream) {
      return SendJson(
          200,
          {{"id", id},
           {"type", "message"},
           {"role", "assistant"},
           {"model", model},
           {"content", Json::array({{{"type", "text"}, {"text", text}}})},
           {"stop_reason", "end_turn"},
           {"stop_sequence", nullptr},
           {"usage", {{"input_tokens", prompt.words}, {"output_tokens", completion_words}}}},
          reply);
    }
    std::vector<Event> events;
    events.push_back(
        {Typed("message_start",
               {{"type", "message_start"},
                {"message",
                 {{"id", id},
                  {"type", "message"},
                  {"role", "assistant"},
                  {"model", model},
                  {"content", Json::array()},
                  {"stop_reason", nullptr},
                  {"stop_sequence", nullptr},
                  {"usage", {{"input_tokens", prompt.words}, {"output_tokens", 1}}}}}}),
         false});
    events.push_back(
        {Typed("content_block_start", {{"type", "content_block_start"},
                                       {"index", 0},
                                       {"content_block", {{"type", "text"}, {"text", ""}}}}),
         false});
    events.push_back({Typed("ping", {{"type", "ping"}}), false});
    for (const std::string& piece : SplitWords(text)) {
      events.push_back(
          {Typed("content_block_delta", {{"type", "content_block_delta"},
                                         {"index", 0},
                                         {"delta", {{"type", "text_delta"}, {"text", piece}}}}),
           true});
    }
    events.push_back(
        {Typed("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}}), false});
    events.push_back({Typed("message_delta",
                            {{"type", "message_delta"},
                             {"delta", {{"stop_reason", "end_turn"}, {"stop_sequence", nullptr}}},
                             {"usage", {{"output_tokens", completion_words}}}}),
                      false});
    events.push_back({Typed("message_stop", {{"type", "message_stop"}}), false});
    return SendStream(events, reply);
  }

  FakeUpstream& server_;
  FakeUpstream::Connection& connection_;
  const int fd_;
  std::string buffer_;
};

FakeUpstream::FakeUpstream() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error("fake upstream: socket failed");
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 512) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error("fake upstream: bind/listen on 127.0.0.1 failed");
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  if (::pipe2(wake_fds_, O_CLOEXEC) != 0) throw std::runtime_error("fake upstream: pipe failed");
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

FakeUpstream::~FakeUpstream() {
  stopping_ = true;
  char byte = 1;
  (void)!::write(wake_fds_[1], &byte, 1);
  accept_thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Connection& c : connections_) {
      if (c.fd >= 0) ::shutdown(c.fd, SHUT_RDWR);
    }
  }
  // The accept loop has ended, so the list no longer grows; threads only touch their own entry.
  for (Connection& c : connections_) c.thread.join();
  ::close(listen_fd_);
  ::close(wake_fds_[0]);
  ::close(wake_fds_[1]);
}

std::string FakeUpstream::base_url() const { return Cat("http://127.0.0.1:", port_, "/v1"); }

void FakeUpstream::SetDefaultReply(FakeReply reply) {
  std::lock_guard<std::mutex> lock(mu_);
  default_reply_ = std::move(reply);
}

void FakeUpstream::EnqueueReply(FakeReply reply) {
  std::lock_guard<std::mutex> lock(mu_);
  queued_.push_back(std::move(reply));
}

FakeReply FakeUpstream::NextReply() {
  std::lock_guard<std::mutex> lock(mu_);
  if (queued_.empty()) return default_reply_;
  FakeReply reply = std::move(queued_.front());
  queued_.pop_front();
  return reply;
}

std::vector<FakeRequest> FakeUpstream::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

size_t FakeUpstream::request_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_.size();
}

FakeRequest FakeUpstream::last_request() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_.empty() ? FakeRequest() : requests_.back();
}

bool FakeUpstream::WaitForRequestCount(size_t n, absl::Duration timeout) const {
  return WaitUntil(timeout, [&] { return requests_.size() >= n; });
}

int FakeUpstream::connections_accepted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return accepted_;
}

int FakeUpstream::open_connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_;
}

bool FakeUpstream::WaitForOpenConnections(int n, absl::Duration timeout) const {
  return WaitUntil(timeout, [&] { return open_ == n; });
}

int FakeUpstream::answers_cut_by_client() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cut_by_client_;
}

bool FakeUpstream::WaitForAnswersWritten(int n, absl::Duration timeout) const {
  return WaitUntil(timeout, [&] { return answers_written_ >= n; });
}

bool FakeUpstream::WaitForAnswersCutByClient(int n, absl::Duration timeout) const {
  return WaitUntil(timeout, [&] { return cut_by_client_ >= n; });
}

bool FakeUpstream::WaitUntil(absl::Duration timeout, absl::FunctionRef<bool()> done) const {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] { return done(); });
}

void FakeUpstream::CloseConnection(Connection* connection, bool reset) {
  std::lock_guard<std::mutex> lock(mu_);
  if (connection->fd >= 0) {
    if (reset) {
      linger l{1, 0};  // close with RST instead of FIN
      ::setsockopt(connection->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    ::close(connection->fd);
    connection->fd = -1;
    --open_;
    changed_.notify_all();
  }
}

void FakeUpstream::ReapFinished() {
  std::list<Connection> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      auto next = std::next(it);
      if (it->finished) done.splice(done.end(), connections_, it);
      it = next;
    }
  }
  for (Connection& c : done) c.thread.join();
}

void FakeUpstream::AcceptLoop() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fds_[0], POLLIN, 0}};
    int n = ::poll(fds, 2, 1000);
    ReapFinished();
    if (stopping_) break;
    if (n <= 0 || !(fds[0].revents & POLLIN)) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::lock_guard<std::mutex> lock(mu_);
    Connection& c = connections_.emplace_back();
    c.fd = fd;
    ++accepted_;
    ++open_;
    changed_.notify_all();
    c.thread = std::thread([this, &c, fd] {
      FakeConnectionServer(*this, c, fd).Run();
      std::lock_guard<std::mutex> lock(mu_);
      c.finished = true;
    });
  }
}

}  // namespace terse::testing
