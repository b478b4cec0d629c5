// Tenancy on the request path, end to end in one process: real keys, a SQLite store in a fresh
// directory, the real pipeline, HTTP and gRPC servers, the fake upstream and the echo provider.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proxy/admission.h"
#include "proxy/grpc_server.h"
#include "tenancy/keys.h"
#include "terse/v1/gateway.grpc.pb.h"
#include "tests/proxy/test_env.h"
#include "tests/support/status_matchers.h"

namespace terse::proxy {
namespace {

using ::terse::proxy::testing::HttpClient;
using ::terse::proxy::testing::HttpResponse;
using ::terse::proxy::testing::SseData;
using ::terse::testing::FakeReply;
using ::terse::testing::FakeUpstream;
using ::terse::testing::IsOk;
using ::testing::HasSubstr;

constexpr char kAdminKey[] = "terse-test-admin-secret";

tenancy::GeneratedKey NewKey() {
  absl::StatusOr<tenancy::GeneratedKey> key = tenancy::GenerateKey();
  EXPECT_THAT(key, IsOk());
  return *key;
}

// A fixed answer whose usage costs exactly what admission reserves for `max_tokens: 100` at
// $0.001 per output token and nothing per input token: $0.1.
Json CostlyAnswer() {
  return Json::parse(R"({"id": "c1", "object": "chat.completion", "model": "gpt-x",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 100, "total_tokens": 107}})");
}

struct Settings {
  std::string limits = "{requests_per_minute: 1000, tokens_per_minute: 10000000}";
  std::string tenancy_extra;               // more of the tenancy block
  std::string tenant_extra;                // more of tenant acme's block
  CompressionStep* compression = nullptr;  // default: the pass-through
};

// The gateway with tenancy on: tenant `acme` with key `key` (and a revoked one), allowed the
// routes `chat` and `echo` only; a $1 total budget; 1000 requests and 1e7 tokens a minute.
class TenantGateway {
 public:
  explicit TenantGateway(const Settings& settings = {}) {
    std::string dir = ::testing::TempDir() + "/terse-tenancy-XXXXXX";
    data_dir_ = mkdtemp(dir.data()) ? dir : "";
    setenv("TERSE_TEST_ADMIN_KEY", kAdminKey, 1);
    const std::string yaml = absl::StrCat(R"(
listeners:
  http: {host: 127.0.0.1, port: 0}
  grpc: {host: 127.0.0.1, port: 0}
  io_threads: 2
providers:
  - name: fake
    kind: openai_compatible
    base_url: )",
                                          upstream.base_url(), R"(
    retry: {max_attempts: 1}
    timeouts: {connect_ms: 2000, first_byte_ms: 5000, total_ms: 20000}
  - {name: echo, kind: echo}
routes:
  - {name: chat, model: "gpt-*", provider: fake}
  - {name: echo, model: "echo-*", provider: echo}
  - {name: other, model: "other-*", provider: fake}
tenancy:
  data_dir: )",
                                          data_dir_, R"(
  admin_key_env: TERSE_TEST_ADMIN_KEY
  prices:
    openai_compatible/*: {litellm_provider: openai_compatible, input_cost_per_token: 0, output_cost_per_token: 0.001}
    echo/*: {litellm_provider: echo, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
)",
                                          settings.tenancy_extra, R"(
  tenants:
    - id: acme
      allowed_routes: [chat, echo]
      limits: )",
                                          settings.limits, R"(
      budgets: [{period: total, usd: 1}]
      keys:
        - {id: )",
                                          key.id, R"(, hash: ")", key.hash, R"("}
        - {id: )",
                                          revoked.id, R"(, hash: ")", revoked.hash,
                                          R"(", revoked: true}
)",
                                          settings.tenant_extra);
    auto loaded = config::LoadConfigText(yaml);
    EXPECT_THAT(loaded, IsOk());
    config = *loaded;
    auto opened = Tenants::Open(config->proto(), metrics);
    EXPECT_THAT(opened, IsOk());
    tenants = *std::move(opened);
    auto created = providers::ProviderSet::Create(
        config->proto(), static_cast<int>(HttpServer::IoThreads(config->proto())));
    EXPECT_THAT(created, IsOk());
    providers = *std::move(created);
    pipeline = std::make_unique<Pipeline>(
        config, *providers, settings.compression ? *settings.compression : pass_through, metrics,
        tenants.get());
    auto http_started =
        HttpServer::Start(config->proto(), *pipeline, metrics, &providers->engine());
    EXPECT_THAT(http_started, IsOk());
    http = *std::move(http_started);
    auto grpc_started = GrpcServer::Start(config->proto(), *pipeline);
    EXPECT_THAT(grpc_started, IsOk());
    grpc = *std::move(grpc_started);
  }

  ~TenantGateway() {
    grpc->Shutdown();
    http->Shutdown(absl::Seconds(2));
    grpc.reset();
    http.reset();
    pipeline.reset();
    providers.reset();
    tenants.reset();
    std::error_code ec;
    std::filesystem::remove_all(data_dir_, ec);
  }

  std::optional<HttpResponse> Post(const std::string& path, const Json& body,
                                   const std::string& api_key) {
    HttpClient client(http->port());
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Content-Type", "application/json"}};
    if (!api_key.empty()) headers.emplace_back("Authorization", "Bearer " + api_key);
    return client.Request("POST", path, body.dump(), headers);
  }
  std::optional<HttpResponse> Get(const std::string& path, const std::string& api_key) {
    HttpClient client(http->port());
    std::vector<std::pair<std::string, std::string>> headers;
    if (!api_key.empty()) headers.emplace_back("Authorization", "Bearer " + api_key);
    return client.Request("GET", path, "", headers);
  }

  // What the ledger holds for acme, and what its total budget counts.
  tenancy::UsageBucket Ledger() {
    tenancy::UsageQuery query;
    query.tenant_id = "acme";
    query.from = absl::InfinitePast();
    query.to = absl::InfiniteFuture();
    auto buckets = tenants->store().Usage(query);
    EXPECT_THAT(buckets, IsOk());
    return buckets->empty() ? tenancy::UsageBucket{} : buckets->front();
  }
  tenancy::Spend BudgetSpend() {
    tenancy::Limit budget;
    budget.kind = tenancy::Limit::Kind::kBudget;
    budget.tenant_id = "acme";
    budget.period = tenancy::Period::kTotal;
    auto spend = tenants->store().BudgetSpend(budget, absl::Now());
    EXPECT_THAT(spend, IsOk());
    return *spend;
  }

  tenancy::GeneratedKey key = NewKey();
  tenancy::GeneratedKey revoked = NewKey();
  FakeUpstream upstream;
  Metrics metrics;
  PassThroughCompression pass_through;
  std::shared_ptr<const config::Config> config;
  std::unique_ptr<Tenants> tenants;
  std::unique_ptr<providers::ProviderSet> providers;
  std::unique_ptr<Pipeline> pipeline;
  std::unique_ptr<HttpServer> http;
  std::unique_ptr<GrpcServer> grpc;

 private:
  std::string data_dir_;
};

// Without max_tokens admission would reserve 1024 completion tokens: more than the budget.
Json Chat(const std::string& model, const std::string& text = "hello there") {
  return Json{
      {"model", model}, {"max_tokens", 100}, {"messages", {{{"role", "user"}, {"content", text}}}}};
}

TEST(TenancyPathTest, KeysAreCheckedBeforeAnythingElse) {
  TenantGateway gateway;
  auto none = gateway.Post("/v1/chat/completions", Chat("gpt-x"), "");
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(none->JsonBody()["error"]["code"], "invalid_api_key");
  EXPECT_EQ(none->JsonBody()["error"]["type"], "authentication_error");

  auto wrong = gateway.Post("/v1/chat/completions", Chat("gpt-x"), "sk-terse-nope");
  ASSERT_TRUE(wrong.has_value());
  EXPECT_EQ(wrong->status, 401);

  auto revoked = gateway.Post("/v1/chat/completions", Chat("gpt-x"), gateway.revoked.text);
  ASSERT_TRUE(revoked.has_value());
  EXPECT_EQ(revoked->status, 401);
  EXPECT_THAT(revoked->JsonBody()["error"]["message"].get<std::string>(), HasSubstr("revoked"));
  EXPECT_THAT(revoked->body, ::testing::Not(HasSubstr(gateway.revoked.text)));

  // A route outside the tenant's: 403, and nothing reached the upstream.
  auto outside = gateway.Post("/v1/chat/completions", Chat("other-x"), gateway.key.text);
  ASSERT_TRUE(outside.has_value());
  EXPECT_EQ(outside->status, 403);
  EXPECT_EQ(outside->JsonBody()["error"]["type"], "permission_error");
  EXPECT_EQ(gateway.upstream.request_count(), 0u);

  // /v1/terse/compress needs a key too.
  auto compress = gateway.Post("/v1/terse/compress", Chat("gpt-x"), "");
  ASSERT_TRUE(compress.has_value());
  EXPECT_EQ(compress->status, 401);
}

TEST(TenancyPathTest, MetricsAndModelsNeedAKeyHealthDoesNot) {
  TenantGateway gateway;
  for (const char* path : {"/metrics", "/v1/models"}) {
    auto without = gateway.Get(path, "");
    ASSERT_TRUE(without.has_value());
    EXPECT_EQ(without->status, 401) << path;
    auto with = gateway.Get(path, gateway.key.text);
    ASSERT_TRUE(with.has_value());
    EXPECT_EQ(with->status, 200) << path;
  }
  auto admin = gateway.Get("/metrics", kAdminKey);
  ASSERT_TRUE(admin.has_value());
  EXPECT_EQ(admin->status, 200);
  for (const char* path : {"/healthz", "/readyz"}) {
    auto open = gateway.Get(path, "");
    ASSERT_TRUE(open.has_value());
    EXPECT_EQ(open->status, 200) << path;
  }
}

TEST(TenancyPathTest, AnAdmittedReplyCarriesLimitsAndItsBookedCost) {
  TenantGateway gateway;
  gateway.upstream.SetDefaultReply(FakeReply{.body = CostlyAnswer()});
  Json body = Chat("gpt-x");
  auto r = gateway.Post("/v1/chat/completions", body, gateway.key.text);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->status, 200) << r->body;
  // The client's key never goes upstream.
  EXPECT_EQ(gateway.upstream.last_request().Header("authorization").find(gateway.key.text),
            std::string::npos);
  EXPECT_EQ(r->Header("x-ratelimit-limit-requests"), "1000");
  EXPECT_EQ(r->Header("x-ratelimit-remaining-requests"), "999");
  EXPECT_EQ(r->Header("x-ratelimit-reset-requests"), "60ms");
  EXPECT_EQ(r->Header("x-ratelimit-limit-tokens"), "10000000");
  EXPECT_TRUE(r->HasHeader("x-ratelimit-remaining-tokens"));
  EXPECT_TRUE(r->HasHeader("x-ratelimit-reset-tokens"));
  EXPECT_EQ(r->Header("x-terse-cost-usd"), "0.100000");
  EXPECT_EQ(r->Header("x-terse-savings-usd"), "0.000000");
  EXPECT_EQ(r->Header("x-terse-budget-remaining-usd"), "0.900000");

  const tenancy::UsageBucket ledger = gateway.Ledger();
  EXPECT_EQ(ledger.requests, 1);
  EXPECT_EQ(ledger.cost, 100'000);
  EXPECT_EQ(ledger.sent_prompt_tokens, 7);
  EXPECT_EQ(gateway.BudgetSpend().settled, 100'000);
  EXPECT_EQ(gateway.BudgetSpend().held, 0);

  const std::string metrics = gateway.metrics.RenderPrometheus();
  EXPECT_THAT(metrics, HasSubstr("terse_tenant_spend_usd_total{tenant=\"acme\"} 0.1\n"));
  EXPECT_THAT(metrics, HasSubstr("terse_tenant_budget_remaining_usd{tenant=\"acme\",key=\"\","
                                 "period=\"total\"} 0.9\n"));
  EXPECT_THAT(metrics, ::testing::Not(HasSubstr(gateway.key.text)));
}

TEST(TenancyPathTest, UsageReadsTheLedgerWithSavingsAndBudgets) {
  TenantGateway gateway;
  gateway.upstream.SetDefaultReply(FakeReply{.body = CostlyAnswer()});
  ASSERT_EQ(gateway.Post("/v1/chat/completions", Chat("gpt-x"), gateway.key.text)->status, 200);

  auto own = gateway.Get("/v1/terse/usage?group_by=model&from=2020-01-01", gateway.key.text);
  ASSERT_TRUE(own.has_value());
  ASSERT_EQ(own->status, 200) << own->body;
  const Json body = own->JsonBody();
  EXPECT_EQ(body["tenant"], "acme");
  ASSERT_EQ(body["data"].size(), 1u);
  EXPECT_EQ(body["data"][0]["group"], "gpt-x");
  EXPECT_EQ(body["data"][0]["requests"], 1);
  EXPECT_EQ(body["data"][0]["cost_usd"], "0.100000");
  EXPECT_EQ(body["data"][0]["savings_usd"], "0.000000");
  ASSERT_EQ(body["budgets"].size(), 1u);
  EXPECT_EQ(body["budgets"][0]["remaining_usd"], "0.900000");

  EXPECT_EQ(gateway.Get("/v1/terse/usage", "")->status, 401);
  EXPECT_EQ(gateway.Get("/v1/terse/usage?tenant=globex", gateway.key.text)->status, 403);
  EXPECT_EQ(gateway.Get("/v1/terse/usage", kAdminKey)->status, 400);
  EXPECT_EQ(gateway.Get("/v1/terse/usage?group_by=week", gateway.key.text)->status, 400);
  auto admin = gateway.Get("/v1/terse/usage?tenant=acme&to=2999-01-01T00%3A00%3A00Z", kAdminKey);
  ASSERT_TRUE(admin.has_value());
  ASSERT_EQ(admin->status, 200) << admin->body;
  EXPECT_EQ(admin->JsonBody()["data"][0]["requests"], 1);
}

// The echo provider's usage is booked like any upstream's.
TEST(TenancyPathTest, EchoUsageIsBooked) {
  TenantGateway gateway;
  auto r = gateway.Post("/v1/chat/completions", Chat("echo-1", "two words"), gateway.key.text);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->JsonBody()["usage"]["prompt_tokens"], 2);
  EXPECT_EQ(gateway.Ledger().sent_prompt_tokens, 2);
  EXPECT_EQ(gateway.Ledger().completion_tokens, 2);
  EXPECT_EQ(r->Header("x-terse-cost-usd"), "0.000006");  // 2 x $1e-6 + 2 x $2e-6
  EXPECT_THAT(gateway.metrics.RenderPrometheus(),
              HasSubstr("terse_upstream_tokens_total{route=\"echo\",kind=\"prompt\"} 2\n"));
}

// 100 requests at once against a budget that holds 10 of them: at most 10 are admitted, the rest
// are told the budget is spent, and the budget's spend is exactly the ledger's sum.
TEST(TenancyPathTest, ConcurrentRequestsNeverOverspendTheBudget) {
  TenantGateway gateway;
  gateway.upstream.SetDefaultReply(
      FakeReply{.body = CostlyAnswer(), .head_delay = absl::Milliseconds(200)});
  Json body = Chat("gpt-x");
  std::atomic<int> ok{0}, quota{0}, other{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 100; ++i) {
    clients.emplace_back([&] {
      auto r = gateway.Post("/v1/chat/completions", body, gateway.key.text);
      if (r.has_value() && r->status == 200) {
        ++ok;
      } else if (r.has_value() && r->status == 429 &&
                 r->JsonBody()["error"]["code"] == "insufficient_quota" &&
                 r->Header("x-should-retry") == "false") {
        ++quota;
      } else {
        ++other;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok.load(), 10);
  EXPECT_EQ(quota.load(), 90);
  EXPECT_EQ(other.load(), 0);
  const tenancy::UsageBucket ledger = gateway.Ledger();
  EXPECT_EQ(ledger.requests, 10);
  const tenancy::Spend spend = gateway.BudgetSpend();
  EXPECT_EQ(spend.settled, ledger.cost);
  EXPECT_EQ(spend.held, 0);
  EXPECT_THAT(gateway.metrics.RenderPrometheus(),
              HasSubstr("terse_tenant_refusals_total{tenant=\"acme\",reason=\"budget_exhausted\"} "
                        "90\n"));
}

TEST(TenancyPathTest, ARateLimitIsRetryableWithItsWait) {
  TenantGateway gateway(Settings{.limits = "{requests_per_minute: 2}"});
  for (int i = 0; i < 2; ++i) {
    auto admitted = gateway.Post("/v1/chat/completions", Chat("gpt-x"), gateway.key.text);
    ASSERT_TRUE(admitted.has_value());
    EXPECT_EQ(admitted->status, 200);
    EXPECT_EQ(admitted->Header("x-ratelimit-remaining-requests"), i == 0 ? "1" : "0");
    EXPECT_FALSE(admitted->HasHeader("x-ratelimit-limit-tokens"));  // no such limit
  }
  auto refused = gateway.Post("/v1/chat/completions", Chat("gpt-x"), gateway.key.text);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status, 429);
  EXPECT_EQ(refused->JsonBody()["error"]["code"], "rate_limit_exceeded");
  EXPECT_EQ(refused->JsonBody()["error"]["type"], "rate_limit_error");
  EXPECT_FALSE(refused->HasHeader("x-should-retry"));
  const int64_t wait_ms = std::stoll(refused->Header("retry-after-ms"));
  EXPECT_GT(wait_ms, 25'000);  // a slot drips back every 30 s
  EXPECT_LE(wait_ms, 30'000);
  // The refusal carries the limit's state, as OpenAI's 429s do.
  EXPECT_EQ(refused->Header("x-ratelimit-limit-requests"), "2");
  EXPECT_EQ(refused->Header("x-ratelimit-remaining-requests"), "0");
  EXPECT_TRUE(refused->HasHeader("x-ratelimit-reset-requests"));
  EXPECT_EQ(gateway.upstream.request_count(), 2u);
}

// The tenant's compression replaces the route's: here a route that never compresses gets the
// tenant's rate.
TEST(TenancyPathTest, TheTenantsCompressionAppliesOverTheRoutes) {
  std::vector<double> rates;
  std::mutex mu;
  testing::ScriptedCompression step(
      [&](const v1::Route& route, const CallInfo&,
          CompressionStep::Input input) -> absl::StatusOr<CompressionStep::Result> {
        std::lock_guard<std::mutex> lock(mu);
        rates.push_back(route.compression().enabled() ? route.compression().rate() : -1);
        v1::CompressionReport report;
        report.set_applied(true);
        report.set_original_tokens(1000);
        report.set_compressed_tokens(400);
        return CompressionStep::Result{std::move(input.prompt), report};
      });
  TenantGateway gateway(Settings{.tenant_extra = "      compression: {enabled: true, rate: 0.4}\n",
                                 .compression = &step});
  gateway.upstream.SetDefaultReply(FakeReply{.body = CostlyAnswer()});
  auto r = gateway.Post("/v1/chat/completions", Chat("gpt-x"), gateway.key.text);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->status, 200) << r->body;
  ASSERT_EQ(rates.size(), 1u);
  EXPECT_DOUBLE_EQ(rates[0], 0.4);
  // Booked as sent (the upstream's 7 prompt tokens), saving the 600 compression removed; the
  // price list charges no input here, so the saving is $0.
  EXPECT_EQ(gateway.Ledger().original_prompt_tokens, 607);
  EXPECT_EQ(gateway.Ledger().sent_prompt_tokens, 7);
}

TEST(TenancyPathTest, StreamsSettleFromTheUsageChunk) {
  TenantGateway gateway;
  Json body = Chat("echo-1", "one two three");
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto r = gateway.Post("/v1/chat/completions", body, gateway.key.text);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->status, 200);
  EXPECT_FALSE(r->HasHeader("x-terse-cost-usd"));  // unknown when the head is sent
  EXPECT_TRUE(r->HasHeader("x-terse-budget-remaining-usd"));
  EXPECT_TRUE(r->HasHeader("x-ratelimit-remaining-requests"));
  std::vector<std::string> events = SseData(r->body);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.back(), "[DONE]");
  Json usage_chunk = Json::parse(events[events.size() - 2]);
  EXPECT_EQ(usage_chunk["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(usage_chunk["terse"]["cost_usd"], "0.000009");  // 3 x $1e-6 + 3 x $2e-6
  EXPECT_EQ(gateway.Ledger().sent_prompt_tokens, 3);
  EXPECT_EQ(gateway.Ledger().completion_tokens, 3);

  // Without include_usage the client sees no usage chunk, and the call is booked all the same.
  body.erase("stream_options");
  auto quiet = gateway.Post("/v1/chat/completions", body, gateway.key.text);
  ASSERT_TRUE(quiet.has_value());
  EXPECT_THAT(quiet->body, ::testing::Not(HasSubstr("\"usage\"")));
  EXPECT_EQ(gateway.Ledger().requests, 2);
  EXPECT_EQ(gateway.Ledger().sent_prompt_tokens, 6);
}

TEST(TenancyPathTest, AClientThatLeavesMidStreamIsSettledAndReleasesItsHold) {
  TenantGateway gateway;
  FakeReply stalled;
  stalled.stall_after_chunks = 2;
  gateway.upstream.SetDefaultReply(stalled);
  Json body = Chat("gpt-x", "a b c d e f");
  body["stream"] = true;
  body["max_tokens"] = 100;
  {
    HttpClient client(gateway.http->port());
    ASSERT_TRUE(client.SendRequest(
        "POST", "/v1/chat/completions", body.dump(),
        {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + gateway.key.text}}));
    auto head = client.ReadHead();
    ASSERT_TRUE(head.has_value());
    EXPECT_EQ(head->status, 200);
    client.ReadBodyUntil("\n\n");
    EXPECT_EQ(gateway.BudgetSpend().held, 100'000);  // max_tokens x $0.001, prompt free
    client.Close();
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (gateway.Ledger().requests < 1 && absl::Now() < deadline)
    absl::SleepFor(absl::Milliseconds(10));
  const tenancy::UsageBucket ledger = gateway.Ledger();
  EXPECT_EQ(ledger.requests, 1);
  EXPECT_GT(ledger.sent_prompt_tokens, 0);  // the prompt sent, as the upstream may bill it
  EXPECT_EQ(ledger.completion_tokens, 0);
  EXPECT_EQ(gateway.BudgetSpend().held, 0);
}

// A call admitted and never settled (its process would have died): its hold goes when its
// lease ends.
TEST(TenancyPathTest, AnUnsettledHoldExpires) {
  TenantGateway gateway(Settings{.tenancy_extra = "  hold_lease_ms: 200\n"});
  {
    TenantCall call(gateway.tenants.get());
    ASSERT_THAT(call.Authenticate(gateway.key.text), IsOk());
    tenancy::RequestInfo request{
        .route = "chat", .provider = "openai_compatible", .model = "gpt-x"};
    HeaderFields headers;
    ASSERT_THAT(call.Admit(Operation::kChatCompletions, Chat("gpt-x"), v1::CompressionReport(),
                           request, /*stream=*/false, headers),
                IsOk());
    EXPECT_EQ(gateway.BudgetSpend().held, 100'000);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (gateway.BudgetSpend().held != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(gateway.BudgetSpend().held, 0);
  EXPECT_EQ(gateway.Ledger().requests, 0);
}

// A reload builds a new policy over the same store: a key revoked by it is refused from then on,
// and what was booked stays booked.
TEST(TenancyPathTest, AReloadKeepsTheStore) {
  TenantGateway gateway;
  gateway.upstream.SetDefaultReply(FakeReply{.body = CostlyAnswer()});
  ASSERT_EQ(gateway.Post("/v1/chat/completions", Chat("gpt-x"), gateway.key.text)->status, 200);
  v1::Config revoked = gateway.config->proto();
  revoked.mutable_tenancy()->mutable_tenants(0)->mutable_keys(0)->set_revoked(true);
  ASSERT_THAT(gateway.tenants->Reload(revoked), IsOk());
  EXPECT_EQ(gateway.Post("/v1/chat/completions", Chat("gpt-x"), gateway.key.text)->status, 401);
  EXPECT_EQ(gateway.BudgetSpend().settled, 100'000);
  v1::Config off = revoked;
  off.clear_tenancy();
  EXPECT_FALSE(gateway.tenants->Reload(off).ok());
}

std::unique_ptr<grpc::ClientContext> GrpcContext(const std::string& key) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  if (!key.empty()) ctx->AddMetadata("authorization", "Bearer " + key);
  return ctx;
}

std::string Trailer(const grpc::ClientContext& ctx, const std::string& name) {
  auto it = ctx.GetServerTrailingMetadata().find(name);
  return it == ctx.GetServerTrailingMetadata().end()
             ? ""
             : std::string(it->second.data(), it->second.size());
}

TEST(TenancyPathTest, GrpcNeedsAKeyAndCarriesTheCostInTrailers) {
  TenantGateway gateway;
  gateway.upstream.SetDefaultReply(FakeReply{.body = CostlyAnswer()});
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", gateway.grpc->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::Gateway::NewStub(channel);
  v1::ChatRequest request;
  request.set_model("gpt-x");
  request.set_max_tokens(100);
  v1::Message* user = request.add_messages();
  user->set_role("user");
  user->set_content("hello");

  v1::ChatResponse response;
  auto anonymous = GrpcContext("");
  EXPECT_EQ(stub->Chat(anonymous.get(), request, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  auto revoked = GrpcContext(gateway.revoked.text);
  EXPECT_EQ(stub->Chat(revoked.get(), request, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::ListModelsResponse models;
  auto list = GrpcContext("");
  EXPECT_EQ(stub->ListModels(list.get(), v1::ListModelsRequest(), &models).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  request.set_model("other-x");
  auto outside = GrpcContext(gateway.key.text);
  EXPECT_EQ(stub->Chat(outside.get(), request, &response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  request.set_model("gpt-x");
  auto ok = GrpcContext(gateway.key.text);
  grpc::Status status = stub->Chat(ok.get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Trailer(*ok, "x-terse-cost-usd"), "0.100000");
  EXPECT_EQ(Trailer(*ok, "x-terse-budget-remaining-usd"), "0.900000");

  // Streamed: the cost arrives with the end.
  auto stream_ctx = GrpcContext(gateway.key.text);
  auto reader = stub->ChatStream(stream_ctx.get(), request);
  v1::ChatChunk chunk;
  while (reader->Read(&chunk)) {
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_FALSE(Trailer(*stream_ctx, "x-terse-cost-usd").empty());
  EXPECT_EQ(gateway.Ledger().requests, 2);

  // A spent budget: RESOURCE_EXHAUSTED, not to be retried.
  for (int i = 0; i < 8; ++i) {
    auto spend = GrpcContext(gateway.key.text);
    ASSERT_TRUE(stub->Chat(spend.get(), request, &response).ok());
  }
  auto spent = GrpcContext(gateway.key.text);
  EXPECT_EQ(stub->Chat(spent.get(), request, &response).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Trailer(*spent, "x-terse-error-code"), "insufficient_quota");
  EXPECT_EQ(Trailer(*spent, "x-should-retry"), "false");
}

TEST(AdmissionFormatTest, UsdAndResets) {
  EXPECT_EQ(FormatUsd(0), "0.000000");
  EXPECT_EQ(FormatUsd(1'234'567), "1.234567");
  EXPECT_EQ(FormatUsd(-5), "-0.000005");
  EXPECT_EQ(FormatReset(absl::Milliseconds(17)), "17ms");
  EXPECT_EQ(FormatReset(absl::Milliseconds(1500)), "1.5s");
  EXPECT_EQ(FormatReset(absl::Minutes(6)), "6m0s");
}

}  // namespace
}  // namespace terse::proxy
