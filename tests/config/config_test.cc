// Loading YAML configs: mapping, ${VAR} resolution, defaults, validation paths and messages,
// route matching, and the configs shipped in config/.
#include "config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <optional>

#include "absl/strings/str_split.h"
#include "tests/support/status_matchers.h"

namespace terse::config {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Not;

// Sets (or unsets) an environment variable for the scope of a test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old;
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// The smallest valid config, to which tests append.
constexpr char kMinimal[] = R"(
providers:
  - {name: echo, kind: echo}
routes:
  - {model: "*", provider: echo}
)";

// The problems of an invalid config, one per line.
std::vector<std::string> Problems(const std::string& yaml) {
  auto config = LoadConfigText(yaml);
  EXPECT_THAT(config, StatusIs(absl::StatusCode::kInvalidArgument));
  if (config.ok()) return {};
  return absl::StrSplit(std::string(config.status().message()), '\n');
}

std::vector<std::string> Lines(std::string_view text) {
  return absl::StrSplit(absl::string_view(text.data(), text.size()), '\n');
}

std::string SourceDir() {
  const char* dir = getenv("TERSE_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}

TEST(ConfigLoadTest, MinimalConfigGetsEveryDefault) {
  auto loaded = LoadConfigText(kMinimal);
  ASSERT_THAT(loaded, IsOk());
  const v1::Config& c = (*loaded)->proto();
  EXPECT_EQ(c.listeners().http().host(), "127.0.0.1");
  EXPECT_EQ(c.listeners().http().port(), 8080u);
  EXPECT_EQ(c.listeners().grpc().host(), "127.0.0.1");
  EXPECT_EQ(c.listeners().grpc().port(), 50051u);
  EXPECT_EQ(c.limits().max_body_bytes(), 8u * 1024 * 1024);
  EXPECT_EQ(c.limits().request_timeout_ms(), 600000u);
  EXPECT_EQ(c.compressor().model_dir(), "models/terse-small-en");
  EXPECT_EQ(c.compressor().device(), "auto");
  EXPECT_EQ(c.compressor().threads(), 0u);
  EXPECT_EQ(c.compressor().max_batch_size(), 8u);
  EXPECT_EQ(c.compressor().max_batch_wait_us(), 2000u);
  EXPECT_EQ(c.compressor().cache_entries(), 4096u);
  EXPECT_EQ(c.compressor().queue_capacity(), 256u);
  EXPECT_EQ(c.compressor().workers(), 2u);
  EXPECT_EQ(c.logging().level(), "info");

  ASSERT_EQ(c.providers_size(), 1);
  const v1::Provider& p = c.providers(0);
  EXPECT_EQ(p.timeouts().connect_ms(), 5000u);
  EXPECT_EQ(p.timeouts().first_byte_ms(), 60000u);
  EXPECT_EQ(p.timeouts().total_ms(), 600000u);
  EXPECT_EQ(p.retry().max_attempts(), 3u);
  EXPECT_EQ(p.retry().initial_backoff_ms(), 200u);
  EXPECT_EQ(p.retry().max_backoff_ms(), 5000u);

  ASSERT_EQ(c.routes_size(), 1);
  const v1::Route& r = c.routes(0);
  EXPECT_EQ(r.name(), "*");  // a route without a name is named by its model
  const v1::Compression& z = r.compression();
  EXPECT_FALSE(z.enabled());
  EXPECT_FALSE(z.has_rate());
  EXPECT_FALSE(z.has_target_tokens());
  EXPECT_EQ(z.segment_tokens(), 200u);
  EXPECT_EQ(z.timeout_ms(), 2000u);
  EXPECT_EQ(z.on_error(), "forward_uncompressed");
  EXPECT_EQ(z.tool_messages(), "keep");
  EXPECT_THAT(z.roles(), ElementsAre("system", "user", "assistant"));
  // The recipe terse eval chose.
  EXPECT_TRUE(z.question_aware());
  EXPECT_EQ(z.reorder(), "rank");
  EXPECT_DOUBLE_EQ(z.dynamic_ratio(), 0.3);
  ASSERT_TRUE(z.has_context_budget_k());
  EXPECT_EQ(z.context_budget_k(), 2.5);
}

TEST(ConfigLoadTest, ProviderDefaultsDependOnKind) {
  auto loaded = LoadConfigText(R"(
providers:
  - {name: openai, kind: openai}
  - {name: claude, kind: anthropic}
  - {name: azure, kind: azure_openai, base_url: "https://r.openai.azure.com"}
  - {name: local, kind: openai_compatible, base_url: "http://127.0.0.1:8000/v1"}
routes:
  - {model: "*", provider: openai}
)");
  ASSERT_THAT(loaded, IsOk());
  const Config& c = **loaded;
  EXPECT_EQ(c.FindProvider("openai")->base_url(), "https://api.openai.com/v1");
  EXPECT_EQ(c.FindProvider("claude")->base_url(), "https://api.anthropic.com/v1");
  EXPECT_EQ(c.FindProvider("claude")->api_version(), "2023-06-01");
  EXPECT_EQ(c.FindProvider("azure")->base_url(), "https://r.openai.azure.com");
  EXPECT_EQ(c.FindProvider("azure")->api_version(), "2024-10-21");
  EXPECT_EQ(c.FindProvider("local")->base_url(), "http://127.0.0.1:8000/v1");
  EXPECT_EQ(c.FindProvider("local")->api_version(), "");
  EXPECT_EQ(c.FindProvider("nope"), nullptr);
}

TEST(ConfigLoadTest, ExplicitValuesWinOverDefaultsEvenZero) {
  auto loaded = LoadConfigText(std::string(kMinimal) + R"(
listeners:
  http: {port: 0}
  grpc: {host: 0.0.0.0, port: 0}
compressor: {threads: 4, workers: 1, cache_entries: 0, device: "cuda:1"}
limits: {max_body_bytes: 1048576, request_timeout_ms: 0}
)");
  ASSERT_THAT(loaded, IsOk());
  const v1::Config& c = (*loaded)->proto();
  EXPECT_EQ(c.listeners().http().host(), "127.0.0.1");
  EXPECT_EQ(c.listeners().http().port(), 0u);
  EXPECT_EQ(c.listeners().grpc().host(), "0.0.0.0");
  EXPECT_EQ(c.listeners().grpc().port(), 0u);
  EXPECT_EQ(c.compressor().threads(), 4u);
  EXPECT_EQ(c.compressor().workers(), 1u);
  EXPECT_EQ(c.compressor().cache_entries(), 0u);
  EXPECT_EQ(c.compressor().device(), "cuda:1");
  EXPECT_EQ(c.compressor().max_batch_size(), 8u);
  EXPECT_EQ(c.limits().max_body_bytes(), 1048576u);
  EXPECT_EQ(c.limits().request_timeout_ms(), 0u);
}

TEST(ConfigLoadTest, MapsEveryKindOfField) {
  auto loaded = LoadConfigText(R"(
listeners: {io_threads: 3}
providers:
  - name: up
    kind: openai_compatible
    base_url: http://127.0.0.1:9/v1
    api_key_env: UP_KEY
    headers: {X-Team: search, X-Trace: "on"}
    insecure_skip_verify: yes
    max_connections: 16
    libcurl_only: true
    timeouts: {connect_ms: 100, first_byte_ms: 200, total_ms: 300}
    retry: {max_attempts: 1, initial_backoff_ms: 10, max_backoff_ms: 20}
routes:
  - name: main
    model: gpt-4o
    provider: up
    upstream_model: gpt-4o-2024-08-06
    pass_organization: true
    allow_overrides: on
    compression:
      enabled: true
      rate: 0.33
      rate_bands: [{min_prompt_tokens: 100, rate: 0.8}, {min_prompt_tokens: 1000, rate: 0.5}]
      min_prompt_tokens: 50
      roles: [user]
      keep_last_turns: 2
      question_aware: true
      contrastive: false
      reorder: rank
      dynamic_ratio: 0.25
      force_tokens: ["\n", "?"]
      target_tokenizer: o200k_base
      on_error: fail
      tool_messages: compress_json
      document_delimiter: '^Document \[\d+\]'
      keep_digits: true
      context_budget_k: 1.5
      sentence_filter: true
      exact_past: true
      record_alignment_pairs: pairs.jsonl
limits: {max_in_flight: 1000}
logging: {level: debug}
)");
  ASSERT_THAT(loaded, IsOk());
  const v1::Config& c = (*loaded)->proto();
  EXPECT_EQ(c.listeners().io_threads(), 3u);
  const v1::Provider& p = c.providers(0);
  EXPECT_EQ(p.kind(), v1::Provider::OPENAI_COMPATIBLE);
  EXPECT_EQ(p.headers().at("X-Team"), "search");
  EXPECT_EQ(p.headers().at("X-Trace"), "on");
  EXPECT_TRUE(p.insecure_skip_verify());
  EXPECT_EQ(p.max_connections(), 16u);
  EXPECT_TRUE(p.libcurl_only());
  EXPECT_EQ(p.timeouts().total_ms(), 300u);
  EXPECT_EQ(p.retry().max_backoff_ms(), 20u);
  const v1::Route& r = c.routes(0);
  EXPECT_EQ(r.upstream_model(), "gpt-4o-2024-08-06");
  EXPECT_TRUE(r.pass_organization());
  EXPECT_TRUE(r.allow_overrides());
  const v1::Compression& z = r.compression();
  EXPECT_DOUBLE_EQ(z.rate(), 0.33);
  ASSERT_EQ(z.rate_bands_size(), 2);
  EXPECT_EQ(z.rate_bands(1).min_prompt_tokens(), 1000u);
  EXPECT_DOUBLE_EQ(z.rate_bands(1).rate(), 0.5);
  EXPECT_THAT(z.roles(), ElementsAre("user"));
  EXPECT_THAT(z.force_tokens(), ElementsAre("\n", "?"));
  EXPECT_EQ(z.reorder(), "rank");
  EXPECT_TRUE(z.sentence_filter());
  EXPECT_TRUE(z.exact_past());
  EXPECT_EQ(z.on_error(), "fail");
  EXPECT_EQ(z.document_delimiter(), "^Document \\[\\d+\\]");
  EXPECT_DOUBLE_EQ(z.context_budget_k(), 1.5);
  EXPECT_EQ(z.record_alignment_pairs(), "pairs.jsonl");
  EXPECT_EQ(c.limits().max_in_flight(), 1000u);
  EXPECT_EQ(c.logging().level(), "debug");
}

TEST(ConfigLoadTest, NullValuesLeaveFieldsUnset) {
  auto loaded = LoadConfigText(std::string(kMinimal) + "listeners:\nlimits: ~\n");
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ((*loaded)->proto().listeners().http().port(), 8080u);
}

// --- mapping errors -----------------------------------------------------------------------

TEST(ConfigMappingTest, UnknownKeysNameTheirPathAndSuggest) {
  EXPECT_THAT(Problems(R"(
providers:
  - {name: echo, kind: echo, base_ulr: "http://x"}
routes:
  - model: "*"
    provider: echo
    compresion: {enabled: true}
listners: {}
frobnicate: 1
)"),
              ElementsAre("providers[0].base_ulr: unknown field \"base_ulr\" (did you mean "
                          "\"base_url\"?)",
                          "routes[0].compresion: unknown field \"compresion\" (did you mean "
                          "\"compression\"?)",
                          "listners: unknown field \"listners\" (did you mean \"listeners\"?)",
                          "frobnicate: unknown field \"frobnicate\""));
}

TEST(ConfigMappingTest, WrongTypesNameTheirPathAndTheValue) {
  EXPECT_THAT(
      Problems(R"(
providers:
  - {name: echo, kind: echo, insecure_skip_verify: maybe}
routes:
  - {model: a, provider: echo}
  - {model: b, provider: echo}
  - model: c
    provider: echo
    compression: {enabled: true, rate: fast, roles: user, min_prompt_tokens: 1.5}
listeners:
  http: {port: -1}
  grpc: {port: 99999999999}
limits: [1, 2]
compressor: {workers: [1]}
)"),
      ElementsAre(
          "providers[0].insecure_skip_verify: expected true or false, got \"maybe\"",
          "routes[2].compression.rate: expected a number, got \"fast\"",
          "routes[2].compression.roles: expected a sequence, got \"user\"",
          "routes[2].compression.min_prompt_tokens: expected a non-negative integer, got \"1.5\"",
          "listeners.http.port: expected a non-negative integer, got \"-1\"",
          "listeners.grpc.port: \"99999999999\" is out of range (at most 4294967295)",
          "limits: expected a mapping, got a sequence",
          "compressor.workers: expected a non-negative integer, got a sequence"));
}

TEST(ConfigMappingTest, EnumsAreLowercaseNames) {
  EXPECT_THAT(Problems(R"(
providers:
  - {name: a, kind: opneai}
  - {name: b, kind: OPENAI}
  - {name: c, kind: kind_unspecified}
routes:
  - {model: "*", provider: a}
)"),
              ElementsAre("providers[0].kind: unknown value \"opneai\" (did you mean "
                          "\"openai\"?); expected one of: openai, azure_openai, anthropic, "
                          "openai_compatible, echo",
                          "providers[1].kind: unknown value \"OPENAI\" (did you mean "
                          "\"openai\"?); expected one of: openai, azure_openai, anthropic, "
                          "openai_compatible, echo",
                          "providers[2].kind: unknown value \"kind_unspecified\"; expected one "
                          "of: openai, azure_openai, anthropic, openai_compatible, echo"));
}

TEST(ConfigMappingTest, DuplicateKeysAreErrors) {
  EXPECT_THAT(
      Problems(std::string(kMinimal) + "limits:\n  max_body_bytes: 1\n  max_body_bytes: 2\n"),
      ElementsAre("limits.max_body_bytes: duplicate key"));
}

TEST(ConfigMappingTest, MalformedYamlSaysWhere) {
  std::vector<std::string> problems = Problems("routes:\n  - {model: \"*\", provider: echo\n");
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0], HasSubstr("invalid YAML: line "));
  EXPECT_THAT(Problems("- just\n- a list\n"),
              ElementsAre("expected a mapping at the top level, got a sequence"));
}

TEST(ConfigMappingTest, AValueThatFailedToMapIsNotReportedTwice) {
  // `rate: fast` leaves rate unset; "enabled without a rate" would only repeat the problem.
  EXPECT_THAT(Problems(std::string(kMinimal) + R"(
  - model: x
    provider: echo
    compression: {enabled: true, rate: fast}
)"),
              ElementsAre("routes[1].compression.rate: expected a number, got \"fast\""));
}

// --- ${VAR} references ----------------------------------------------------------------------

TEST(ConfigEnvTest, ResolvesReferencesInAnyScalar) {
  ScopedEnv url("TERSE_TEST_URL", "http://127.0.0.1:9999/v1");
  ScopedEnv port("TERSE_TEST_PORT", "18080");
  ScopedEnv team("TERSE_TEST_TEAM", "search");
  ScopedEnv unset("TERSE_TEST_UNSET", std::nullopt);
  auto loaded = LoadConfigText(R"(
listeners:
  http: {port: "${TERSE_TEST_PORT}"}
  grpc: {port: "${TERSE_TEST_UNSET:-50052}"}
providers:
  - name: up
    kind: openai_compatible
    base_url: ${TERSE_TEST_URL}
    headers: {X-Team: "team-${TERSE_TEST_TEAM}", X-Literal: "$${NOT_EXPANDED}"}
routes:
  - {model: "*", provider: "${TERSE_TEST_UNSET:-up}"}
)");
  ASSERT_THAT(loaded, IsOk());
  const v1::Config& c = (*loaded)->proto();
  EXPECT_EQ(c.listeners().http().port(), 18080u);
  EXPECT_EQ(c.listeners().grpc().port(), 50052u);
  EXPECT_EQ(c.providers(0).base_url(), "http://127.0.0.1:9999/v1");
  EXPECT_EQ(c.providers(0).headers().at("X-Team"), "team-search");
  EXPECT_EQ(c.providers(0).headers().at("X-Literal"), "${NOT_EXPANDED}");
  EXPECT_EQ(c.routes(0).provider(), "up");
}

TEST(ConfigEnvTest, MissingVariableNamesPathAndVariable) {
  ScopedEnv unset("TERSE_TEST_MISSING", std::nullopt);
  EXPECT_THAT(Problems(R"(
providers:
  - {name: up, kind: openai_compatible, base_url: "${TERSE_TEST_MISSING}"}
routes:
  - {model: "*", provider: up}
)"),
              ElementsAre("providers[0].base_url: environment variable TERSE_TEST_MISSING is "
                          "not set"));
}

TEST(ConfigEnvTest, ValuesFromTheEnvironmentNeverAppearInErrors) {
  const std::string secret = "sk-test-0123456789abcdef";
  ScopedEnv key("TERSE_TEST_SECRET", secret);
  auto loaded = LoadConfigText(R"(
providers:
  - name: up
    kind: openai_compatible
    base_url: "${TERSE_TEST_SECRET}"
    api_key_env: sk-test-0123456789abcdef
    headers: {Authorization: "Bearer ${TERSE_TEST_SECRET}"}
routes:
  - model: "*"
    provider: "${TERSE_TEST_SECRET}"
    compression: {enabled: true, rate: "${TERSE_TEST_SECRET}"}
  - {model: x, provider: up, compression: {on_error: "${TERSE_TEST_SECRET}"}}
)");
  ASSERT_THAT(loaded, StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string message(loaded.status().message());
  EXPECT_THAT(message, Not(HasSubstr(secret)));
  EXPECT_THAT(message, Not(HasSubstr("0123456789")));
  EXPECT_THAT(Lines(message),
              ElementsAre("providers[0].base_url: expected an http:// or https:// URL, got "
                          "\"<value from the environment>\"",
                          "providers[0].api_key_env: expected the name of an environment "
                          "variable (letters, digits and _), not a key (value not shown)",
                          "routes[0].provider: unknown provider \"<value from the environment>\"",
                          "routes[0].compression.rate: expected a number, got a value from the "
                          "environment (not shown)",
                          "routes[1].compression.on_error: unknown value \"<value from the "
                          "environment>\"; expected one of: forward_uncompressed, fail"));
}

// --- validation -----------------------------------------------------------------------------

TEST(ConfigValidationTest, UnknownProviderWithSuggestion) {
  EXPECT_THAT(Problems(R"(
providers:
  - {name: openai, kind: openai}
  - {name: echo, kind: echo}
routes:
  - {model: a, provider: openai}
  - {model: b, provider: echo}
  - {model: c, provider: opnai, fallbacks: [echo, ehco, mistral, echo, opnai]}
)"),
              ElementsAre("routes[2].provider: unknown provider \"opnai\" (did you mean "
                          "\"openai\"?)",
                          "routes[2].fallbacks[1]: unknown provider \"ehco\" (did you mean "
                          "\"echo\"?)",
                          "routes[2].fallbacks[2]: unknown provider \"mistral\"",
                          "routes[2].fallbacks[3]: \"echo\" is listed twice",
                          "routes[2].fallbacks[4]: \"opnai\" is the route's own provider"));
}

TEST(ConfigValidationTest, DuplicateNames) {
  EXPECT_THAT(Problems(R"(
providers:
  - {name: up, kind: echo}
  - {name: other, kind: echo}
  - {name: up, kind: echo}
routes:
  - {name: main, model: a, provider: up}
  - {name: main, model: b, provider: up}
  - {model: c, provider: up}
  - {model: c, provider: other}
)"),
              ElementsAre("providers[2].name: duplicate provider name \"up\" (also providers[0])",
                          "routes[1].name: duplicate route name \"main\" (also routes[0])",
                          "routes[3].name: duplicate route name \"c\" (also routes[2])"));
}

TEST(ConfigValidationTest, ProviderRequirements) {
  EXPECT_THAT(
      Problems(R"(
providers:
  - {name: nokind}
  - {name: az, kind: azure_openai}
  - {name: local, kind: openai_compatible}
  - {name: bad_url, kind: openai, base_url: "api.openai.com/v1"}
  - {kind: echo, api_key_env: MY_KEY, enabled_if_env: "not a name"}
  - name: slow
    kind: echo
    timeouts: {connect_ms: 7000, first_byte_ms: 9000, total_ms: 6000}
    retry: {max_attempts: 0, initial_backoff_ms: 9000}
routes:
  - {model: "*", provider: nokind}
)"),
      ElementsAre("providers[0].kind: required; expected one of: openai, azure_openai, "
                  "anthropic, openai_compatible, echo",
                  "providers[1].base_url: required for kind azure_openai",
                  "providers[2].base_url: required for kind openai_compatible",
                  "providers[3].base_url: expected an http:// or https:// URL, got "
                  "\"api.openai.com/v1\"",
                  "providers[4].name: required",
                  "providers[4].enabled_if_env: expected NAME or !NAME, the name of an "
                  "environment variable (value not shown)",
                  "providers[5].timeouts.connect_ms: 7000 is above total_ms 6000",
                  "providers[5].timeouts.first_byte_ms: 9000 is above total_ms 6000",
                  "providers[5].retry.max_attempts: must be at least 1",
                  "providers[5].retry.initial_backoff_ms: 9000 is above max_backoff_ms 5000"));
}

TEST(ConfigValidationTest, RouteRequirementsAndGlobs) {
  EXPECT_THAT(Problems(R"(
providers:
  - {name: echo, kind: echo}
routes:
  - {provider: echo}
  - {model: "gpt-[4", provider: echo}
  - {model: "x"}
)"),
              ElementsAre("routes[0].model: required (an exact model name or a glob such as "
                          "\"gpt-4o*\")",
                          "routes[1].model: invalid glob \"gpt-[4\": unterminated \"[\" at "
                          "offset 4",
                          "routes[2].provider: required"));
  EXPECT_THAT(Problems("providers: [{name: echo, kind: echo}]\n"),
              ElementsAre("routes: at least one route is required"));
  EXPECT_THAT(Problems(""), ElementsAre("routes: at least one route is required"));
}

TEST(ConfigValidationTest, CompressionRules) {
  EXPECT_THAT(
      Problems(std::string(kMinimal) + R"(
  - model: a
    provider: echo
    compression: {rate: 0}
  - model: b
    provider: echo
    compression: {rate: 1.5}
  - model: c
    provider: echo
    compression: {rate: 0.5, target_tokens: 300}
  - model: d
    provider: echo
    compression:
      rate_bands:
        - {min_prompt_tokens: 800, rate: 0.5}
        - {min_prompt_tokens: 400, rate: 0.7}
        - {min_prompt_tokens: 400, rate: 2}
  - model: e
    provider: echo
    compression: {enabled: true}
  - model: f
    provider: echo
    compression: {target_tokens: 0, rate_bands: [{min_prompt_tokens: 1, rate: 0.5}]}
  - model: g
    provider: echo
    compression: {document_delimiter: "Document (\\d+", rate: 1}
  - model: h
    provider: echo
    compression:
      on_error: forward
      reorder: ranked
      tool_messages: compress
      target_tokenizer: cl100k
      roles: [user, robot]
      segment_tokens: 0
      timeout_ms: 0
      dynamic_ratio: 1
      context_budget_k: 0
      force_tokens: [""]
)"),
      ElementsAre(
          "routes[1].compression.rate: 0 is out of range; expected a fraction in (0, 1]",
          "routes[2].compression.rate: 1.5 is out of range; expected a fraction in (0, 1]",
          "routes[3].compression: rate and target_tokens are both set; set only one",
          "routes[4].compression.rate_bands[1].min_prompt_tokens: bands must be in ascending "
          "order of min_prompt_tokens, but 400 follows 800",
          "routes[4].compression.rate_bands[2].min_prompt_tokens: bands must be in ascending "
          "order of min_prompt_tokens, but 400 follows 400",
          "routes[4].compression.rate_bands[2].rate: 2 is out of range; expected a fraction in "
          "(0, 1]",
          "routes[5].compression: compression is enabled but none of rate, target_tokens or "
          "rate_bands is set",
          "routes[6].compression: rate_bands and target_tokens are both set; set only one",
          "routes[6].compression.target_tokens: must be at least 1",
          "routes[7].compression.document_delimiter: invalid regex \"Document (\\d+\" at "
          "offset 13: missing closing parenthesis",
          "routes[8].compression.on_error: unknown value \"forward\" (did you mean "
          "\"forward_uncompressed\"?); expected one of: forward_uncompressed, fail",
          "routes[8].compression.reorder: unknown value \"ranked\" (did you mean \"rank\"?); "
          "expected one of: original, rank, two_stage",
          "routes[8].compression.tool_messages: unknown value \"compress\" (did you mean "
          "\"compress_json\"?); expected one of: keep, compress_json",
          "routes[8].compression.target_tokenizer: unknown value \"cl100k\" (did you mean "
          "\"cl100k_base\"?); expected one of: cl100k_base, o200k_base",
          "routes[8].compression.roles[1]: unknown value \"robot\"; expected one of: system, "
          "developer, user, assistant, tool",
          "routes[8].compression.segment_tokens: must be at least 1",
          "routes[8].compression.timeout_ms: must be at least 1",
          "routes[8].compression.dynamic_ratio: 1 is out of range [0, 1)",
          "routes[8].compression.context_budget_k: 0 must be positive",
          "routes[8].compression.force_tokens[0]: must not be empty"));
}

TEST(ConfigValidationTest, ListenersLimitsCompressorAndLogging) {
  EXPECT_THAT(
      Problems(std::string(kMinimal) + R"(
listeners:
  http: {host: "", port: 70000}
  grpc: {port: 65536}
limits: {max_body_bytes: 0}
compressor: {model_dir: "", device: gpu, max_batch_size: 0, queue_capacity: 0, workers: 0}
logging: {level: verbose}
)"),
      ElementsAre("listeners.http.host: required",
                  "listeners.http.port: 70000 is not a valid port (0 to 65535)",
                  "listeners.grpc.port: 65536 is not a valid port (0 to 65535)",
                  "limits.max_body_bytes: must be at least 1", "compressor.model_dir: required",
                  "compressor.device: unknown value \"gpu\" (did you mean \"cpu\"?); "
                  "expected one of: auto, cpu, cuda, cuda:N",
                  "compressor.max_batch_size: must be at least 1",
                  "compressor.queue_capacity: must be at least 1",
                  "compressor.workers: must be at least 1",
                  "logging.level: unknown value \"verbose\"; expected one of: debug, "
                  "info, warn, error"));
  EXPECT_THAT(Problems(std::string(kMinimal) + "listeners: {grpc: {port: 8080}}\n"),
              ElementsAre("listeners.grpc.port: 8080 is already used by listeners.http"));
}

TEST(ConfigValidationTest, EveryProblemIsReportedAtOnce) {
  std::vector<std::string> problems = Problems(R"(
providers:
  - {name: openai, kind: openai}
  - {name: openai, kind: echo}
routes:
  - {model: "gpt-[", provider: opnai}
  - model: x
    provider: openai
    fallbacks: [nowhere]
    compression: {rate: 2, target_tokens: 5, on_error: explode}
listeners: {http: {port: 100000}}
)");
  // In the order the document mentions them.
  EXPECT_THAT(problems,
              ElementsAreArray({
                  "providers[1].name: duplicate provider name \"openai\" (also providers[0])",
                  "routes[0].model: invalid glob \"gpt-[\": unterminated \"[\" at offset 4",
                  "routes[0].provider: unknown provider \"opnai\" (did you mean \"openai\"?)",
                  "routes[1].fallbacks[0]: unknown provider \"nowhere\"",
                  "routes[1].compression: rate and target_tokens are both set; set only one",
                  "routes[1].compression.rate: 2 is out of range; expected a fraction in (0, 1]",
                  "routes[1].compression.on_error: unknown value \"explode\"; expected one of: "
                  "forward_uncompressed, fail",
                  "listeners.http.port: 100000 is not a valid port (0 to 65535)",
              }));
}

// --- enabled_if_env -------------------------------------------------------------------------

constexpr char kConditional[] = R"(
providers:
  - {name: paid, kind: openai, api_key_env: TERSE_TEST_KEY, enabled_if_env: TERSE_TEST_KEY}
  - {name: echo, kind: echo}
routes:
  - {name: default, model: "*", provider: paid, enabled_if_env: TERSE_TEST_KEY}
  - {name: default, model: "*", provider: echo, enabled_if_env: "!TERSE_TEST_KEY"}
)";

TEST(ConfigEnabledIfEnvTest, KeepsExactlyTheEnabledEntries) {
  {
    ScopedEnv key("TERSE_TEST_KEY", std::nullopt);
    auto loaded = LoadConfigText(kConditional);
    ASSERT_THAT(loaded, IsOk());
    EXPECT_EQ((*loaded)->FindProvider("paid"), nullptr);
    ASSERT_EQ((*loaded)->proto().routes_size(), 1);
    EXPECT_EQ((*loaded)->MatchRoute("gpt-4o")->provider(), "echo");
  }
  {
    ScopedEnv key("TERSE_TEST_KEY", "");  // empty counts as unset
    auto loaded = LoadConfigText(kConditional);
    ASSERT_THAT(loaded, IsOk());
    EXPECT_EQ((*loaded)->MatchRoute("gpt-4o")->provider(), "echo");
  }
  {
    ScopedEnv key("TERSE_TEST_KEY", "sk-something");
    auto loaded = LoadConfigText(kConditional);
    ASSERT_THAT(loaded, IsOk());
    ASSERT_NE((*loaded)->FindProvider("paid"), nullptr);
    ASSERT_EQ((*loaded)->proto().routes_size(), 1);
    EXPECT_EQ((*loaded)->MatchRoute("gpt-4o")->provider(), "paid");
  }
}

TEST(ConfigEnabledIfEnvTest, AnEnabledRouteMayNotUseADisabledProvider) {
  ScopedEnv key("TERSE_TEST_KEY", std::nullopt);
  EXPECT_THAT(Problems(R"(
providers:
  - {name: paid, kind: openai, enabled_if_env: TERSE_TEST_KEY}
  - {name: echo, kind: echo}
routes:
  - {model: "*", provider: paid}
  - {model: "x", provider: echo, fallbacks: [paid]}
)"),
              ElementsAre("routes[0].provider: provider \"paid\" is disabled by its "
                          "enabled_if_env (TERSE_TEST_KEY); give this route the same "
                          "enabled_if_env",
                          "routes[1].fallbacks[0]: provider \"paid\" is disabled by its "
                          "enabled_if_env (TERSE_TEST_KEY); give this route the same "
                          "enabled_if_env"));
  EXPECT_THAT(Problems(R"(
providers: [{name: echo, kind: echo}]
routes: [{model: "*", provider: echo, enabled_if_env: TERSE_TEST_KEY}]
)"),
              ElementsAre("routes: every route is disabled by its enabled_if_env; at least one "
                          "must remain"));
}

TEST(ConfigEnabledIfEnvTest, DisabledEntriesAreStillValidated) {
  ScopedEnv key("TERSE_TEST_KEY", std::nullopt);
  EXPECT_THAT(Problems(std::string(kMinimal) + R"(
  - {model: x, provider: opnai, enabled_if_env: TERSE_TEST_KEY}
)"),
              ElementsAre("routes[1].provider: unknown provider \"opnai\""));
}

// --- matching -------------------------------------------------------------------------------

TEST(ConfigMatchTest, FirstMatchingRouteInConfigOrder) {
  auto loaded = LoadConfigText(R"(
providers: [{name: p, kind: echo}]
routes:
  - {name: exact, model: gpt-4o, provider: p}
  - {name: family, model: "gpt-4o*", provider: p}
  - {name: one_char, model: "gpt-?", provider: p}
  - {name: claude, model: "claude-[0-9]*", provider: p}
  - {name: shadowed, model: gpt-4o-mini, provider: p}
  - {name: slash, model: "meta-llama/*", provider: p}
)");
  ASSERT_THAT(loaded, IsOk());
  const Config& c = **loaded;
  auto route = [&](const char* model) -> std::string {
    const v1::Route* r = c.MatchRoute(model);
    return r == nullptr ? "<none>" : r->name();
  };
  EXPECT_EQ(route("gpt-4o"), "exact");
  EXPECT_EQ(route("gpt-4o-mini"), "family");  // an earlier glob wins over a later exact name
  EXPECT_EQ(route("gpt-5"), "one_char");
  EXPECT_EQ(route("gpt-10"), "<none>");
  EXPECT_EQ(route("claude-3-opus"), "claude");
  EXPECT_EQ(route("claude-x"), "<none>");
  EXPECT_EQ(route("meta-llama/Llama-3-8B"), "slash");
  EXPECT_EQ(route(""), "<none>");
  EXPECT_EQ(route("GPT-4O"), "<none>");  // case-sensitive, like the upstreams
}

TEST(ConfigMatchTest, CatchAllMatchesEverything) {
  auto loaded = LoadConfigText(R"(
providers: [{name: p, kind: echo}, {name: q, kind: echo}]
routes:
  - {name: special, model: "o1", provider: q}
  - {name: all, model: "*", provider: p}
)");
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ((*loaded)->MatchRoute("o1")->name(), "special");
  EXPECT_EQ((*loaded)->MatchRoute("o1-mini")->name(), "all");
  EXPECT_EQ((*loaded)->MatchRoute("anything/at all")->name(), "all");
  EXPECT_EQ((*loaded)->FindProvider("q")->name(), "q");
}

// --- files ----------------------------------------------------------------------------------

TEST(ConfigFileTest, ShippedConfigUsesEchoWithoutAKey) {
  ScopedEnv key("OPENAI_API_KEY", std::nullopt);
  ScopedEnv host("TERSE_HOST", std::nullopt);
  auto loaded = LoadConfigFile(SourceDir() + "/config/terse.yaml");
  ASSERT_THAT(loaded, IsOk());
  const Config& c = **loaded;
  EXPECT_EQ(c.proto().listeners().http().host(), "127.0.0.1");
  EXPECT_EQ(c.proto().listeners().http().port(), 8080u);
  EXPECT_EQ(c.proto().listeners().grpc().port(), 50051u);
  EXPECT_EQ(c.FindProvider("openai"), nullptr);
  ASSERT_NE(c.FindProvider("echo"), nullptr);
  const v1::Route* route = c.MatchRoute("gpt-4o-mini");
  ASSERT_NE(route, nullptr);
  EXPECT_EQ(route->name(), "default");
  EXPECT_EQ(route->provider(), "echo");
  EXPECT_TRUE(route->compression().enabled());
  EXPECT_DOUBLE_EQ(route->compression().rate(), 0.5);
  EXPECT_EQ(route->compression().min_prompt_tokens(), 200u);
  EXPECT_EQ(c.proto().compressor().model_dir(), "models/terse-small-en");
}

TEST(ConfigFileTest, ShippedConfigUsesOpenAiWithAKey) {
  ScopedEnv key("OPENAI_API_KEY", "sk-test-not-a-real-key");
  auto loaded = LoadConfigFile(SourceDir() + "/config/terse.yaml");
  ASSERT_THAT(loaded, IsOk());
  const Config& c = **loaded;
  const v1::Provider* openai = c.FindProvider("openai");
  ASSERT_NE(openai, nullptr);
  EXPECT_EQ(openai->kind(), v1::Provider::OPENAI);
  EXPECT_EQ(openai->api_key_env(), "OPENAI_API_KEY");
  EXPECT_EQ(openai->base_url(), "https://api.openai.com/v1");
  EXPECT_THAT(c.proto().DebugString(), Not(HasSubstr("sk-test-not-a-real-key")));
  const v1::Route* route = c.MatchRoute("gpt-4o");
  ASSERT_NE(route, nullptr);
  EXPECT_EQ(route->provider(), "openai");
  EXPECT_DOUBLE_EQ(route->compression().rate(), 0.5);
  EXPECT_EQ(route->compression().min_prompt_tokens(), 200u);
  EXPECT_EQ(c.proto().routes_size(), 1);
}

TEST(ConfigFileTest, EveryExampleLoads) {
  ScopedEnv endpoint("AZURE_OPENAI_ENDPOINT", "https://example-resource.openai.azure.com");
  ScopedEnv vllm("VLLM_URL", std::nullopt);
  struct Example {
    const char* file;
    v1::Provider::Kind kind;
  };
  for (const Example& e : {Example{"azure_openai.yaml", v1::Provider::AZURE_OPENAI},
                           Example{"anthropic.yaml", v1::Provider::ANTHROPIC},
                           Example{"openai_compatible.yaml", v1::Provider::OPENAI_COMPATIBLE}}) {
    SCOPED_TRACE(e.file);
    auto loaded = LoadConfigFile(SourceDir() + "/config/examples/" + e.file);
    ASSERT_THAT(loaded, IsOk());
    ASSERT_GT((*loaded)->proto().providers_size(), 0);
    EXPECT_EQ((*loaded)->proto().providers(0).kind(), e.kind);
    for (const v1::Route& r : (*loaded)->proto().routes()) {
      EXPECT_NE((*loaded)->FindProvider(r.provider()), nullptr) << r.name();
    }
  }
}

// The tenants example takes its key from the environment, as `terse keygen --env` exports it.
TEST(ConfigFileTest, TheTenantsExampleLoadsWithAKeyFromTheEnvironment) {
  ScopedEnv id("TERSE_KEY_ID", "abcdef012345");
  ScopedEnv hash("TERSE_KEY_HASH",
                 "sha256$0123456789abcdef0123456789abcdef$"
                 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  ScopedEnv dir("TERSE_DATA_DIR", std::nullopt);
  auto loaded = LoadConfigFile(SourceDir() + "/config/examples/tenants.yaml");
  ASSERT_THAT(loaded, IsOk());
  const v1::Tenancy& tenancy = (*loaded)->proto().tenancy();
  EXPECT_EQ(tenancy.data_dir(), "/tmp/terse-data");
  ASSERT_EQ(tenancy.tenants_size(), 1);
  EXPECT_EQ(tenancy.tenants(0).keys(0).id(), "abcdef012345");
  EXPECT_EQ(tenancy.tenants(0).keys(0).hash(), std::getenv("TERSE_KEY_HASH"));
  EXPECT_GT(tenancy.prices().at("echo/*").input_cost_per_token(), 0);
}

TEST(ConfigFileTest, ExamplesMatchTheirModels) {
  ScopedEnv vllm("VLLM_URL", std::nullopt);
  auto loaded = LoadConfigFile(SourceDir() + "/config/examples/openai_compatible.yaml");
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ((*loaded)->MatchRoute("llama3.1-70b")->provider(), "vllm");
  EXPECT_EQ((*loaded)->MatchRoute("mistral")->provider(), "ollama");
  EXPECT_EQ((*loaded)->FindProvider("vllm")->base_url(), "http://127.0.0.1:8000/v1");
}

TEST(ConfigFileTest, BadFileListsEveryProblemAndNoSecret) {
  const std::string secret = "sk-live-do-not-print-me-42";
  ScopedEnv key("TERSE_TEST_FILE_SECRET", secret);
  const std::string path = ::testing::TempDir() + "/terse_bad_config.yaml";
  {
    std::ofstream out(path);
    out << R"(
providers:
  - name: openai
    kind: openai
    api_key_env: TERSE_TEST_FILE_SECRET
    headers: {Authorization: "Bearer ${TERSE_TEST_FILE_SECRET}"}
  - {name: openai, kind: echo, base_url: "${TERSE_TEST_FILE_SECRET}"}
routes:
  - {model: "*", provider: opnai}
  - model: x
    provider: openai
    compression: {enabled: true, rate: "${TERSE_TEST_FILE_SECRET}"}
listeners: {http: {port: 70000}}
)";
  }
  auto loaded = LoadConfigFile(path);
  ASSERT_THAT(loaded, StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string message(loaded.status().message());
  EXPECT_THAT(message, Not(HasSubstr(secret)));
  EXPECT_THAT(Lines(message),
              ElementsAre("providers[1].name: duplicate provider name \"openai\" (also "
                          "providers[0])",
                          "providers[1].base_url: expected an http:// or https:// URL, got "
                          "\"<value from the environment>\"",
                          "routes[0].provider: unknown provider \"opnai\" (did you mean "
                          "\"openai\"?)",
                          "routes[1].compression.rate: expected a number, got a value from the "
                          "environment (not shown)",
                          "listeners.http.port: 70000 is not a valid port (0 to 65535)"));
  std::remove(path.c_str());
}

TEST(ConfigFileTest, MissingOrUnreadableFile) {
  EXPECT_THAT(LoadConfigFile("no/such/terse.yaml"),
              StatusIs(absl::StatusCode::kNotFound,
                       "cannot read config file \"no/such/terse.yaml\": No such file or "
                       "directory"));
  EXPECT_THAT(LoadConfigFile(::testing::TempDir()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("it is a directory")));
}

}  // namespace
}  // namespace terse::config
