// The gRPC face on the callback API. Each RPC turns its request into OpenAI JSON, hands it to the
// Pipeline with a Responder, and returns at once; the Responder turns the pipeline's answer back
// into protos from whatever thread it arrives on. Nothing here blocks a gRPC or pipeline thread.
#include "proxy/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/errors.h"
#include "proxy/grpc_codec.h"
#include "proxy/log.h"
#include "terse/v1/gateway.grpc.pb.h"

namespace terse::proxy {
namespace {

// How long Shutdown lets in-flight calls run before cancelling them.
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);
constexpr uint64_t kDefaultMaxBodyBytes = 8 << 20;

absl::string_view View(grpc::string_ref s) { return absl::string_view(s.data(), s.size()); }

// Metadata a client sent that the pipeline may see as headers: not gRPC's own, not binary, and not
// the credentials (those travel as CallInfo.api_key only).
bool IsForwardedMetadata(absl::string_view name) {
  return !name.empty() && name[0] != ':' && !absl::StartsWith(name, "grpc-") &&
         !absl::EndsWith(name, "-bin") && name != "authorization" && name != "api-key" &&
         name != "content-type" && name != "te";
}

// Response headers of the pipeline that are valid, non-reserved gRPC metadata.
bool IsValidResponseMetadata(const std::string& name, const std::string& value) {
  if (name.empty() || absl::StartsWith(name, "grpc-") || absl::EndsWith(name, "-bin")) return false;
  for (char c : name) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  if (name == "content-type" || name == "content-length" || name == "te" ||
      name == "transfer-encoding" || name == "connection") {
    return false;
  }
  for (char c : value) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

// Reads credentials, request id, deadline and headers off the call; echoes the request id.
CallInfo ReadCallInfo(grpc::CallbackServerContext& ctx, Operation operation) {
  CallInfo info;
  info.face = Face::kGrpc;
  info.operation = operation;
  for (const auto& [key, value] : ctx.client_metadata()) {
    std::string name = absl::AsciiStrToLower(View(key));
    absl::string_view v = View(value);
    if (name == "authorization") {
      if (v.size() > 7 && absl::EqualsIgnoreCase(v.substr(0, 7), "bearer ")) {
        info.api_key = std::string(absl::StripAsciiWhitespace(v.substr(7)));
      }
    } else if (name == "api-key" && info.api_key.empty()) {
      info.api_key = std::string(absl::StripAsciiWhitespace(v));
    } else if (name == "x-request-id" && info.request_id.empty() && !v.empty()) {
      info.request_id = std::string(v);
    }
    if (IsForwardedMetadata(name)) info.headers.emplace_back(std::move(name), std::string(v));
  }
  if (!AcceptableRequestId(info.request_id)) {
    info.request_id = NewRequestId();
  }
  ctx.AddInitialMetadata("x-request-id", info.request_id);
  if (auto deadline = ctx.deadline(); deadline != std::chrono::system_clock::time_point::max()) {
    info.deadline = absl::FromChrono(deadline);
  }
  return info;
}

// Must run before the initial metadata is sent (the first Write, or Finish).
void AddResponseHeaders(grpc::CallbackServerContext& ctx, const ResponseHead& head) {
  for (const auto& [name, value] : head.headers) {
    std::string lower = absl::AsciiStrToLower(name);
    if (lower != "x-request-id" && IsValidResponseMetadata(lower, value)) {
      ctx.AddInitialMetadata(lower, value);
    }
  }
}

using Fields = std::vector<std::pair<std::string, std::string>>;

// The gRPC status of a finished call, with `trailers` (a tenant's booked cost) as trailing
// metadata. An error also carries the error table's OpenAI `type` and `code` and whether a retry
// can help (the status code alone cannot tell a rate limit from a spent budget). Must run before
// Finish.
grpc::Status FinishStatus(grpc::CallbackServerContext& ctx, const absl::Status& status,
                          const Fields& trailers = {}) {
  for (const auto& [name, value] : trailers) {
    if (IsValidResponseMetadata(name, value)) ctx.AddTrailingMetadata(name, value);
  }
  if (!status.ok()) {
    ErrorDetail detail = DetailOf(status);
    ctx.AddTrailingMetadata("x-terse-error-type", detail.type);
    if (!detail.code.empty()) ctx.AddTrailingMetadata("x-terse-error-code", detail.code);
    if (!detail.retryable) ctx.AddTrailingMetadata("x-should-retry", "false");
    if (detail.retry_after_ms.has_value()) {
      ctx.AddTrailingMetadata("retry-after-ms", std::to_string(*detail.retry_after_ms));
    }
    for (const auto& [name, value] : ResponseFieldsOf(status)) {
      if (IsValidResponseMetadata(name, value)) ctx.AddTrailingMetadata(name, value);
    }
  }
  return ToGrpcStatus(status);
}

// What every call's state shares: the pipeline call to cancel when the client goes away.
class CallState : public Responder {
 public:
  void Attach(std::unique_ptr<PipelineCall> call) {
    absl::MutexLock lock(&mu_);
    call_ = std::move(call);
  }
  // From OnCancel: the client is gone or the deadline passed.
  virtual void ClientCancelled() = 0;
  void Trailers(Fields fields) override {
    absl::MutexLock lock(&mu_);
    trailers_ = std::move(fields);
  }
  // From OnDone: drops the pipeline call, which may hold this responder (breaks the cycle).
  void Detach() {
    std::unique_ptr<PipelineCall> call;
    {
      absl::MutexLock lock(&mu_);
      call = std::move(call_);
    }
  }

 protected:
  void CancelPipelineCall() {
    PipelineCall* call;
    {
      absl::MutexLock lock(&mu_);
      call = call_.get();
    }
    // Outside the lock: Cancel may call back into this responder on this thread.
    if (call != nullptr) call->Cancel();
  }

  absl::Mutex mu_;
  Fields trailers_ ABSL_GUARDED_BY(mu_);  // set before the terminal call

 private:
  // Set after Pipeline::Handle returns; dropped by Detach.
  std::unique_ptr<PipelineCall> call_ ABSL_GUARDED_BY(mu_);
};

// The pipeline's whole JSON answer -> the RPC's response message.
template <typename Response>
using Decoder = absl::StatusOr<Response> (*)(const ResponseHead&, const Json&);

// A unary RPC's responder. The reactor, context and response belong to gRPC and are touched only
// until Finish; after that every pipeline callback is ignored.
template <typename Response>
class UnaryState final : public CallState {
 public:
  UnaryState(grpc::CallbackServerContext* ctx, Response* response, Decoder<Response> decode)
      : ctx_(ctx), response_(response), decode_(decode) {}

  void Bind(grpc::ServerUnaryReactor* reactor) { reactor_ = reactor; }

  void Reply(const ResponseHead& head, json::WireJson body) override {
    absl::StatusOr<Response> decoded = decode_(head, body.json());
    Fields trailers;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      if (decoded.ok()) {
        *response_ = *std::move(decoded);
        AddResponseHeaders(*ctx_, head);
      }
      trailers = std::move(trailers_);
    }
    reactor_->Finish(FinishStatus(*ctx_, decoded.status(), trailers));
  }
  void StartStream(const ResponseHead&) override {
    Finish(absl::InternalError("the pipeline streamed the answer to a unary call"));
  }
  void Chunks(std::span<json::WireJson>) override {}
  void EndStream(absl::Status status) override {
    Finish(status.ok() ? absl::InternalError("the pipeline streamed the answer to a unary call")
                       : status);
  }
  void Fail(absl::Status status) override { Finish(status); }

  void ClientCancelled() override {
    CancelPipelineCall();
    Finish(absl::CancelledError("the client cancelled the call"));
  }

 private:
  void Finish(const absl::Status& status) {
    Fields trailers;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      trailers = std::move(trailers_);
    }
    reactor_->Finish(FinishStatus(*ctx_, status, trailers));
  }

  // Constant after Bind; valid until Finish.
  grpc::CallbackServerContext* const ctx_;
  Response* const response_;
  const Decoder<Response> decode_;
  grpc::ServerUnaryReactor* reactor_ = nullptr;

  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // Finish called; nothing more may happen
};

class UnaryReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit UnaryReactor(std::shared_ptr<CallState> state) : state_(std::move(state)) {}
  void OnCancel() override { state_->ClientCancelled(); }
  void OnDone() override {
    state_->Detach();
    delete this;
  }

 private:
  const std::shared_ptr<CallState> state_;
};

// ChatStream's responder: queues chunks and keeps exactly one Write in flight, so the pipeline's
// thread never waits for a slow client. The queue is bounded by the answer's own size.
class StreamState final : public CallState {
 public:
  explicit StreamState(grpc::CallbackServerContext* ctx) : ctx_(ctx) {}

  void Bind(grpc::ServerWriteReactor<v1::ChatChunk>* reactor) { reactor_ = reactor; }

  void StartStream(const ResponseHead& head) override {
    absl::MutexLock lock(&mu_);
    if (ended_) return;
    report_ = head.compression;
    report_pending_ = true;
    AddResponseHeaders(*ctx_, head);  // before the first Write, which sends them
  }

  void Chunks(std::span<json::WireJson> chunks) override {
    for (const json::WireJson& chunk : chunks) Push(ChatChunkFromJson(chunk.json()));
  }

  // A whole answer where a stream was asked for: sent as one chunk carrying the whole message.
  void Reply(const ResponseHead& head, json::WireJson wire) override {
    StartStream(head);
    Json& body = wire.mutable_json();
    if (body.is_object() && body.contains("choices") && body["choices"].is_array()) {
      for (Json& choice : body["choices"]) {
        if (choice.is_object() && choice.contains("message")) {
          choice["delta"] = std::move(choice["message"]);
          choice.erase("message");
        }
      }
    }
    Push(ChatChunkFromJson(body));
    EndStream(absl::OkStatus());
  }

  void EndStream(absl::Status status) override {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      End(std::move(status));
      action = NextAction();
    }
    Run(action);
  }
  void Fail(absl::Status status) override { EndStream(std::move(status)); }

  void ClientCancelled() override {
    CancelPipelineCall();
    Action action;
    {
      absl::MutexLock lock(&mu_);
      End(absl::CancelledError("the client cancelled the call"));
      queue_.clear();  // nobody is listening
      action = NextAction();
    }
    Run(action);
  }

  void OnWriteDone(bool ok) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {  // the stream is broken: the client is gone
        End(absl::CancelledError("the client went away"));
        queue_.clear();
      }
      action = NextAction();
    }
    Run(action);
  }

 private:
  enum class Action { kNone, kWrite, kFinish };

  void Push(absl::StatusOr<v1::ChatChunk> chunk) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (ended_) return;
      if (!chunk.ok()) {
        End(chunk.status());
      } else {
        if (report_pending_) {
          *chunk->mutable_compression() = report_;
          report_pending_ = false;
        }
        queue_.push_back(*std::move(chunk));
      }
      action = NextAction();
    }
    Run(action);
  }

  void End(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ended_) return;
    ended_ = true;
    end_status_ = std::move(status);
  }

  // Decides the next step under the lock; Run performs it after the lock is released, because
  // gRPC may run a reaction inline.
  Action NextAction() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || writing_) return Action::kNone;
    if (!queue_.empty()) {
      writing_ = true;
      in_flight_ = std::move(queue_.front());
      queue_.pop_front();
      return Action::kWrite;
    }
    if (ended_) {
      finished_ = true;
      finish_trailers_ = std::move(trailers_);
      return Action::kFinish;
    }
    return Action::kNone;
  }

  void Run(Action action) {
    // in_flight_ and end_status_ are stable here: only the thread that chose the action may change
    // them again (writing_ / finished_ keep everyone else out).
    if (action == Action::kWrite) {
      reactor_->StartWrite(&in_flight_);
    } else if (action == Action::kFinish) {
      reactor_->Finish(FinishStatus(*ctx_, end_status_, finish_trailers_));
    }
  }

  // Constant after Bind; valid until Finish.
  grpc::CallbackServerContext* const ctx_;
  grpc::ServerWriteReactor<v1::ChatChunk>* reactor_ = nullptr;

  std::deque<v1::ChatChunk> queue_ ABSL_GUARDED_BY(mu_);  // decoded, not yet written
  v1::ChatChunk in_flight_;  // the message of the one outstanding Write (owned by its writer)
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  v1::CompressionReport report_ ABSL_GUARDED_BY(mu_);  // goes on the first chunk
  bool report_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;     // no more chunks will be accepted
  absl::Status end_status_;                     // set once with ended_; read by the finisher
  Fields finish_trailers_;                      // set once with finished_; read by the finisher
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // Finish called
};

class StreamReactor final : public grpc::ServerWriteReactor<v1::ChatChunk> {
 public:
  explicit StreamReactor(std::shared_ptr<StreamState> state) : state_(std::move(state)) {}
  void OnWriteDone(bool ok) override { state_->OnWriteDone(ok); }
  void OnCancel() override { state_->ClientCancelled(); }
  void OnDone() override {
    state_->Detach();
    delete this;
  }

 private:
  const std::shared_ptr<StreamState> state_;
};

absl::StatusOr<v1::ChatResponse> DecodeChat(const ResponseHead& head, const Json& body) {
  absl::StatusOr<v1::ChatResponse> response = ChatResponseFromJson(body);
  if (response.ok()) *response->mutable_compression() = head.compression;
  return response;
}

absl::StatusOr<v1::CompressResponse> DecodeCompress(const ResponseHead& head, const Json& body) {
  absl::StatusOr<v1::CompressResponse> response = CompressResponseFromJson(body);
  if (response.ok()) *response->mutable_report() = head.compression;
  return response;
}

class GatewayService final : public v1::Gateway::CallbackService {
 public:
  explicit GatewayService(Pipeline& pipeline) : pipeline_(pipeline) {}

  grpc::ServerUnaryReactor* Chat(grpc::CallbackServerContext* ctx, const v1::ChatRequest* request,
                                 v1::ChatResponse* response) override {
    return StartUnary<v1::ChatResponse>(ctx, response, &DecodeChat, Operation::kChatCompletions,
                                        ChatRequestToJson(*request, /*stream=*/false));
  }

  grpc::ServerWriteReactor<v1::ChatChunk>* ChatStream(grpc::CallbackServerContext* ctx,
                                                      const v1::ChatRequest* request) override {
    auto state = std::make_shared<StreamState>(ctx);
    auto* reactor = new StreamReactor(state);
    state->Bind(reactor);
    CallInfo info = ReadCallInfo(*ctx, Operation::kChatCompletions);
    absl::StatusOr<Json> body = ChatRequestToJson(*request, /*stream=*/true);
    if (!body.ok()) {
      state->Fail(body.status());
    } else {
      state->Attach(pipeline_.Handle(std::move(info), json::WireJson(*std::move(body)), state));
    }
    return reactor;
  }

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override {
    CallInfo info = ReadCallInfo(*ctx, Operation::kListModels);  // echoes x-request-id
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    if (absl::Status key = pipeline_.CheckKey(info.api_key); !key.ok()) {
      reactor->Finish(FinishStatus(*ctx, key));
      return reactor;
    }
    absl::StatusOr<v1::ListModelsResponse> models = ListModelsFromJson(pipeline_.ListModels());
    if (models.ok()) *response = *std::move(models);
    reactor->Finish(FinishStatus(*ctx, models.status()));
    return reactor;
  }

  grpc::ServerUnaryReactor* Compress(grpc::CallbackServerContext* ctx,
                                     const v1::CompressRequest* request,
                                     v1::CompressResponse* response) override {
    return StartUnary<v1::CompressResponse>(ctx, response, &DecodeCompress, Operation::kCompress,
                                            CompressRequestToJson(*request));
  }

 private:
  template <typename Response>
  grpc::ServerUnaryReactor* StartUnary(grpc::CallbackServerContext* ctx, Response* response,
                                       Decoder<Response> decode, Operation operation,
                                       absl::StatusOr<Json> body) {
    auto state = std::make_shared<UnaryState<Response>>(ctx, response, decode);
    auto* reactor = new UnaryReactor(state);
    state->Bind(reactor);
    CallInfo info = ReadCallInfo(*ctx, operation);
    if (!body.ok()) {
      state->Fail(body.status());
    } else {
      state->Attach(pipeline_.Handle(std::move(info), json::WireJson(*std::move(body)), state));
    }
    return reactor;
  }

  Pipeline& pipeline_;
};

std::string ListenAddress(const v1::Listener& listener) {
  std::string host = listener.host().empty() ? "127.0.0.1" : listener.host();
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  return absl::StrCat(host, ":", listener.port());
}

}  // namespace

struct GrpcServer::Impl {
  // Declared before the server, so the server is destroyed first.
  std::unique_ptr<GatewayService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;

  absl::Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
};

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(const v1::Config& config,
                                                              Pipeline& pipeline) {
  // Both are process-wide switches that must be set before a ServerBuilder is made.
  static std::once_flag once;
  std::call_once(once, [] {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  });

  auto impl = std::make_unique<Impl>();
  impl->service = std::make_unique<GatewayService>(pipeline);
  const std::string address = ListenAddress(config.listeners().grpc());
  uint64_t max_body = config.limits().max_body_bytes();
  if (max_body == 0) max_body = kDefaultMaxBodyBytes;

  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &impl->port);
  builder.RegisterService(impl->service.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<uint64_t>(max_body, INT32_MAX)));
  // gRPC enables SO_REUSEPORT by default: a second terse on the same port would silently share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", address));
  }
  if (auto* health = impl->server->GetHealthCheckService()) {
    health->SetServingStatus(v1::Gateway::service_full_name(), true);
  }
  return std::unique_ptr<GrpcServer>(new GrpcServer(std::move(impl)));
}

GrpcServer::GrpcServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

GrpcServer::~GrpcServer() { Shutdown(); }

int GrpcServer::port() const { return impl_->port; }

void GrpcServer::Shutdown() {
  absl::MutexLock lock(&impl_->mu);  // a concurrent caller waits until the server is down
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  if (auto* health = impl_->server->GetHealthCheckService()) health->SetServingStatus(false);
  // Waits for in-flight calls until the deadline, then cancels them; our OnCancel cancels the
  // pipeline call and finishes the RPC, so this returns once every reactor is done.
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + kShutdownGrace));
  impl_->server->Wait();
}

}  // namespace terse::proxy
