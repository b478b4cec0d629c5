// A real OpenAI-compatible (and Anthropic Messages) HTTP/1.1 server on 127.0.0.1 for tests. It
// records every request and can be told, per request or by default, to answer, stream slowly,
// fail with a status, reset the connection or stall. Faults are injected at the real seam: the
// code under test talks to it over TCP exactly as it would to a provider.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/time/time.h"
#include "base/json.h"

namespace terse::testing {

// One request as the fake upstream received it.
struct FakeRequest {
  std::string method;
  std::string target;  // path and query, e.g. "/v1/chat/completions?x=1"
  std::string path;    // target without the query
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order
  std::string body;
  absl::Time received;  // when the whole request had been read

  // The value of the first header `name` (case-insensitive), or "" when absent.
  std::string Header(std::string_view name) const;
  bool HasHeader(std::string_view name) const;
  // The body parsed as JSON; a discarded value when it is not JSON.
  Json JsonBody() const;
};

// What to do with one request.
//
// kAnswer dispatches on the path's ending: `/chat/completions` (OpenAI chat, streaming when the
// body has `"stream": true`), `/completions` (legacy), `/embeddings`, `/messages` (Anthropic
// Messages, JSON or typed SSE events), `/models` (GET). The answer text is, unless `text` is set,
// the text of the last user message (chat, messages) or the prompt (completions), so tests can
// see what was forwarded. `usage` counts whitespace-separated words of the prompt and the answer.
struct FakeReply {
  enum class Action {
    kAnswer,  // a well-formed answer (see above)
    kFail,    // `status` with an error body (OpenAI's shape; Anthropic's on /messages)
    kReset,   // read the request, then reset the connection (TCP RST) without answering
    kStall,   // read the request, never answer; ends when the client leaves or at shutdown
  };
  Action action = Action::kAnswer;

  // kAnswer.
  std::optional<std::string> text;      // the answer text; default: echo (see above)
  std::optional<Json> body;             // non-streaming: sent verbatim instead of a generated body
  std::optional<std::string> raw_body;  // non-streaming: these bytes as the JSON body (over `body`)
  std::vector<std::string> raw_stream;  // streaming: these bytes, one write per piece (the
                                        // `chunk_delay` before each), instead of generated events
  absl::Duration head_delay = absl::ZeroDuration();   // pause before the response head
  absl::Duration chunk_delay = absl::ZeroDuration();  // streaming: pause before each content event
  int reset_after_chunks = -1;  // streaming: reset the connection after this many content events
  // Streaming: after this many content events, send nothing more until the client leaves (or
  // shutdown), so tests can observe a stream in progress without relying on timing.
  int stall_after_chunks = -1;

  // kFail.
  int status = 500;
  std::string error_message = "fake upstream failure";
  std::string error_type = "server_error";
  std::string error_code;  // empty: null

  // Any action that answers: extra response headers.
  std::vector<std::pair<std::string, std::string>> headers;
  // Close the connection after this answer instead of keeping it alive.
  bool close_after = false;
  // Close it without saying so (no `Connection: close`), as a server whose keep-alive timeout
  // ran out does: the client finds out when the connection ends.
  bool close_silently_after = false;

  static FakeReply Text(std::string text);
  static FakeReply SlowStream(absl::Duration chunk_delay);
  static FakeReply Fail(int status, std::string message = "fake upstream failure",
                        std::string type = "server_error", std::string code = "");
  static FakeReply Reset();
  static FakeReply Stall();
};

// Thread-safe. Each connection is served by its own thread; HTTP/1.1 keep-alive; streaming
// responses use chunked transfer encoding.
class FakeUpstream {
 public:
  // Listens on 127.0.0.1 on an ephemeral port and serves until destroyed.
  FakeUpstream();
  // Closes the listener and every connection (stalled and slow answers end at once) and joins
  // all threads.
  ~FakeUpstream();
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:<port>/v1", what an OpenAI client or provider config takes as base URL.
  std::string base_url() const;

  // The reply for requests when no enqueued reply is left (initially an answer).
  void SetDefaultReply(FakeReply reply);
  // Replies for the next requests, first in first out, before the default.
  void EnqueueReply(FakeReply reply);

  std::vector<FakeRequest> requests() const;
  size_t request_count() const;
  // The most recent request; an empty one when none arrived.
  FakeRequest last_request() const;
  // Waits until at least `n` requests arrived; false on timeout.
  bool WaitForRequestCount(size_t n, absl::Duration timeout) const;

  int connections_accepted() const;
  int open_connections() const;
  // Waits until exactly `n` connections are open; false on timeout.
  bool WaitForOpenConnections(int n, absl::Duration timeout) const;
  // Waits until at least `n` answers were written whole (the socket took their last byte).
  bool WaitForAnswersWritten(int n, absl::Duration timeout) const;
  // Streamed or stalled answers that ended because the client closed the connection.
  int answers_cut_by_client() const;
  bool WaitForAnswersCutByClient(int n, absl::Duration timeout) const;

 private:
  struct Connection {
    int fd = -1;  // guarded by mu_; -1 once closed
    std::thread thread;
    bool finished = false;  // guarded by mu_
  };

  void AcceptLoop();
  void Serve(Connection* connection);
  FakeReply NextReply();
  void CloseConnection(Connection* connection, bool reset);
  void ReapFinished();  // joins connection threads that ended (mu_ not held)
  // Waits until `done` (called with mu_ held) is true, each time changed_ is notified; false on
  // timeout.
  bool WaitUntil(absl::Duration timeout, absl::FunctionRef<bool()> done) const;

  // Constant after construction.
  int listen_fd_ = -1;
  int wake_fds_[2] = {-1, -1};  // a pipe that wakes the accept loop at shutdown
  int port_ = 0;

  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;  // any counter or the request log changed
  std::deque<FakeReply> queued_;             // guarded by mu_
  FakeReply default_reply_;                  // guarded by mu_
  std::vector<FakeRequest> requests_;        // guarded by mu_
  std::list<Connection> connections_;        // guarded by mu_
  int accepted_ = 0;                         // guarded by mu_
  int open_ = 0;                             // guarded by mu_
  int cut_by_client_ = 0;                    // guarded by mu_
  int answers_written_ = 0;                  // guarded by mu_

  friend class FakeConnectionServer;
};

}  // namespace terse::testing
