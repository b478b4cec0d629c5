#include "proxy/compression_step.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "compressor/chat_compression.h"
#include "compressor/compressor.h"
#include "compressor/language_model.h"
#include "compressor/lm_tokenizer.h"
#include "config/config.h"
#include "tests/support/status_matchers.h"

namespace terse::proxy {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using Outcome = absl::StatusOr<CompressionStep::Result>;

std::shared_ptr<compressor::Compressor> TinyCompressor() {
  static std::shared_ptr<compressor::Compressor> compressor = [] {
    compressor::LanguageModelOptions options;
    options.model_dir = "tests/fixtures/tiny-lm";
    options.threads = 1;
    auto c = compressor::Compressor::Load(options, /*cache_entries=*/128);
    EXPECT_THAT(c, IsOk());
    return std::shared_ptr<compressor::Compressor>(std::move(*c));
  }();
  return compressor;
}

// Words from a small vocabulary: about `words` target tokens of prose in blank-line paragraphs.
std::string Prose(int words, int seed) {
  static const char* kWords[] = {"the",     "harbor",  "council", "agreed", "to",        "rebuild",
                                 "a",       "bridge",  "after",   "storm",  "merchants", "sold",
                                 "grain",   "and",     "salt",    "every",  "spring",    "while",
                                 "farmers", "planted", "barley",  "near",   "old",       "mills"};
  std::string text;
  for (int i = 0; i < words; ++i) {
    if (i > 0) text += (i % 60 == 0) ? ".\n\n" : " ";
    text += kWords[(i * 7 + seed * 13 + i / 5) % 24];
  }
  return text + ".";
}

Json ChatBody(int words = 600) {
  return Json{{"model", "gpt-4o-mini"},
              {"messages",
               {{{"role", "system"}, {"content", Prose(words / 3, 1)}},
                {{"role", "user"},
                 {"content", Prose(words / 3, 2) + "\n\n" + Prose(words / 3, 3) +
                                 "\n\nWho rebuilt the bridge?"}}}},
              {"temperature", 0}};
}

v1::Route Route(bool enabled, double rate, bool allow_overrides = false) {
  v1::Route route;
  route.set_name("default");
  route.set_model("*");
  route.mutable_compression()->set_enabled(enabled);
  route.mutable_compression()->set_rate(rate);
  route.set_allow_overrides(allow_overrides);
  return route;
}

std::unique_ptr<CompressorStep> Step(uint32_t workers = 2, uint32_t capacity = 64) {
  v1::CompressorSettings settings;
  settings.set_workers(workers);
  settings.set_queue_capacity(capacity);
  auto step = CompressorStep::Create(TinyCompressor(), settings);
  EXPECT_THAT(step, IsOk());
  return std::move(*step);
}

// What the pipeline hands the step of a chat body: its messages, its `terse` object, its model.
CompressionStep::Input InputOf(const Json& body) {
  CompressionStep::Input input;
  input.prompt = body["messages"];
  if (body.contains("terse")) input.overrides = body["terse"];
  input.model = body.value("model", "");
  return input;
}

Outcome RunInput(CompressorStep& step, const v1::Route& route, CompressionStep::Input input,
                 CallInfo info = {}) {
  std::promise<Outcome> promise;
  auto future = promise.get_future();
  step.Compress(route, info, std::move(input),
                [&promise](Outcome outcome) mutable { promise.set_value(std::move(outcome)); });
  EXPECT_EQ(future.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  return future.get();
}

Outcome RunStep(CompressorStep& step, const v1::Route& route, const Json& body,
                CallInfo info = {}) {
  return RunInput(step, route, InputOf(body), std::move(info));
}

TEST(CompressorStepTest, CompressesOnTheRouteRate) {
  auto step = Step();
  auto outcome = RunStep(*step, Route(true, 0.5), ChatBody());
  ASSERT_THAT(outcome, IsOk());
  const v1::CompressionReport& report = outcome->report;
  EXPECT_TRUE(report.applied()) << report.reason();
  EXPECT_NEAR(report.rate(), 0.5, 0.025);
  EXPECT_GT(report.original_tokens(), report.compressed_tokens());
  EXPECT_GT(report.compress_ms(), 0);
  ASSERT_TRUE(outcome->prompt.has_value());
  EXPECT_EQ(outcome->prompt->size(), 2u);
  EXPECT_THAT((*outcome->prompt)[1]["content"].get<std::string>(),
              ::testing::EndsWith("Who rebuilt the bridge?"));
}

TEST(CompressorStepTest, DisabledRouteGivesThePromptBackUnchanged) {
  auto step = Step();
  Json body = ChatBody();
  const Json expected = body["messages"];
  body["terse"] = {{"rate", 0.2}};
  auto outcome = RunStep(*step, Route(false, 0.5), body);
  ASSERT_THAT(outcome, IsOk());
  EXPECT_FALSE(outcome->report.applied());
  EXPECT_EQ(outcome->prompt, expected) << "overrides ignored where the route does not allow them";
}

TEST(CompressorStepTest, OverridesOnlyWhereAllowed) {
  auto step = Step();
  CallInfo off;
  off.headers = {{"x-terse-compress", "off"}};
  auto ignored = RunStep(*step, Route(true, 0.5, /*allow_overrides=*/false), ChatBody(), off);
  ASSERT_THAT(ignored, IsOk());
  EXPECT_TRUE(ignored->report.applied());

  auto honoured = RunStep(*step, Route(true, 0.5, /*allow_overrides=*/true), ChatBody(), off);
  ASSERT_THAT(honoured, IsOk());
  EXPECT_FALSE(honoured->report.applied());

  CallInfo rate;
  rate.headers = {{"x-terse-rate", "0.3"}};
  auto lower = RunStep(*step, Route(true, 0.5, true), ChatBody(), rate);
  ASSERT_THAT(lower, IsOk());
  EXPECT_NEAR(lower->report.rate(), 0.3, 0.015);

  Json body = ChatBody();
  body["terse"] = {{"target_tokens", 200}};
  auto target = RunStep(*step, Route(true, 0.5, true), body);
  ASSERT_THAT(target, IsOk());
  EXPECT_NEAR(target->report.compressed_tokens(), 200, 10);
}

TEST(CompressorStepTest, BadOverridesAreRequestErrors) {
  auto step = Step();
  CallInfo info;
  info.headers = {{"x-terse-rate", "fast"}};
  EXPECT_THAT(RunStep(*step, Route(true, 0.5, true), ChatBody(), info),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("x-terse-rate")));
  Json body = ChatBody();
  body["terse"] = {{"rate", 3}};
  EXPECT_THAT(RunStep(*step, Route(true, 0.5, true), body),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// A model whose every scoring call throws.
class ThrowingModel : public compressor::LanguageModel {
 public:
  class ThrowingSession : public Session {
   public:
    absl::StatusOr<std::vector<float>> Score(std::span<const int32_t>) override { Throw(); }
    absl::Status Append(std::span<const int32_t>) override { Throw(); }
    absl::Status AppendScored(const std::vector<bool>&) override { Throw(); }
    int past_length() const override { return 0; }
  };
  absl::StatusOr<std::vector<std::vector<float>>> ScoreSequences(
      const std::vector<std::vector<int32_t>>&) override {
    Throw();
  }
  absl::StatusOr<std::vector<std::vector<float>>> ScoreContinuations(
      const std::vector<std::vector<int32_t>>&, const std::vector<std::vector<int32_t>>&) override {
    Throw();
  }
  std::unique_ptr<Session> NewSession() override { return std::make_unique<ThrowingSession>(); }
  int max_context() const override { return 128; }
  int vocab_size() const override { return 512; }
  std::string device() const override { return "cpu"; }
  const std::string& digest() const override { return digest_; }

 private:
  [[noreturn]] static void Throw() { throw std::runtime_error("the model broke"); }
  std::string digest_ = "throwing";
};

// The step needs no try/catch: what goes wrong inside the compressor arrives as a status, and
// a body that is not an object is a request error.
TEST(CompressorStepTest, CompressorFailuresArriveAsStatusesAndWorkersCarryOn) {
  auto tokenizer = compressor::LmTokenizer::Load("tests/fixtures/tiny-lm");
  ASSERT_THAT(tokenizer, IsOk());
  auto compressor = compressor::Compressor::Create(std::make_shared<ThrowingModel>(),
                                                   std::move(*tokenizer), /*cache_entries=*/0);
  ASSERT_THAT(compressor, IsOk());
  v1::CompressorSettings settings;
  settings.set_workers(1);
  auto step = CompressorStep::Create(std::move(*compressor), settings);
  ASSERT_THAT(step, IsOk());
  for (int i = 0; i < 2; ++i) {
    EXPECT_THAT(RunStep(**step, Route(true, 0.5), ChatBody()),
                StatusIs(absl::StatusCode::kInternal, ::testing::HasSubstr("the model broke")));
  }
  CompressionStep::Input malformed;  // messages that are not message objects
  malformed.prompt = Json::array({1, 2});
  EXPECT_THAT(RunInput(**step, Route(true, 0.5), malformed),
              StatusIs(absl::StatusCode::kInvalidArgument));
  CallInfo completions;
  completions.operation = Operation::kCompletions;
  EXPECT_THAT(RunInput(**step, Route(true, 0.5), CompressionStep::Input{}, completions),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("prompt")));
}

TEST(CompressorStepTest, FullQueueAndTimeoutEndCallsAtOnce) {
  auto step = Step(/*workers=*/1, /*capacity=*/1);
  v1::Route route = Route(true, 0.3);
  route.mutable_compression()->set_timeout_ms(1);
  constexpr int kCalls = 8;
  std::vector<std::promise<Outcome>> promises(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    step->Compress(route, {}, InputOf(ChatBody(3000 + i)),
                   [&promises, i](Outcome o) mutable { promises[i].set_value(std::move(o)); });
  }
  int overloaded = 0, timed_out = 0;
  for (auto& p : promises) {
    auto f = p.get_future();
    ASSERT_EQ(f.wait_for(std::chrono::seconds(60)), std::future_status::ready);
    Outcome o = f.get();
    if (o.status().code() == absl::StatusCode::kUnavailable) ++overloaded;
    if (o.status().code() == absl::StatusCode::kDeadlineExceeded) ++timed_out;
  }
  EXPECT_GT(overloaded, 0) << "a queue of one cannot hold eight calls";
  EXPECT_GT(timed_out, 0) << "3,000-token prompts do not compress in 1 ms";
}

}  // namespace
}  // namespace terse::proxy

namespace terse::proxy {
namespace {

// config/ fills a route's compression defaults without seeing compressor/; they must stay the
// recipe compressor::RecommendedChatPolicy names.
TEST(RouteDefaultsTest, ARouteThatSaysNothingGetsTheRecommendedRecipe) {
  auto config = config::LoadConfigText(R"(
providers: [{name: echo, kind: echo}]
routes: [{name: r, model: "*", provider: echo, compression: {enabled: true, rate: 0.5}}]
)");
  ASSERT_TRUE(config.ok()) << config.status();
  const v1::Compression& c = (*config)->proto().routes(0).compression();
  const compressor::ChatPolicy recipe = compressor::RecommendedChatPolicy();
  EXPECT_EQ(c.question_aware(), recipe.question_aware);
  EXPECT_EQ(c.reorder(), "rank");
  EXPECT_EQ(recipe.options.reorder, compressor::Reorder::kRank);
  EXPECT_DOUBLE_EQ(c.dynamic_ratio(), recipe.options.dynamic_ratio);
  EXPECT_DOUBLE_EQ(c.context_budget_k(), recipe.options.context_budget_k);
  EXPECT_EQ(c.contrastive(), recipe.options.contrastive);
}

}  // namespace
}  // namespace terse::proxy
