// The request's path: validate -> route -> admit -> compress -> forward -> relay -> book -> log.
// Every call ends with exactly one terminal responder call (Reply, EndStream or Fail), also when
// the face cancelled it, so a face can always release what it holds for the call.
#include "proxy/pipeline.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/errors.h"
#include "providers/provider.h"
#include "providers/provider_set.h"
#include "proxy/access_log.h"
#include "proxy/alignment_recorder.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/openai_validation.h"
#include "proxy/usage.h"

namespace terse::proxy {
namespace {

bool BoolField(const Json& object, std::string_view name) {
  auto it = object.find(name);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

std::optional<std::string_view> HeaderOf(const CallInfo& info, std::string_view lower_name) {
  for (const auto& [name, value] : info.headers) {
    if (name == lower_name) return value;
  }
  return std::nullopt;
}

// The member of a request body that holds the prompt compression works on; empty for none.
std::string_view PromptMember(Operation op) {
  switch (op) {
    case Operation::kChatCompletions:
    case Operation::kCompress:
      return "messages";
    case Operation::kCompletions:
      return "prompt";
    default:
      return "";
  }
}

providers::Endpoint EndpointOf(Operation op) {
  switch (op) {
    case Operation::kCompletions:
      return providers::Endpoint::kCompletions;
    case Operation::kEmbeddings:
      return providers::Endpoint::kEmbeddings;
    default:
      return providers::Endpoint::kChatCompletions;
  }
}

class CallState;

// What every call shares: the parts the pipeline was built from, and the calls in flight.
struct PipelineParts {
  PipelineParts(std::shared_ptr<const config::Config> config, providers::ProviderSet& providers,
                CompressionStep& compression, Metrics& metrics)
      : config(std::move(config)),
        providers(providers),
        compression(compression),
        metrics(metrics) {
    for (const v1::Route& route : this->config->proto().routes()) {
      if (!route.compression().record_alignment_pairs().empty()) {
        recorder = std::make_unique<AlignmentRecorder>();
        break;
      }
    }
  }

  // Constant after construction.
  const std::shared_ptr<const config::Config> config;
  providers::ProviderSet& providers;
  CompressionStep& compression;
  Metrics& metrics;
  const int64_t created_unix = absl::ToUnixSeconds(absl::Now());
  // Null unless a route records alignment pairs; destroyed after the last call, writing the rest.
  std::unique_ptr<AlignmentRecorder> recorder;

  std::atomic<int64_t> in_flight{0};  // calls started and not finished, for admission

  absl::Mutex mu;
  // Calls that have not finished; the pipeline's destructor cancels them and waits, because a
  // call touches these parts until it finishes.
  absl::flat_hash_map<CallState*, std::weak_ptr<CallState>> live ABSL_GUARDED_BY(mu);
};

// One call in flight. Shared by the handle the face holds, the compression callback and the
// upstream sink; whichever finishes last frees it.
class CallState : public std::enable_shared_from_this<CallState> {
 public:
  CallState(PipelineParts& pipeline, CallInfo info, std::shared_ptr<Responder> responder)
      : pipeline_(pipeline),
        config_(pipeline.config),
        info_(std::move(info)),
        responder_(std::move(responder)),
        start_(absl::Now()) {
    pipeline_.metrics.AddInFlight(1);
    pipeline_.in_flight.fetch_add(1, std::memory_order_relaxed);
  }

  void Run(json::WireJson body);
  void Cancel();

  // Upstream sink events; the provider serializes them on its event-loop thread.
  void OnResponse(json::WireJson body);
  void OnChunks(std::span<json::WireJson> chunks);
  void OnDone(absl::Status status);

 private:
  // Steps of the path, in order.
  absl::Status Admit();  // Quotas and rate limits (tenants issue); the in-flight cap for now.
  void Compress(json::WireJson body);
  void OnCompressed(json::WireJson body, absl::StatusOr<CompressionStep::Result> result);
  // After compression (or its fallback): forwards, or for Operation::kCompress replies.
  void Proceed(json::WireJson body);
  void Forward(json::WireJson body);
  // Ends the call once: metrics, booking, access log, then the terminal responder call.
  void Finish(absl::Status status);
  // Usage and savings ledger (tenants issue): gets what the upstream reported and what
  // compression saved; nothing to book into yet.
  void Book(const std::optional<UsageRecord>& usage, const v1::CompressionReport& compression);
  // Queues the original prompt and the answer for the route's alignment pairs file, if it has one.
  void RecordAlignmentPair();

  bool IsCancelled() {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }
  std::string RouteLabel() const {
    if (route_ == nullptr) return "";
    return route_->name().empty() ? route_->model() : route_->name();
  }

  // Constant after construction.
  PipelineParts& pipeline_;
  const std::shared_ptr<const config::Config> config_;  // the snapshot this call started with
  const CallInfo info_;
  const std::shared_ptr<Responder> responder_;
  const absl::Time start_;

  // Set by Run before anything runs concurrently, then read-only.
  const v1::Route* route_ = nullptr;  // points into config_
  std::string model_;
  std::string upstream_model_;
  bool stream_ = false;
  bool client_wants_usage_ = false;
  absl::Time deadline_ = absl::InfiniteFuture();
  ResponseHead head_;  // completed by the compression step before forwarding

  // Touched by the upstream sink only (one thread at a time), and by Finish after it.
  absl::Time forwarded_ = absl::InfinitePast();
  absl::Time first_byte_ = absl::InfinitePast();
  bool stream_started_ = false;
  std::optional<json::WireJson> response_;
  UsageReader usage_;
  // Only on routes that record alignment pairs: the prompt before compression (set by Compress
  // before the step runs) and the streamed answer so far.
  std::optional<std::string> alignment_prompt_;
  std::string alignment_answer_;

  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<providers::Call> upstream_ ABSL_GUARDED_BY(mu_);
};

// The upstream's view of a call. The provider keeps its sink as long as its own call object, which
// the CallState owns: the sink lets go of the CallState at the end to break that cycle.
class Sink : public providers::ResponseSink {
 public:
  explicit Sink(std::shared_ptr<CallState> call) : call_(std::move(call)) {}
  void OnResponse(json::WireJson body) override {
    if (call_) call_->OnResponse(std::move(body));
  }
  void OnChunks(std::span<json::WireJson> chunks) override {
    if (call_) call_->OnChunks(chunks);
  }
  void OnDone(absl::Status status) override {
    std::shared_ptr<CallState> call = std::move(call_);
    if (call) call->OnDone(std::move(status));
  }

 private:
  std::shared_ptr<CallState> call_;  // touched on the provider's event-loop thread only
};

class CallHandle : public PipelineCall {
 public:
  explicit CallHandle(std::shared_ptr<CallState> call) : call_(std::move(call)) {}
  void Cancel() override { call_->Cancel(); }

 private:
  std::shared_ptr<CallState> call_;
};

void CallState::Run(json::WireJson wire) {
  const Json& body = wire.json();
  if (absl::Status s = ValidateOpenAiRequest(info_.operation, body); !s.ok()) return Finish(s);
  model_ = body["model"].get<std::string>();
  route_ = config_->MatchRoute(model_);
  if (route_ == nullptr) return Finish(ModelNotFound(model_));
  upstream_model_ = route_->upstream_model().empty() ? model_ : route_->upstream_model();
  if (info_.operation == Operation::kChatCompletions ||
      info_.operation == Operation::kCompletions) {
    stream_ = BoolField(body, "stream");
    client_wants_usage_ = providers::AsksForUsage(body);
  }
  const uint32_t timeout_ms = config_->proto().limits().request_timeout_ms();
  deadline_ = info_.deadline;
  if (timeout_ms > 0) deadline_ = std::min(deadline_, start_ + absl::Milliseconds(timeout_ms));
  if (absl::Now() >= deadline_) {
    return Finish(absl::DeadlineExceededError("The request's deadline passed before it started."));
  }
  if (absl::Status s = Admit(); !s.ok()) return Finish(s);
  Compress(std::move(wire));
}

absl::Status CallState::Admit() {
  // Tenant quotas and rate limits join here (tenants issue). For now only the process-wide cap
  // on concurrent calls, which counts this call too.
  const uint32_t max_in_flight = config_->proto().limits().max_in_flight();
  if (max_in_flight > 0 &&
      pipeline_.in_flight.load(std::memory_order_relaxed) > static_cast<int64_t>(max_in_flight)) {
    return Overloaded("terse is at its limit of concurrent requests; retry shortly.");
  }
  return absl::OkStatus();
}

void CallState::Compress(json::WireJson body) {
  // The request's compression overrides are for terse alone: taken out here, whatever the route
  // does with them, so that no upstream sees them.
  std::optional<Json> overrides = body.Member("terse");
  if (overrides.has_value()) body.EraseMember("terse");
  const v1::Compression& policy = route_->compression();
  if (pipeline_.recorder != nullptr && !policy.record_alignment_pairs().empty()) {
    const Json& value = body.json();
    if (info_.operation == Operation::kChatCompletions) {
      alignment_prompt_ = RenderAlignmentPrompt(value["messages"]);
    } else if (info_.operation == Operation::kCompletions) {
      auto prompt = value.find("prompt");
      if (prompt != value.end() && prompt->is_string()) {
        alignment_prompt_ = prompt->get<std::string>();
      }
    }
  }
  // Nothing to ask the step when the route can never compress.
  if (!policy.enabled() && !route_->allow_overrides() && info_.operation != Operation::kCompress) {
    head_.compression.set_applied(false);
    head_.compression.set_reason("compression is off for this route");
    return Forward(std::move(body));
  }
  // The step gets a copy of the prompt; the body stays as the client wrote it, to be forwarded
  // when compression fails (unless the route says to fail) and otherwise given the new prompt,
  // so that its other members keep their text.
  CompressionStep::Input input;
  const std::string_view member = PromptMember(info_.operation);
  if (!member.empty()) input.prompt = body.Member(member);
  input.overrides = std::move(overrides);
  input.model = upstream_model_;
  pipeline_.compression.Compress(*route_, info_, std::move(input),
                                 [self = shared_from_this(), body = std::move(body)](
                                     absl::StatusOr<CompressionStep::Result> result) mutable {
                                   self->OnCompressed(std::move(body), std::move(result));
                                 });
}

void CallState::OnCompressed(json::WireJson body, absl::StatusOr<CompressionStep::Result> result) {
  if (IsCancelled()) return Finish(absl::CancelledError("cancelled"));
  if (!result.ok()) {
    // A bad override is the client's mistake, not a compressor failure: always an error.
    if (route_->compression().on_error() == "fail" ||
        result.status().code() == absl::StatusCode::kInvalidArgument) {
      return Finish(result.status());
    }
    pipeline_.metrics.RecordCompressionFallback(RouteLabel());
    LogJson(LogLevel::kWarn, Json{{"msg", "compression failed; forwarding uncompressed"},
                                  {"request_id", info_.request_id},
                                  {"route", RouteLabel()},
                                  {"error", std::string(result.status().message())}});
    head_.compression.set_applied(false);
    head_.compression.set_reason(std::string(result.status().message()));
    return Proceed(std::move(body));
  }
  const v1::CompressionReport& report = result->report;
  head_.compression = report;
  if (report.applied()) {
    pipeline_.metrics.RecordCompression(
        RouteLabel(), report.original_tokens(), report.compressed_tokens(),
        absl::Milliseconds(report.compress_ms()), report.cache_hit());
  }
  const std::string_view member = PromptMember(info_.operation);
  if (result->prompt.has_value() && !member.empty()) {
    body.SetMember(member, *std::move(result->prompt));  // unchanged: the text stays as it was
  }
  Proceed(std::move(body));
}

void CallState::Proceed(json::WireJson body) {
  if (info_.operation != Operation::kCompress) return Forward(std::move(body));
  // The compress operation answers with the messages it would have forwarded.
  response_ = json::WireJson(
      Json{{"model", model_}, {"messages", body.json().value("messages", Json::array())}});
  Finish(absl::OkStatus());
}

void CallState::Forward(json::WireJson body) {
  providers::Request request;
  request.endpoint = EndpointOf(info_.operation);
  // An edit of a member, spliced into the client's text: the rest reaches the upstream as the
  // client wrote it.
  body.SetMember("model", upstream_model_);  // keeps the field's position
  // terse needs the numbers for budgets even when the client did not ask for them.
  if (stream_) providers::AskForUsage(body);
  request.body = std::move(body);
  request.stream = stream_;
  request.request_id = info_.request_id;
  request.deadline = deadline_;
  if (route_->pass_organization()) {
    if (auto org = HeaderOf(info_, "openai-organization")) {
      request.headers.emplace_back("OpenAI-Organization", std::string(*org));
    }
    if (auto project = HeaderOf(info_, "openai-project")) {
      request.headers.emplace_back("OpenAI-Project", std::string(*project));
    }
  }

  std::vector<providers::Provider*> targets;
  if (providers::Provider* p = pipeline_.providers.Find(route_->provider())) targets.push_back(p);
  for (const std::string& name : route_->fallbacks()) {
    if (providers::Provider* p = pipeline_.providers.Find(name)) targets.push_back(p);
  }
  if (targets.empty()) {
    return Finish(
        absl::InternalError(absl::StrCat("route `", RouteLabel(), "` has no usable provider")));
  }

  forwarded_ = absl::Now();
  std::unique_ptr<providers::Call> call = pipeline_.providers.Send(
      std::move(targets), std::move(request), std::make_shared<Sink>(shared_from_this()));
  providers::Call* to_cancel = nullptr;
  {
    absl::MutexLock lock(&mu_);
    upstream_ = std::move(call);
    // The face cancelled while the call was being started: pass it on now.
    if (cancelled_ && !finished_) to_cancel = upstream_.get();
  }
  if (to_cancel != nullptr) to_cancel->Cancel();
}

void CallState::Cancel() {
  providers::Call* to_cancel = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (finished_ || cancelled_) return;
    cancelled_ = true;
    to_cancel = upstream_.get();
  }
  // Outside the lock: a provider may report OnDone(kCancelled) from inside Cancel. The call object
  // lives as long as this state, which the caller's handle keeps alive.
  if (to_cancel != nullptr) to_cancel->Cancel();
}

void CallState::OnResponse(json::WireJson body) {
  if (first_byte_ == absl::InfinitePast()) first_byte_ = absl::Now();
  usage_.Read(body);
  response_ = std::move(body);
}

void CallState::OnChunks(std::span<json::WireJson> chunks) {
  if (first_byte_ == absl::InfinitePast()) first_byte_ = absl::Now();
  // The chunks the client gets are moved to the front, in order.
  size_t kept = 0;
  for (json::WireJson& chunk : chunks) {
    // Chunks without `usage` (most) go on as the text they arrived as, unparsed.
    if (usage_.Read(chunk) && !client_wants_usage_) {
      // The usage-only chunk exists because terse asked for it: the client never sees it.
      std::optional<Json> choices = chunk.Member("choices");
      if (choices.has_value() && choices->is_array() && choices->empty()) continue;
      chunk.EraseMember("usage");
    }
    if (alignment_prompt_.has_value()) alignment_answer_ += AlignmentAnswerText(chunk.json());
    if (&chunk != &chunks[kept]) chunks[kept] = std::move(chunk);
    ++kept;
  }
  if (kept == 0) return;
  if (!stream_started_) {
    stream_started_ = true;
    responder_->StartStream(head_);
  }
  responder_->Chunks(chunks.first(kept));
}

void CallState::OnDone(absl::Status status) {
  if (status.ok() && !stream_ && !response_.has_value()) {
    status = UpstreamFailed("The upstream ended the call without a response.");
  }
  Finish(std::move(status));
}

void CallState::Finish(absl::Status status) {
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    if (cancelled_ && status.ok() && stream_) status = absl::CancelledError("cancelled");
  }
  const absl::Time end = absl::Now();
  const ErrorDetail detail = status.ok() ? ErrorDetail{.http_status = 200} : DetailOf(status);
  const std::string route = RouteLabel();
  const std::string_view operation = OperationName(info_.operation);
  const bool forwarded = forwarded_ != absl::InfinitePast();
  const bool answered = forwarded && first_byte_ != absl::InfinitePast();
  const std::optional<UsageRecord>& usage = usage_.record();

  Metrics& metrics = pipeline_.metrics;
  metrics.RecordRequest(route, operation, detail.http_status, end - start_);
  if (!status.ok()) metrics.RecordError(route, operation, detail.type);
  if (answered) metrics.RecordUpstream(route, first_byte_ - forwarded_, end - forwarded_);
  if (usage.has_value()) {
    metrics.RecordTokens(route, usage->prompt_tokens, usage->completion_tokens);
  }
  Book(usage, head_.compression);
  if (status.ok()) RecordAlignmentPair();
  metrics.AddInFlight(-1);
  pipeline_.in_flight.fetch_sub(1, std::memory_order_relaxed);

  LogAccess({.request_id = info_.request_id,
             .face = info_.face,
             .operation = operation,
             .http_status = detail.http_status,
             .latency = end - start_,
             .status = status,
             .call = AccessLogEntry::Call{
                 .route = route,
                 .model = model_,
                 .upstream_model = upstream_model_,
                 .stream = stream_,
                 .upstream = forwarded ? std::optional(end - forwarded_) : std::nullopt,
                 .first_byte = answered ? std::optional(first_byte_ - forwarded_) : std::nullopt,
                 .usage = usage,
                 .compression = &head_.compression}});

  // The terminal responder call, after the bookkeeping so that whoever hears the answer also
  // finds it counted.
  if (stream_started_) {
    responder_->EndStream(status);
  } else if (!status.ok()) {
    responder_->Fail(status);
  } else if (stream_) {
    // A stream that ended cleanly without a single chunk: still a well-formed empty stream.
    responder_->StartStream(head_);
    responder_->EndStream(absl::OkStatus());
  } else {
    responder_->Reply(head_, std::move(*response_));
    response_.reset();
  }

  // The last touch of the pipeline's parts: after this the pipeline may be destroyed.
  absl::MutexLock lock(&pipeline_.mu);
  pipeline_.live.erase(this);
}

void CallState::Book(const std::optional<UsageRecord>& usage,
                     const v1::CompressionReport& compression) {}

void CallState::RecordAlignmentPair() {
  if (!alignment_prompt_.has_value() || alignment_prompt_->empty()) return;
  std::string answer = stream_                 ? std::move(alignment_answer_)
                       : response_.has_value() ? AlignmentAnswerText(response_->json())
                                               : "";
  if (answer.empty()) return;  // a tool call or an empty answer teaches nothing
  pipeline_.recorder->Record(route_->compression().record_alignment_pairs(),
                             Json{{"prompt", std::move(*alignment_prompt_)},
                                  {"response", std::move(answer)},
                                  {"model", upstream_model_},
                                  {"route", RouteLabel()},
                                  {"ts", absl::ToUnixMillis(absl::Now()) / 1000.0}});
}

}  // namespace

struct Pipeline::State : PipelineParts {
  using PipelineParts::PipelineParts;
};

Pipeline::Pipeline(std::shared_ptr<const config::Config> config, providers::ProviderSet& providers,
                   CompressionStep& compression, Metrics& metrics)
    : state_(std::make_unique<State>(std::move(config), providers, compression, metrics)) {}

Pipeline::~Pipeline() {
  std::vector<std::shared_ptr<CallState>> live;
  {
    absl::MutexLock lock(&state_->mu);
    for (auto& [raw, weak] : state_->live) {
      if (auto call = weak.lock()) live.push_back(std::move(call));
    }
  }
  for (auto& call : live) call->Cancel();
  live.clear();
  absl::MutexLock lock(&state_->mu);
  auto none_left = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) { return state_->live.empty(); };
  if (!state_->mu.AwaitWithTimeout(absl::Condition(&none_left), absl::Seconds(5))) {
    LogJson(LogLevel::kError, Json{{"msg", "calls still running when the pipeline was destroyed"},
                                   {"calls", state_->live.size()}});
  }
}

std::unique_ptr<PipelineCall> Pipeline::Handle(CallInfo info, json::WireJson body,
                                               std::shared_ptr<Responder> responder) {
  auto call = std::make_shared<CallState>(*state_, std::move(info), std::move(responder));
  {
    absl::MutexLock lock(&state_->mu);
    state_->live[call.get()] = call;
  }
  auto handle = std::make_unique<CallHandle>(call);
  call->Run(std::move(body));
  return handle;
}

Json Pipeline::ListModels() const {
  Json data = Json::array();
  std::set<std::string> seen;
  auto add = [&](const std::string& id, const std::string& owner) {
    if (id.empty() || !seen.insert(id).second) return;
    data.push_back({{"id", id},
                    {"object", "model"},
                    {"created", state_->created_unix},
                    {"owned_by", owner.empty() ? std::string("terse") : owner}});
  };
  for (const v1::Route& route : state_->config->proto().routes()) {
    const bool glob = route.model().find_first_of("*?[") != std::string::npos;
    if (!glob) add(route.model(), route.provider());
    add(route.upstream_model(), route.provider());
  }
  return Json{{"object", "list"}, {"data", std::move(data)}};
}

void PassThroughCompression::Compress(const v1::Route& route, const CallInfo& info, Input input,
                                      Done done) {
  Result result;
  result.prompt = std::move(input.prompt);
  result.report.set_applied(false);
  result.report.set_reason("compression is not available yet");
  std::move(done)(std::move(result));
}

}  // namespace terse::proxy
