// The request's path: authenticate -> validate -> route -> authorize -> compress -> admit ->
// forward -> relay -> settle -> log. Every call ends with exactly one terminal responder call
// (Reply, EndStream or Fail), also when the face cancelled it, so a face can always release what
// it holds for the call.
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
#include "proxy/admission.h"
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
                CompressionStep& compression, Metrics& metrics, Tenants* tenants)
      : config(std::move(config)),
        providers(providers),
        compression(compression),
        metrics(metrics),
        tenants(tenants) {
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
  Tenants* const tenants;  // null: no tenancy
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
        start_(absl::Now()),
        tenant_(pipeline.tenants) {
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
  // Admits the call against its tenant's limits, then forwards it.
  void Forward(json::WireJson body);
  // Ends the call once: settles what a tenant's call used (off this thread), then Complete.
  void Finish(absl::Status status);
  // Metrics, access log, then the terminal responder call.
  void Complete(absl::Status status, absl::Time end);
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

  // Each step touches it in turn: Run, then Compress, Forward, and Finish.
  TenantCall tenant_;

  // Set by Run before anything runs concurrently, then read-only.
  const v1::Route* route_ = nullptr;              // points into config_
  const v1::Route* compression_route_ = nullptr;  // route_, or the tenant's copy of it
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
  // A tenant's stream: the usage chunk, sent after settlement with the booked cost in it.
  std::optional<json::WireJson> usage_chunk_;
  bool shed_ = false;  // compression failed and the prompt went out as it was
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
  if (absl::Status s = tenant_.Authenticate(info_.api_key); !s.ok()) return Finish(s);
  const Json& body = wire.json();
  if (absl::Status s = ValidateOpenAiRequest(info_.operation, body); !s.ok()) return Finish(s);
  model_ = body["model"].get<std::string>();
  route_ = config_->MatchRoute(model_);
  if (route_ == nullptr) return Finish(ModelNotFound(model_));
  if (absl::Status s = tenant_.Authorize(RouteLabel(), model_); !s.ok()) return Finish(s);
  compression_route_ = &tenant_.CompressionRoute(*config_, *route_);
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
  // The process-wide cap on concurrent calls, which counts this call too. A tenant's limits
  // are checked once the prompt's size after compression is known (Forward).
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
  const v1::Compression& policy = compression_route_->compression();
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
  if (!policy.enabled() && !compression_route_->allow_overrides() &&
      info_.operation != Operation::kCompress) {
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
  pipeline_.compression.Compress(*compression_route_, info_, std::move(input),
                                 [self = shared_from_this(), body = std::move(body)](
                                     absl::StatusOr<CompressionStep::Result> result) mutable {
                                   self->OnCompressed(std::move(body), std::move(result));
                                 });
}

void CallState::OnCompressed(json::WireJson body, absl::StatusOr<CompressionStep::Result> result) {
  if (IsCancelled()) return Finish(absl::CancelledError("cancelled"));
  if (!result.ok()) {
    // A bad override is the client's mistake, not a compressor failure: always an error.
    if (compression_route_->compression().on_error() == "fail" ||
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
    shed_ = true;
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
  tenancy::RequestInfo admission;
  admission.route = RouteLabel();
  if (const v1::Provider* provider = config_->FindProvider(route_->provider())) {
    admission.provider = std::string(tenancy::ProviderName(provider->kind()));
  }
  admission.model = upstream_model_;
  if (absl::Status s = tenant_.Admit(info_.operation, body.json(), head_.compression,
                                     std::move(admission), stream_, head_.headers);
      !s.ok()) {
    return Finish(s);
  }
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
    if (usage_.Read(chunk)) {
      // The usage-only chunk exists because terse asked for it: the client never sees it, unless
      // it asked too; then a tenant's gets the booked cost once settled.
      std::optional<Json> choices = chunk.Member("choices");
      const bool usage_only = choices.has_value() && choices->is_array() && choices->empty();
      if (!client_wants_usage_) {
        if (usage_only) continue;
        chunk.EraseMember("usage");
      } else if (usage_only && tenant_.admitted()) {
        usage_chunk_ = std::move(chunk);
        continue;
      }
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
  const bool forwarded = forwarded_ != absl::InfinitePast();
  CallEnd call_end{
      .usage = usage_.record(),
      // Answered, or cut off once sent: the upstream may have billed the prompt.
      .maybe_billed = forwarded && (first_byte_ != absl::InfinitePast() ||
                                    status.code() == absl::StatusCode::kCancelled ||
                                    status.code() == absl::StatusCode::kDeadlineExceeded),
      .http_status = status.ok() ? 200 : DetailOf(status).http_status,
      .latency = end - start_,
      .shed = shed_};
  tenant_.Settle(call_end, [self = shared_from_this(), status = std::move(status), end]() mutable {
    self->Complete(std::move(status), end);
  });
}

void CallState::Complete(absl::Status status, absl::Time end) {
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
                 .compression = &head_.compression,
                 .tenant = tenant_.tenant_id(),
                 .key = tenant_.key_id(),
                 .ledger_id = tenant_.admitted() ? tenant_.ledger_id() : ""}});

  // A tenant's booked cost: in a whole reply's head, in the usage chunk of a stream whose client
  // asked for one, and in gRPC's trailers.
  if (tenant_.admitted()) {
    std::vector<std::pair<std::string, std::string>> settled = tenant_.SettledFields();
    if (!stream_ && status.ok()) {
      head_.headers.insert(head_.headers.end(), settled.begin(), settled.end());
    }
    if (usage_chunk_.has_value() && status.ok()) {
      usage_chunk_->SetMember("terse", tenant_.SettledJson());
      if (!stream_started_) responder_->StartStream(head_);
      stream_started_ = true;
      responder_->Chunks(std::span<json::WireJson>(&*usage_chunk_, 1));
    }
    responder_->Trailers(std::move(settled));
  }

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
                   CompressionStep& compression, Metrics& metrics, Tenants* tenants)
    : state_(std::make_unique<State>(std::move(config), providers, compression, metrics, tenants)) {
}

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

absl::Status Pipeline::CheckKey(std::string_view api_key) const {
  if (state_->tenants == nullptr) return absl::OkStatus();
  return state_->tenants->CheckKey(api_key);
}

void Pipeline::Usage(Tenants::UsageRequest request,
                     absl::AnyInvocable<void(absl::StatusOr<Json>) &&> done) const {
  if (state_->tenants == nullptr) {
    return std::move(done)(MakeError(absl::StatusCode::kNotFound,
                                     "Usage is kept only when tenancy is configured.",
                                     {.http_status = 404}));
  }
  state_->tenants->Usage(std::move(request), std::move(done));
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
