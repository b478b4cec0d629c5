// The request's path: validate -> route -> admit -> compress -> forward -> relay -> book -> log.
// Every call ends with exactly one terminal responder call (Reply, EndStream or Fail), also when
// the face cancelled it, so a face can always release what it holds for the call.
#include "proxy/pipeline.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
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
#include "json/scan.h"
#include "providers/provider.h"
#include "providers/provider_set.h"
#include "proxy/alignment_recorder.h"
#include "proxy/log.h"
#include "proxy/metrics.h"

namespace terse::proxy {
namespace {

// Debian's abseil has its own string_view; StrCat takes only that one.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// ---- Validation: the checks OpenAI itself makes on types, with its wording and `param` paths.

std::string_view TypeName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a decimal";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

absl::Status WrongType(std::string_view param, std::string_view expected, const Json& got) {
  return InvalidRequest(absl::StrCat("Invalid type for '", Av(param), "': expected ", Av(expected),
                                     ", but got ", Av(TypeName(got)), " instead."),
                        param);
}

absl::Status Missing(std::string_view param) {
  return InvalidRequest(absl::StrCat("Missing required parameter: '", Av(param), "'."), param);
}

enum class Kind { kString, kBool, kNumber, kInteger, kObject, kArray, kStringOrArray };

bool HasKind(const Json& v, Kind kind) {
  switch (kind) {
    case Kind::kString:
      return v.is_string();
    case Kind::kBool:
      return v.is_boolean();
    case Kind::kNumber:
      return v.is_number();
    case Kind::kInteger:
      return v.is_number_integer();
    case Kind::kObject:
      return v.is_object();
    case Kind::kArray:
      return v.is_array();
    case Kind::kStringOrArray:
      return v.is_string() || v.is_array();
  }
  return false;
}

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kString:
      return "a string";
    case Kind::kBool:
      return "a boolean";
    case Kind::kNumber:
      return "a number";
    case Kind::kInteger:
      return "an integer";
    case Kind::kObject:
      return "an object";
    case Kind::kArray:
      return "an array";
    case Kind::kStringOrArray:
      return "one of a string or array";
  }
  return "";
}

struct FieldRule {
  std::string_view name;
  Kind kind;
};

// Optional fields: absent or null is fine, anything else must have the kind.
absl::Status CheckOptional(const Json& body, std::initializer_list<FieldRule> rules) {
  for (const FieldRule& rule : rules) {
    auto it = body.find(rule.name);
    if (it == body.end() || it->is_null()) continue;
    if (!HasKind(*it, rule.kind)) return WrongType(rule.name, KindName(rule.kind), *it);
  }
  return absl::OkStatus();
}

absl::Status CheckModel(const Json& body) {
  auto it = body.find("model");
  if (it == body.end() || it->is_null()) return Missing("model");
  if (!it->is_string()) return WrongType("model", "a string", *it);
  if (it->get_ref<const std::string&>().empty()) {
    return InvalidRequest("Invalid value for 'model': it must not be empty.", "model");
  }
  return absl::OkStatus();
}

absl::Status CheckStreamFields(const Json& body) {
  if (absl::Status s =
          CheckOptional(body, {{"stream", Kind::kBool}, {"stream_options", Kind::kObject}});
      !s.ok()) {
    return s;
  }
  auto options = body.find("stream_options");
  if (options != body.end() && options->is_object()) {
    auto usage = options->find("include_usage");
    if (usage != options->end() && !usage->is_null() && !usage->is_boolean()) {
      return WrongType("stream_options.include_usage", "a boolean", *usage);
    }
  }
  return absl::OkStatus();
}

constexpr std::string_view kRoles[] = {"system",    "developer", "user",
                                       "assistant", "tool",      "function"};

absl::Status CheckMessage(const Json& message, size_t index) {
  // The parameter an error names, spelled out only for an error.
  auto at = [index](std::string_view rest = "") {
    return absl::StrCat("messages[", index, "]", Av(rest));
  };
  if (!message.is_object()) return WrongType(at(), "an object", message);
  auto role = message.find("role");
  if (role == message.end() || role->is_null()) return Missing(at(".role"));
  if (!role->is_string()) return WrongType(at(".role"), "a string", *role);
  const std::string& role_name = role->get_ref<const std::string&>();
  if (std::find(std::begin(kRoles), std::end(kRoles), role_name) == std::end(kRoles)) {
    return InvalidRequest(
        absl::StrCat("Invalid value: '", role_name,
                     "'. Supported values are: 'system', 'developer', 'user', 'assistant', "
                     "'tool', and 'function'."),
        at(".role"));
  }
  auto content = message.find("content");
  // An assistant turn may carry only tool calls; a legacy function result may be null.
  const bool content_optional = role_name == "assistant" || role_name == "function";
  if (content == message.end() || content->is_null()) {
    if (content_optional) return absl::OkStatus();
    return Missing(at(".content"));
  }
  if (content->is_string()) return absl::OkStatus();
  if (!content->is_array()) {
    return WrongType(at(".content"), "one of a string or array of objects", *content);
  }
  for (size_t i = 0; i < content->size(); ++i) {
    const Json& part = (*content)[i];
    auto part_at = [&](std::string_view rest = "") {
      return at(absl::StrCat(".content[", i, "]", Av(rest)));
    };
    if (!part.is_object()) return WrongType(part_at(), "an object", part);
    auto type = part.find("type");
    if (type == part.end() || type->is_null()) return Missing(part_at(".type"));
    if (!type->is_string()) return WrongType(part_at(".type"), "a string", *type);
    if (*type == "text") {
      auto text = part.find("text");
      if (text == part.end() || text->is_null()) return Missing(part_at(".text"));
      if (!text->is_string()) return WrongType(part_at(".text"), "a string", *text);
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateChat(const Json& body) {
  if (absl::Status s = CheckModel(body); !s.ok()) return s;
  auto messages = body.find("messages");
  if (messages == body.end() || messages->is_null()) return Missing("messages");
  if (!messages->is_array()) return WrongType("messages", "an array", *messages);
  if (messages->empty()) {
    return InvalidRequest(
        "Invalid 'messages': empty array. Expected an array with minimum "
        "length 1, but got an empty array instead.",
        "messages");
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    if (absl::Status s = CheckMessage((*messages)[i], i); !s.ok()) return s;
  }
  if (absl::Status s = CheckStreamFields(body); !s.ok()) return s;
  return CheckOptional(body, {{"temperature", Kind::kNumber},
                              {"top_p", Kind::kNumber},
                              {"frequency_penalty", Kind::kNumber},
                              {"presence_penalty", Kind::kNumber},
                              {"max_tokens", Kind::kInteger},
                              {"max_completion_tokens", Kind::kInteger},
                              {"n", Kind::kInteger},
                              {"seed", Kind::kInteger},
                              {"stop", Kind::kStringOrArray},
                              {"tools", Kind::kArray},
                              {"functions", Kind::kArray},
                              {"response_format", Kind::kObject},
                              {"logit_bias", Kind::kObject},
                              {"metadata", Kind::kObject},
                              {"user", Kind::kString}});
}

absl::Status ValidateCompletions(const Json& body) {
  if (absl::Status s = CheckModel(body); !s.ok()) return s;
  if (absl::Status s = CheckStreamFields(body); !s.ok()) return s;
  return CheckOptional(body, {{"prompt", Kind::kStringOrArray},
                              {"temperature", Kind::kNumber},
                              {"top_p", Kind::kNumber},
                              {"max_tokens", Kind::kInteger},
                              {"n", Kind::kInteger},
                              {"seed", Kind::kInteger},
                              {"stop", Kind::kStringOrArray},
                              {"user", Kind::kString}});
}

absl::Status ValidateEmbeddings(const Json& body) {
  if (absl::Status s = CheckModel(body); !s.ok()) return s;
  auto input = body.find("input");
  if (input == body.end() || input->is_null()) return Missing("input");
  if (!input->is_string() && !input->is_array()) {
    return WrongType("input", "one of a string or array", *input);
  }
  return CheckOptional(body, {{"encoding_format", Kind::kString},
                              {"dimensions", Kind::kInteger},
                              {"user", Kind::kString}});
}

absl::Status Validate(Operation op, const Json& body) {
  if (!body.is_object()) {
    return InvalidRequest(
        absl::StrCat("The request body must be a JSON object, not ", Av(TypeName(body)), "."));
  }
  switch (op) {
    case Operation::kChatCompletions:
    case Operation::kCompress:
      return ValidateChat(body);
    case Operation::kCompletions:
      return ValidateCompletions(body);
    case Operation::kEmbeddings:
      return ValidateEmbeddings(body);
    default:
      return absl::InternalError("the pipeline does not run this operation");
  }
}

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

double Milliseconds(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

struct Usage {
  uint64_t prompt_tokens = 0;
  uint64_t completion_tokens = 0;
  bool seen = false;
};

// A token count as an upstream wrote it: a non-negative integer, or a number with a fraction
// (some servers write 20.0). Anything else counts as 0: an odd upstream cannot break the books.
uint64_t TokenCount(double value) {
  return std::isfinite(value) && value >= 0 && value < 1.8e19 ? static_cast<uint64_t>(value) : 0;
}
uint64_t TokenCount(std::string_view text) {
  const char* end = text.data() + text.size();
  uint64_t count = 0;
  auto [at, error] = std::from_chars(text.data(), end, count);
  if (error == std::errc() && at == end) return count;
  double value = 0;
  auto [at_double, error_double] = std::from_chars(text.data(), end, value);
  return error_double == std::errc() && at_double == end ? TokenCount(value) : 0;
}
uint64_t TokenCount(const Json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer()) return 0;  // negative
  if (value.is_number_float()) return TokenCount(value.get<double>());
  return 0;
}

// Whether `message` (a response or a chunk) has a top-level `usage` member. When it is an object,
// its prompt and completion token counts go to `usage`: read off the text as received when there
// is one (nothing is parsed), else off the value.
bool ReadUsage(const json::WireJson& message, Usage& usage) {
  std::optional<std::string_view> text;
  if (message.FindMemberText("usage", &text)) {
    if (!text.has_value()) return false;
    if (text->empty() || text->front() != '{') return true;
    usage.prompt_tokens = 0;
    usage.completion_tokens = 0;
    json::ForEachMember(*text, [&](std::string_view key, std::string_view value) {
      if (key == "prompt_tokens") usage.prompt_tokens = TokenCount(value);
      if (key == "completion_tokens") usage.completion_tokens = TokenCount(value);
    });
    usage.seen = true;
    return true;
  }
  std::optional<Json> member = message.Member("usage");
  if (!member.has_value()) return false;
  if (!member->is_object()) return true;
  auto count = [&](const char* key) {
    auto it = member->find(key);
    return it == member->end() ? uint64_t{0} : TokenCount(*it);
  };
  usage.prompt_tokens = count("prompt_tokens");
  usage.completion_tokens = count("completion_tokens");
  usage.seen = true;
  return true;
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
  // After compression (or its fallback): forwards, or for Operation::kCompress replies.
  void Proceed(json::WireJson body);
  void Forward(json::WireJson body);
  // Usage and savings ledger (tenants issue): gets what the upstream reported and what
  // compression saved; nothing to book into yet.
  void Book(const Usage& usage, const v1::CompressionReport& compression);
  // Queues the original prompt and the answer for the route's alignment pairs file, if it has one.
  void RecordAlignmentPair();
  // Ends the call once: the terminal responder call, metrics, booking, access log.
  void Finish(absl::Status status);
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
  Usage usage_;
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
  if (absl::Status s = Validate(info_.operation, body); !s.ok()) return Finish(s);
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

void CallState::Compress(json::WireJson wire) {
  const v1::Compression& policy = route_->compression();
  if (pipeline_.recorder != nullptr && !policy.record_alignment_pairs().empty()) {
    const Json& body = wire.json();
    if (info_.operation == Operation::kChatCompletions) {
      alignment_prompt_ = RenderAlignmentPrompt(body["messages"]);
    } else if (info_.operation == Operation::kCompletions) {
      auto prompt = body.find("prompt");
      if (prompt != body.end() && prompt->is_string()) {
        alignment_prompt_ = prompt->get<std::string>();
      }
    }
  }
  // Nothing to ask the step when the route can never compress: skip the copy kept for fallback.
  if (!policy.enabled() && !route_->allow_overrides() && info_.operation != Operation::kCompress) {
    head_.compression.set_applied(false);
    head_.compression.set_reason("compression is off for this route");
    return Forward(std::move(wire));
  }
  // The request as the client wrote it: forwarded when compression fails (unless the route says
  // to fail), and otherwise given the compressed members, so that the others keep their text.
  json::WireJson original = wire;
  const bool forward_on_error = policy.on_error() != "fail";
  pipeline_.compression.Compress(
      *route_, info_, std::move(wire.mutable_json()),
      [self = shared_from_this(), original = std::move(original),
       forward_on_error](absl::StatusOr<CompressionStep::Result> result) mutable {
        if (self->IsCancelled()) return self->Finish(absl::CancelledError("cancelled"));
        if (!result.ok()) {
          // A bad override is the client's mistake, not a compressor failure: always an error.
          if (!forward_on_error || result.status().code() == absl::StatusCode::kInvalidArgument) {
            return self->Finish(result.status());
          }
          self->pipeline_.metrics.RecordCompressionFallback(self->RouteLabel());
          LogJson(LogLevel::kWarn, Json{{"msg", "compression failed; forwarding uncompressed"},
                                        {"request_id", self->info_.request_id},
                                        {"route", self->RouteLabel()},
                                        {"error", std::string(result.status().message())}});
          self->head_.compression.set_applied(false);
          self->head_.compression.set_reason(std::string(result.status().message()));
          return self->Proceed(std::move(original));
        }
        self->head_.compression = result->report;
        if (result->report.applied()) {
          self->pipeline_.metrics.RecordCompression(
              self->RouteLabel(), result->report.original_tokens(),
              result->report.compressed_tokens(), absl::Milliseconds(result->report.compress_ms()),
              result->report.cache_hit());
        }
        original.SetMembers(std::move(result->body));
        self->Proceed(std::move(original));
      });
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
  switch (info_.operation) {
    case Operation::kCompletions:
      request.endpoint = providers::Endpoint::kCompletions;
      break;
    case Operation::kEmbeddings:
      request.endpoint = providers::Endpoint::kEmbeddings;
      break;
    default:
      request.endpoint = providers::Endpoint::kChatCompletions;
      break;
  }
  // Edits of members, each spliced into the client's text: the rest reaches the upstream as the
  // client wrote it.
  body.EraseMember("terse");                 // a request's compression override stays here
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
  ReadUsage(body, usage_);
  response_ = std::move(body);
}

void CallState::OnChunks(std::span<json::WireJson> chunks) {
  if (first_byte_ == absl::InfinitePast()) first_byte_ = absl::Now();
  // The chunks the client gets are moved to the front, in order.
  size_t kept = 0;
  for (json::WireJson& chunk : chunks) {
    // Chunks without `usage` (most) go on as the text they arrived as, unparsed.
    if (ReadUsage(chunk, usage_) && !client_wants_usage_) {
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

void CallState::Book(const Usage& usage, const v1::CompressionReport& compression) {}

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

void CallState::Finish(absl::Status status) {
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    if (cancelled_ && status.ok() && stream_) status = absl::CancelledError("cancelled");
  }
  const absl::Time end = absl::Now();
  int http_status = 200;
  ErrorDetail detail;
  if (!status.ok()) {
    detail = DetailOf(status);
    http_status = detail.http_status;
  }

  const std::string route = RouteLabel();
  const std::string_view operation = OperationName(info_.operation);
  Metrics& metrics = pipeline_.metrics;
  metrics.RecordRequest(route, operation, http_status, end - start_);
  if (!status.ok()) metrics.RecordError(route, operation, detail.type);
  const bool forwarded = forwarded_ != absl::InfinitePast();
  if (forwarded && first_byte_ != absl::InfinitePast()) {
    metrics.RecordUpstream(route, first_byte_ - forwarded_, end - forwarded_);
  }
  if (usage_.seen) metrics.RecordTokens(route, usage_.prompt_tokens, usage_.completion_tokens);
  Book(usage_, head_.compression);
  if (status.ok()) RecordAlignmentPair();
  metrics.AddInFlight(-1);
  pipeline_.in_flight.fetch_sub(1, std::memory_order_relaxed);

  if (LogEnabled(LogLevel::kInfo)) {
    Json line = {{"msg", "request"},
                 {"request_id", info_.request_id},
                 {"face", FaceName(info_.face)},
                 {"operation", operation},
                 {"route", route},
                 {"model", model_},
                 {"upstream_model", upstream_model_},
                 {"stream", stream_},
                 {"status", http_status},
                 {"latency_ms", Milliseconds(end - start_)}};
    if (forwarded) {
      line["upstream_ms"] = Milliseconds(end - forwarded_);
      if (first_byte_ != absl::InfinitePast()) {
        line["first_byte_ms"] = Milliseconds(first_byte_ - forwarded_);
      }
    }
    if (usage_.seen) {
      line["prompt_tokens"] = usage_.prompt_tokens;
      line["completion_tokens"] = usage_.completion_tokens;
    }
    if (head_.compression.applied()) {
      line["original_tokens"] = head_.compression.original_tokens();
      line["compressed_tokens"] = head_.compression.compressed_tokens();
    }
    if (!status.ok()) {
      line["error_type"] = detail.type;
      line["error"] = std::string(status.message());
    }
    LogJson(LogLevel::kInfo, std::move(line));
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

void PassThroughCompression::Compress(const v1::Route& route, const CallInfo& info, Json body,
                                      Done done) {
  Result result;
  result.body = std::move(body);
  result.report.set_applied(false);
  result.report.set_reason("compression is not available yet");
  std::move(done)(std::move(result));
}

}  // namespace terse::proxy
