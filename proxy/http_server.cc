// The OpenAI API over HTTP: the route table (with Azure OpenAI's paths), the key a request
// carries, the request body onto the Pipeline, the pipeline's answer back as a JSON response or
// as server-sent events, and errors in OpenAI's shape with the headers its SDKs read. The
// transport (http_transport.h) frames the bytes; this file decides what they say.
#include "proxy/http_server.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/ascii.h"
#include "base/errors.h"
#include "json/codec.h"
#include "json/scan.h"
#include "proxy/access_log.h"

namespace terse::proxy {
namespace {

constexpr uint64_t kDefaultBodyLimit = 8 * 1024 * 1024;

// Debian's abseil has its own string_view; StrCat takes only that one.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// ---- Routes.

struct RouteEntry {
  std::string_view path;    // without the optional /v1 prefix
  std::string_view method;  // the one it answers
  Operation operation;
};

constexpr RouteEntry kRoutes[] = {
    {"/chat/completions", "POST", Operation::kChatCompletions},
    {"/completions", "POST", Operation::kCompletions},
    {"/embeddings", "POST", Operation::kEmbeddings},
    {"/models", "GET", Operation::kListModels},
    {"/healthz", "GET", Operation::kHealth},
    {"/readyz", "GET", Operation::kReady},
    {"/metrics", "GET", Operation::kMetrics},
    {"/terse/compress", "POST", Operation::kCompress},
    {"/terse/usage", "GET", Operation::kUsage},
};

// The path terse routes on: the target without its query and the optional /v1 prefix. Azure
// OpenAI's form, `[/openai]/deployments/{deployment}/chat/completions?api-version=...` (what the
// AzureOpenAI SDK clients send), maps to the same routes; `deployment` then receives the
// deployment name, which names the model as it does on Azure.
std::string_view Path(std::string_view target, std::string_view* deployment = nullptr) {
  target = target.substr(0, target.find('?'));
  auto strip = [&target](std::string_view prefix) {
    if (target.size() > prefix.size() && target.substr(0, prefix.size()) == prefix &&
        target[prefix.size()] == '/') {
      target.remove_prefix(prefix.size());
    }
  };
  strip("/v1");
  strip("/openai");
  constexpr std::string_view kDeployments = "/deployments/";
  if (target.substr(0, kDeployments.size()) == kDeployments) {
    const size_t end = target.find('/', kDeployments.size());
    if (end != std::string_view::npos && end > kDeployments.size()) {
      if (deployment != nullptr) {
        *deployment = target.substr(kDeployments.size(), end - kDeployments.size());
      }
      target.remove_prefix(end);
    }
  }
  return target;
}

const RouteEntry* FindRoute(std::string_view target) {
  const std::string_view path = Path(target);
  for (const RouteEntry& entry : kRoutes) {
    if (entry.path == path) return &entry;
  }
  return nullptr;
}

// The label of the operation a target names, for a request answered before the pipeline.
std::string_view OperationLabel(std::string_view target) {
  const RouteEntry* entry = FindRoute(target);
  return entry != nullptr ? OperationName(entry->operation) : "other";
}

// The key from `Authorization: Bearer ...`, else from Azure's `api-key`; empty when neither.
std::string ApiKeyOf(const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string key;
  for (const auto& [name, value] : headers) {
    if (name == "authorization") {
      std::string_view v = AsciiTrim(value);
      if (v.size() > 7 && AsciiEqualsIgnoreCase(v.substr(0, 7), "bearer ")) {
        key = std::string(AsciiTrim(v.substr(7)));
      }
    } else if (name == "api-key" && key.empty()) {
      key = std::string(AsciiTrim(value));
    }
  }
  return key;
}

// The query of a target, `a=1&b=x%3Ay`, with its values percent-decoded.
std::vector<std::pair<std::string, std::string>> QueryOf(std::string_view target) {
  std::vector<std::pair<std::string, std::string>> out;
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return out;
  auto decode = [](std::string_view s) {
    std::string d;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
          std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
        d += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else {
        d += s[i] == '+' ? ' ' : s[i];
      }
    }
    return d;
  };
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    std::string_view pair = rest.substr(0, rest.find('&'));
    rest.remove_prefix(std::min(rest.size(), pair.size() + 1));
    const size_t eq = pair.find('=');
    out.emplace_back(decode(pair.substr(0, eq)),
                     eq == std::string_view::npos ? "" : decode(pair.substr(eq + 1)));
  }
  return out;
}

// `YYYY-MM-DD` (a UTC day: its start, or with `day_end` the next day's) or RFC 3339.
absl::StatusOr<absl::Time> ParseUsageTime(const std::string& text, bool day_end,
                                          std::string_view param) {
  absl::Time t;
  std::string error;
  if (absl::ParseTime("%Y-%m-%d", text, &t, &error)) return day_end ? t + absl::Hours(24) : t;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &error)) return t;
  return InvalidRequest(absl::StrCat(Av(param), " must be YYYY-MM-DD or RFC 3339"), param);
}

absl::StatusOr<Tenants::UsageRequest> ParseUsageRequest(const HttpRequest& request) {
  Tenants::UsageRequest usage;
  usage.api_key = ApiKeyOf(request.headers);
  for (const auto& [name, value] : QueryOf(request.target)) {
    if (name == "tenant") {
      usage.tenant = value;
    } else if (name == "from" || name == "to") {
      absl::StatusOr<absl::Time> t = ParseUsageTime(value, name == "to", name);
      if (!t.ok()) return t.status();
      (name == "from" ? usage.from : usage.to) = *t;
    } else if (name == "group_by") {
      using tenancy::GroupBy;
      if (value == "day") {
        usage.group_by = GroupBy::kDay;
      } else if (value == "model") {
        usage.group_by = GroupBy::kModel;
      } else if (value == "route") {
        usage.group_by = GroupBy::kRoute;
      } else if (value == "key") {
        usage.group_by = GroupBy::kKey;
      } else if (value != "none") {
        return InvalidRequest("group_by must be none, day, model, route or key", "group_by");
      }
    } else {
      return InvalidRequest(absl::StrCat("unknown parameter ", name), name);
    }
  }
  return usage;
}

// A request answered by the face itself with `error`: counted and logged. Thread-safe.
void CountRefusal(Metrics& metrics, std::string_view request_id, absl::Time received,
                  const absl::Status& error, std::string_view operation) {
  const ErrorDetail detail = DetailOf(error);
  const absl::Duration latency = absl::Now() - received;
  metrics.RecordRequest("", operation, detail.http_status, latency);
  metrics.RecordError("", operation, detail.type);
  LogAccess({.request_id = request_id,
             .face = Face::kHttp,
             .operation = operation,
             .http_status = detail.http_status,
             .latency = latency,
             .status = error});
}

// A JSON answer made on another thread, delivered on the connection's.
class JsonDelivery final : public HttpDelivery {
 public:
  JsonDelivery(HttpExchange exchange, absl::StatusOr<Json> body)
      : exchange_(std::move(exchange)), body_(std::move(body)) {}
  void Deliver() override;

 private:
  const HttpExchange exchange_;
  const absl::StatusOr<Json> body_;
};

// ---- Response heads.

// Header values that came from elsewhere must not be able to split the response.
// Appends `v` without its CR and LF bytes.
void AppendHeaderValue(std::string& out, std::string_view v) {
  for (size_t cut; (cut = v.find_first_of("\r\n")) != std::string_view::npos;) {
    out.append(v.substr(0, cut));
    v.remove_prefix(cut + 1);
  }
  out.append(v);
}

std::string FormatNumber(double v, const char* format) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

// The header lines of a response head: x-terse-* of a compression that was applied, then the
// pipeline's own.
std::string HeadFields(const ResponseHead& head) {
  std::string out;
  const v1::CompressionReport& report = head.compression;
  if (report.applied()) {
    absl::StrAppend(&out, "x-terse-original-tokens: ", report.original_tokens(), "\r\n",
                    "x-terse-compressed-tokens: ", report.compressed_tokens(), "\r\n",
                    "x-terse-rate: ", FormatNumber(report.rate(), "%.4g"), "\r\n",
                    "x-terse-compress-ms: ", FormatNumber(report.compress_ms(), "%.2f"), "\r\n",
                    "x-terse-cache: ", report.cache_hit() ? "hit" : "miss", "\r\n");
  }
  for (const auto& [name, value] : head.headers) {
    AppendHeaderValue(out, name);
    out.append(": ");
    AppendHeaderValue(out, value);
    out.append("\r\n");
  }
  return out;
}

// An error in OpenAI's shape, with the headers its SDKs read: whether to retry, and the
// upstream's own word on when (`allow` for a 405).
void SendError(const HttpExchange& exchange, const absl::Status& status,
               std::string_view allow = {}) {
  const ErrorDetail detail = DetailOf(status);
  std::string fields;
  if (!detail.retryable) fields += "x-should-retry: false\r\n";
  if (const std::optional<int64_t> ms = detail.retry_after_ms) {
    absl::StrAppend(&fields, "retry-after-ms: ", *ms, "\r\nretry-after: ", (*ms + 999) / 1000,
                    "\r\n");
  }
  if (!allow.empty()) absl::StrAppend(&fields, "allow: ", Av(allow), "\r\n");
  for (const auto& [name, value] : ResponseFieldsOf(status)) {
    absl::StrAppend(&fields, name, ": ", value, "\r\n");
  }
  exchange.Respond(detail.http_status, "application/json", fields,
                   json::DumpJson(OpenAiErrorBody(status)));
}

void SendJson(const HttpExchange& exchange, int status, const Json& body) {
  exchange.Respond(status, "application/json", "", json::DumpJson(body));
}

void JsonDelivery::Deliver() {
  if (!body_.ok()) return SendError(exchange_, body_.status());
  SendJson(exchange_, 200, *body_);
}

// ---- The pipeline's answer.

// The pipeline's view of one exchange. Its events reach the connection's thread through the
// transport (HttpExchange::Schedule): heard while that thread runs its upstream lane (the usual
// case, as a request's upstream exchange runs on the lane of its own I/O thread), they are
// delivered as soon as the lane has done the work of the socket they came from; heard anywhere
// else, they are posted. Events gather until they are delivered, so the chunks of one upstream read
// (often the whole answer) reach the client in one write.
class HttpResponder final : public Responder,
                            public HttpDelivery,
                            public std::enable_shared_from_this<HttpResponder> {
 public:
  explicit HttpResponder(HttpExchange exchange) : exchange_(std::move(exchange)) {}

  void Reply(const ResponseHead& head, json::WireJson body) override {
    Gather([&](Batch& b) { b.reply.emplace(head, std::move(body)); });
  }
  void StartStream(const ResponseHead& head) override {
    Gather([&](Batch& b) { b.head = head; });
  }
  // Each chunk as one server-sent event, its text as the upstream wrote it.
  void Chunks(std::span<json::WireJson> chunks) override {
    constexpr std::string_view kData = "data: ", kEnd = "\n\n";
    size_t size = 0;
    for (const json::WireJson& chunk : chunks) {
      size += kData.size() + chunk.text().size() + kEnd.size();
    }
    Gather([&](Batch& b) {
      // Exactly once per batch: reserving at each later call would copy it each time.
      if (b.events.empty()) b.events.reserve(size);
      for (const json::WireJson& chunk : chunks) {
        b.events.append(kData).append(chunk.text()).append(kEnd);
      }
    });
  }
  void EndStream(absl::Status status) override {
    Gather([&](Batch& b) { b.end = std::move(status); });
  }
  void Fail(absl::Status status) override {
    Gather([&](Batch& b) { b.fail = std::move(status); });
  }

  // On the connection's thread: says what gathered.
  void Deliver() override {
    Batch batch;
    {
      absl::MutexLock lock(&mu_);
      batch = std::move(batch_);
      batch_ = Batch();
      pending_ = false;
    }
    if (batch.reply.has_value()) {
      const json::WireJson& body = batch.reply->second;
      return exchange_.Respond(200, "application/json", HeadFields(batch.reply->first),
                               body.text());
    }
    if (batch.fail.has_value()) return Failed(*batch.fail);
    exchange_.HoldWrites();
    if (batch.head.has_value()) {
      exchange_.StartStream(
          200, "text/event-stream",
          "cache-control: no-cache\r\nx-accel-buffering: no\r\n" + HeadFields(*batch.head));
    }
    if (!batch.events.empty()) exchange_.Stream(std::move(batch.events));
    if (batch.end.has_value()) Ended(*batch.end);
    exchange_.ReleaseWrites();
  }

 private:
  // What the pipeline said since the last delivery: a reply or a failure alone, or a stream's
  // events in this order.
  struct Batch {
    std::optional<std::pair<ResponseHead, json::WireJson>> reply;  // Reply
    std::optional<absl::Status> fail;                              // Fail
    std::optional<ResponseHead> head;                              // StartStream
    std::string events;                                            // Chunks: SSE events
    std::optional<absl::Status> end;                               // EndStream
  };

  template <typename Fn>
  void Gather(Fn add) {
    {
      absl::MutexLock lock(&mu_);
      add(batch_);
      if (pending_) return;  // a delivery is on its way and takes this too
      pending_ = true;
    }
    exchange_.Schedule(shared_from_this());
  }

  // A failure before anything was sent (counted by the pipeline).
  void Failed(const absl::Status& status) {
    if (status.code() == absl::StatusCode::kCancelled) return exchange_.Close();  // client gone
    SendError(exchange_, status);
  }

  void Ended(const absl::Status& status) {
    if (!exchange_.streaming()) return Failed(status);
    if (status.code() == absl::StatusCode::kCancelled) return exchange_.Close();
    if (status.ok()) {
      exchange_.Stream("data: [DONE]\n\n");
    } else {
      // After the 200 the only way to report a failure is in band; clients raise it as an error.
      exchange_.Stream(absl::StrCat("data: ", json::DumpJson(OpenAiErrorBody(status)), "\n\n"));
    }
    exchange_.EndStream();
  }

  // Constant after construction.
  const HttpExchange exchange_;

  absl::Mutex mu_;
  Batch batch_ ABSL_GUARDED_BY(mu_);
  bool pending_ ABSL_GUARDED_BY(mu_) = false;  // a Deliver is due: queued or posted
};

}  // namespace

// ---- The API: what each request gets.

struct HttpServer::Api final : HttpHandler {
  Api(Pipeline& pipeline, Metrics& metrics) : pipeline(pipeline), metrics(metrics) {}

  void OnRequest(HttpRequest request, HttpExchange exchange) override {
    const RouteEntry* entry = FindRoute(request.target);
    if (entry == nullptr) {
      return Refuse(request, exchange,
                    MakeError(absl::StatusCode::kNotFound,
                              absl::StrCat("Unknown request URL: ", request.method, " ",
                                           request.target, ". Please check the URL for typos."),
                              {.http_status = 404, .code = "unknown_url"}),
                    "other");
    }
    if (request.method != entry->method) {
      return Refuse(request, exchange,
                    MakeError(absl::StatusCode::kInvalidArgument,
                              absl::StrCat("Method ", request.method, " is not allowed on ",
                                           Av(entry->path), "; use ", Av(entry->method), "."),
                              {.http_status = 405, .code = "method_not_allowed"}),
                    OperationName(entry->operation), entry->method);
    }
    switch (entry->operation) {
      case Operation::kHealth:
        return SendJson(exchange, 200, Json{{"status", "ok"}});
      case Operation::kReady:
        if (stopping.load()) return SendJson(exchange, 503, Json{{"status", "shutting down"}});
        return SendJson(exchange, 200, Json{{"status", "ready"}});
      // With tenancy on, these need a key too (the pipeline's calls check their own).
      case Operation::kListModels:
        if (!KeyAccepted(request, exchange, entry->operation)) return;
        return SendJson(exchange, 200, pipeline.ListModels());
      case Operation::kMetrics:
        if (!KeyAccepted(request, exchange, entry->operation)) return;
        return exchange.Respond(200, "text/plain; version=0.0.4; charset=utf-8", "",
                                metrics.RenderPrometheus());
      case Operation::kUsage: {
        absl::StatusOr<Tenants::UsageRequest> usage = ParseUsageRequest(request);
        if (!usage.ok()) return Refuse(request, exchange, usage.status(), "other");
        // A refusal is counted and logged as the face's others are, from whichever thread (the
        // metrics outlive the server; this Api may not).
        return pipeline.Usage(
            *std::move(usage), [&metrics = metrics, exchange, request_id = request.request_id,
                                received = request.received](absl::StatusOr<Json> body) {
              if (!body.ok()) {
                CountRefusal(metrics, request_id, received, body.status(), "other");
              }
              exchange.Schedule(std::make_shared<JsonDelivery>(exchange, std::move(body)));
            });
      }
      case Operation::kChatCompletions:
      case Operation::kCompletions:
      case Operation::kEmbeddings:
      case Operation::kCompress:
        return StartCall(request, exchange, entry->operation);
    }
  }

  // False, having refused the request, unless its key is accepted (always without tenancy).
  bool KeyAccepted(const HttpRequest& request, const HttpExchange& exchange, Operation operation) {
    absl::Status key = pipeline.CheckKey(ApiKeyOf(request.headers));
    if (!key.ok()) Refuse(request, exchange, key, OperationName(operation));
    return key.ok();
  }

  void OnRefused(const absl::Status& error, const HttpRequest& request,
                 HttpExchange exchange) override {
    Refuse(request, exchange, error, OperationLabel(request.target));
  }

  // The body onto the pipeline, with what the client's head says about the call.
  void StartCall(HttpRequest& request, const HttpExchange& exchange, Operation operation) {
    std::optional<Json> parsed = json::ParseJson(request.body);
    if (!parsed.has_value()) {
      const std::string message =
          json::NestsTooDeep(request.body)
              ? absl::StrCat("The JSON body of your request nests arrays and objects more than ",
                             json::kMaxJsonDepth, " levels deep.")
              : std::string(
                    "We could not parse the JSON body of your request. The OpenAI API "
                    "expects a JSON payload.");
      return Refuse(request, exchange, InvalidRequest(message), OperationName(operation));
    }
    // The text goes along with its value: relayed as the client wrote it, but for terse's edits.
    auto body = json::WireJson::FromParsedText(std::move(request.body), *std::move(parsed));
    std::string_view deployment;
    Path(request.target, &deployment);
    if (!deployment.empty() && body.json().is_object()) {
      body.SetMember("model", std::string(deployment));
    }

    CallInfo info;
    info.face = Face::kHttp;
    info.operation = operation;
    info.request_id = std::move(request.request_id);
    info.api_key = ApiKeyOf(request.headers);
    info.headers = std::move(request.headers);
    std::unique_ptr<PipelineCall> call = pipeline.Handle(std::move(info), std::move(body),
                                                         std::make_shared<HttpResponder>(exchange));
    exchange.OnAbandoned([call = std::move(call)] { call->Cancel(); });
  }

  // An error the face answers itself (the request never reached the pipeline): counted here.
  void Refuse(const HttpRequest& request, const HttpExchange& exchange, const absl::Status& error,
              std::string_view operation, std::string_view allow = {}) {
    CountRefusal(metrics, request.request_id, request.received, error, operation);
    SendError(exchange, error, allow);
  }

  // Constant after construction.
  Pipeline& pipeline;
  Metrics& metrics;

  std::atomic<bool> stopping{false};  // from the first moment of Shutdown: /readyz says 503
};

HttpServer::HttpServer(std::unique_ptr<Api> api, std::unique_ptr<HttpTransport> transport)
    : api_(std::move(api)), transport_(std::move(transport)) {}

HttpServer::~HttpServer() { Shutdown(); }

int HttpServer::port() const { return transport_->port(); }

void HttpServer::Shutdown(absl::Duration grace) {
  api_->stopping.store(true);
  transport_->Shutdown(grace);
}

unsigned HttpServer::IoThreads(const v1::Config& config) {
  if (config.listeners().io_threads() > 0) return config.listeners().io_threads();
  return std::max(1u, std::thread::hardware_concurrency());
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const v1::Config& config,
                                                              Pipeline& pipeline, Metrics& metrics,
                                                              providers::HttpClient* engine) {
  HttpTransportOptions options;
  if (!config.listeners().http().host().empty()) options.host = config.listeners().http().host();
  options.port = static_cast<uint16_t>(config.listeners().http().port());
  options.io_threads = IoThreads(config);
  options.max_body_bytes =
      config.limits().max_body_bytes() > 0 ? config.limits().max_body_bytes() : kDefaultBodyLimit;
  auto api = std::make_unique<Api>(pipeline, metrics);
  absl::StatusOr<std::unique_ptr<HttpTransport>> transport =
      HttpTransport::Start(options, *api, engine);
  if (!transport.ok()) return transport.status();
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(api), *std::move(transport)));
}

}  // namespace terse::proxy
