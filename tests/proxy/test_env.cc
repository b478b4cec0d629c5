// Shared pieces of the proxy tests (see test_env.h).
#include "tests/proxy/test_env.h"

#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace terse::proxy::testing {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// ---- RecordingResponder

void RecordingResponder::Add(Event e) {
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_back(std::move(e));
  changed_.notify_all();
}

void RecordingResponder::Reply(const ResponseHead& head, json::WireJson body) {
  const bool as_received = body.has_text();
  Add({Kind::kReply, body.json(), body.text(), as_received, absl::OkStatus(), head});
}
void RecordingResponder::StartStream(const ResponseHead& head) {
  Add({Kind::kStartStream, Json(), "", false, absl::OkStatus(), head});
}
void RecordingResponder::Chunks(std::span<json::WireJson> chunks) {
  for (const json::WireJson& chunk : chunks) {
    const bool as_received = chunk.has_text();
    Add({Kind::kChunk, chunk.json(), chunk.text(), as_received, absl::OkStatus(), {}});
  }
}
void RecordingResponder::EndStream(absl::Status status) {
  Add({Kind::kEndStream, Json(), "", false, std::move(status), {}});
}
void RecordingResponder::Fail(absl::Status status) {
  Add({Kind::kFail, Json(), "", false, std::move(status), {}});
}

namespace {
bool IsTerminal(RecordingResponder::Kind k) {
  return k == RecordingResponder::Kind::kReply || k == RecordingResponder::Kind::kEndStream ||
         k == RecordingResponder::Kind::kFail;
}
}  // namespace

bool RecordingResponder::WaitDone(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] {
    for (const Event& e : events_) {
      if (IsTerminal(e.kind)) return true;
    }
    return false;
  });
}

bool RecordingResponder::WaitChunks(size_t n, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] {
    size_t chunks = 0;
    for (const Event& e : events_) chunks += e.kind == Kind::kChunk;
    return chunks >= n;
  });
}

std::vector<RecordingResponder::Event> RecordingResponder::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

int RecordingResponder::terminal_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const Event& e : events_) n += IsTerminal(e.kind);
  return n;
}

RecordingResponder::Event RecordingResponder::terminal() const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Event& e : events_) {
    if (IsTerminal(e.kind)) return e;
  }
  return {Kind::kChunk, Json(), "", false, absl::UnknownError("no terminal event"), {}};
}

std::vector<Json> RecordingResponder::chunks() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Json> out;
  for (const Event& e : events_) {
    if (e.kind == Kind::kChunk) out.push_back(e.json);
  }
  return out;
}

// ---- ScriptedCompression

void ScriptedCompression::Compress(const v1::Route& route, const CallInfo& info, Input input,
                                   Done done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back(info);
  }
  std::move(done)(script_(route, info, std::move(input)));
}

std::vector<CallInfo> ScriptedCompression::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

// ---- Gateway

std::string GatewayYaml(const terse::testing::FakeUpstream& upstream,
                        const std::string& extra_routes, const std::string& limits) {
  std::string yaml = R"(
listeners:
  http: {host: 127.0.0.1, port: 0}
  grpc: {host: 127.0.0.1, port: 0}
  io_threads: 2
providers:
  - name: fake
    kind: openai_compatible
    base_url: )" + upstream.base_url() +
                     R"(
    retry: {max_attempts: 1}
    timeouts: {connect_ms: 2000, first_byte_ms: 1500, total_ms: 20000}
routes:
  - name: renamed
    model: small
    provider: fake
    upstream_model: fake-small-2024
  - name: org
    model: org-model
    provider: fake
    pass_organization: true
)" + extra_routes + R"(
  - name: gpt
    model: "gpt-*"
    provider: fake
)";
  yaml += limits.empty() ? "limits: {max_body_bytes: 65536}\n" : limits;
  return yaml;
}

Gateway::Gateway(Options options) {
  auto loaded = config::LoadConfigText(GatewayYaml(upstream, options.extra_routes, options.limits));
  if (!loaded.ok()) {
    std::fprintf(stderr, "test config does not load: %s\n",
                 std::string(loaded.status().message()).c_str());
    std::abort();
  }
  config = *loaded;
  // As terse serves: one engine lane per I/O thread, hosted by it.
  auto created = providers::ProviderSet::Create(
      config->proto(), static_cast<int>(HttpServer::IoThreads(config->proto())));
  if (!created.ok()) {
    std::fprintf(stderr, "providers: %s\n", std::string(created.status().message()).c_str());
    std::abort();
  }
  providers = std::move(*created);
  pipeline = std::make_unique<Pipeline>(
      config, *providers, options.compression ? *options.compression : pass_through, metrics);
  if (options.start_http) {
    auto started = HttpServer::Start(config->proto(), *pipeline, metrics, &providers->engine());
    if (!started.ok()) {
      std::fprintf(stderr, "http: %s\n", std::string(started.status().message()).c_str());
      std::abort();
    }
    http = std::move(*started);
  }
}

Gateway::~Gateway() {
  if (http) http->Shutdown(absl::Seconds(2));
  http.reset();
  pipeline.reset();
  providers.reset();
}

// ---- HttpResponse

std::string HttpResponse::Header(const std::string& lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return "";
}

bool HttpResponse::HasHeader(const std::string& lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return true;
  }
  return false;
}

Json HttpResponse::JsonBody() const { return Json::parse(body, nullptr, false); }

// ---- HttpClient

struct HttpClient::Impl {
  net::io_context ioc;
  tcp::socket socket{ioc};
  beast::flat_buffer buffer;
  std::optional<http::response_parser<http::string_body>> parser;
  std::chrono::milliseconds timeout{15000};
  bool connected = false;

  // Runs one asynchronous operation to completion or until the timeout (then cancels it).
  template <typename Start>
  beast::error_code Run(Start start) {
    beast::error_code result;
    bool done = false;
    start([&](beast::error_code ec, size_t) {
      result = ec;
      done = true;
    });
    ioc.restart();
    ioc.run_for(timeout);
    if (!done) {
      beast::error_code ignored;
      socket.cancel(ignored);
      ioc.restart();
      ioc.run();
      return net::error::timed_out;
    }
    return result;
  }

  HttpResponse Convert() {
    HttpResponse r;
    auto& msg = parser->get();
    r.status = static_cast<int>(msg.result_int());
    for (const auto& field : msg) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    r.body = msg.body();
    return r;
  }
};

HttpClient::HttpClient(int port, absl::Duration timeout) : impl_(std::make_unique<Impl>()) {
  impl_->timeout = absl::ToChronoMilliseconds(timeout);
  tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port));
  beast::error_code ec = impl_->Run([&](auto handler) {
    impl_->socket.async_connect(endpoint,
                                [handler](beast::error_code e) mutable { handler(e, 0); });
  });
  impl_->connected = !ec;
  if (ec) ADD_FAILURE() << "connect to 127.0.0.1:" << port << ": " << ec.message();
}

HttpClient::~HttpClient() { Close(); }

void HttpClient::Close() {
  beast::error_code ignored;
  impl_->socket.shutdown(tcp::socket::shutdown_both, ignored);
  impl_->socket.close(ignored);
}

void HttpClient::ShutdownSend() {
  beast::error_code ignored;
  impl_->socket.shutdown(tcp::socket::shutdown_send, ignored);
}

bool HttpClient::SendRaw(const std::string& bytes) {
  beast::error_code ec = impl_->Run(
      [&](auto handler) { net::async_write(impl_->socket, net::buffer(bytes), handler); });
  return !ec;
}

bool HttpClient::SendRequest(const std::string& method, const std::string& target,
                             const std::string& body,
                             const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string out = method + " " + target + " HTTP/1.1\r\nhost: 127.0.0.1\r\n";
  bool has_type = false;
  for (const auto& [name, value] : headers) {
    out += name + ": " + value + "\r\n";
    if (name == "content-type") has_type = true;
  }
  if (!body.empty() || method == "POST") {
    if (!has_type) out += "content-type: application/json\r\n";
    out += "content-length: " + std::to_string(body.size()) + "\r\n";
  }
  out += "\r\n";
  out += body;
  return SendRaw(out);
}

std::optional<HttpResponse> HttpClient::ReadResponse() {
  impl_->parser.emplace();
  impl_->parser->body_limit(std::numeric_limits<std::uint64_t>::max());
  beast::error_code ec = impl_->Run([&](auto handler) {
    http::async_read(impl_->socket, impl_->buffer, *impl_->parser, handler);
  });
  if (ec) return std::nullopt;
  return impl_->Convert();
}

std::optional<HttpResponse> HttpClient::ReadHead() {
  impl_->parser.emplace();
  impl_->parser->body_limit(std::numeric_limits<std::uint64_t>::max());
  beast::error_code ec = impl_->Run([&](auto handler) {
    http::async_read_header(impl_->socket, impl_->buffer, *impl_->parser, handler);
  });
  if (ec) return std::nullopt;
  return impl_->Convert();
}

std::string HttpClient::ReadBodyUntil(const std::string& needle) {
  if (!impl_->parser) return "";
  for (int guard = 0; guard < 100000; ++guard) {
    const std::string& body = impl_->parser->get().body();
    if (impl_->parser->is_done() || body.find(needle) != std::string::npos) return body;
    beast::error_code ec = impl_->Run([&](auto handler) {
      http::async_read_some(impl_->socket, impl_->buffer, *impl_->parser, handler);
    });
    if (ec) break;
  }
  return impl_->parser->get().body();
}

bool HttpClient::WaitClosed() {
  char scratch[4096];
  for (int guard = 0; guard < 100000; ++guard) {
    beast::error_code ec = impl_->Run(
        [&](auto handler) { impl_->socket.async_read_some(net::buffer(scratch), handler); });
    if (ec == net::error::timed_out) return false;
    if (ec) return true;
  }
  return false;
}

std::optional<HttpResponse> HttpClient::Request(
    const std::string& method, const std::string& target, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  if (!SendRequest(method, target, body, headers)) return std::nullopt;
  return ReadResponse();
}

std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    std::string event = body.substr(pos, end - pos);
    if (event.rfind("data: ", 0) == 0) out.push_back(event.substr(6));
    pos = end + 2;
  }
  return out;
}

}  // namespace terse::proxy::testing
