// The eval run end to end on the tiny test model: every method lands on its budget, the shares are
// shares, and the outputs (table, JSON, SVG, the --check thresholds) say what was measured.
#include "eval/runner.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "compressor/target_tokenizer.h"
#include "eval/eval_command.h"
#include "eval/gateway_method.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_upstream.h"

namespace terse::eval {
namespace {

using ::testing::HasSubstr;

constexpr char kTinyModel[] = "tests/fixtures/tiny-lm";

std::shared_ptr<compressor::Compressor> TinyCompressor() {
  compressor::LanguageModelOptions options;
  options.model_dir = kTinyModel;
  options.threads = 1;
  auto loaded = compressor::Compressor::Load(options, 0);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return loaded.ok() ? std::shared_ptr<compressor::Compressor>(std::move(*loaded)) : nullptr;
}

TEST(EvalRunTest, EveryMethodLandsOnItsBudgetAndSharesAreShares) {
  auto compressor = TinyCompressor();
  ASSERT_NE(compressor, nullptr);
  auto tokenizer = compressor::GetTargetTokenizer("cl100k_base");
  ASSERT_TRUE(tokenizer.ok());
  RunOptions options;
  options.families = {Family::kMultiDocQa, Family::kFewShotMath, Family::kChat};
  options.items_per_family = 2;
  options.rates = {0.5, 0.33};
  options.progress = false;
  const std::vector<NamedMethod> methods = {
      {"terse", "chat", TerseMethod(compressor, {}, Face::kChat)},
      {"terse", "prompt", TerseMethod(compressor, {}, Face::kPrompt)},
      {"truncate", "-", TruncateMethod(*tokenizer)},
      {"random", "-", RandomDropMethod(*tokenizer, 1)}};
  auto result = Evaluate(options, methods);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->rows.size(), methods.size() * 3 * 2);
  for (const Row& r : result->rows) {
    SCOPED_TRACE(r.method + "/" + r.face + " " + r.family + " " + std::to_string(r.rate));
    EXPECT_EQ(r.errors, 0u) << r.first_error;
    EXPECT_EQ(r.items, 2u);
    EXPECT_NEAR(r.achieved_rate, r.rate, 0.05 * r.rate);
    for (double share :
         {r.answer_kept, r.question_intact, r.demo_answers_kept, r.numbers_kept, r.entities_kept}) {
      // A share, or -1 where the family has nothing of the kind to measure.
      EXPECT_TRUE(share == -1.0 || (share >= 0.0 && share <= 1.0)) << share;
    }
    // The question is the user's ask: every face keeps it verbatim by default.
    EXPECT_EQ(r.question_intact, 1.0);
    if (r.family == "fewshot_math") {
      EXPECT_GE(r.demo_answers_kept, 0.0);
      EXPECT_EQ(r.answer_kept, -1.0);
    } else {
      EXPECT_GE(r.answer_kept, 0.0);
    }
  }
  const std::string table = FormatTable(*result);
  EXPECT_THAT(table, HasSubstr("terse (chat)"));
  EXPECT_THAT(table, HasSubstr("random (-)"));
  const Json json = ResultJson(*result);
  EXPECT_EQ(json["rows"].size(), result->rows.size());
  EXPECT_EQ(json["config"]["items_per_family"], 2);
  const std::string svg = RetentionSvg(*result);
  EXPECT_THAT(svg, HasSubstr("<svg"));
  EXPECT_THAT(svg, HasSubstr("multidoc_qa: answer kept"));
  EXPECT_THAT(svg, HasSubstr("fewshot_math: demo answers kept"));
}

TEST(EvalRunTest, ItemMessagesKeepRolesAndEndWithTheQuestion) {
  const std::vector<Item> chat = Generate(Family::kChat, 1, 3);
  const Json messages = ItemMessages(chat[0]);
  ASSERT_GE(messages.size(), 3u);
  EXPECT_EQ(messages[0]["role"], "system");
  EXPECT_EQ(messages.back()["role"], "user");
  EXPECT_EQ(messages.back()["content"], chat[0].question);
  for (const Json& m : messages) {
    EXPECT_FALSE(m["content"].get<std::string>().starts_with("User: "));
    EXPECT_FALSE(m["content"].get<std::string>().starts_with("Assistant: "));
  }
  const std::vector<Item> qa = Generate(Family::kMultiDocQa, 1, 3);
  const Json one = ItemMessages(qa[0]);
  ASSERT_EQ(one.size(), 2u);
  EXPECT_THAT(one[1]["content"].get<std::string>(), ::testing::EndsWith(qa[0].question));
}

class EvalCommandTest : public ::testing::Test {
 protected:
  int Eval(std::vector<std::string> args) {
    args.insert(args.begin(), "eval");
    out_.str("");
    err_.str("");
    return RunEvalCommand(args, out_, err_);
  }
  std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/" + name; }
  std::ostringstream out_, err_;
};

TEST_F(EvalCommandTest, ChecksPassOrNameTheMiss) {
  const std::string checks = TempPath("checks.json");
  std::ofstream(checks) << R"({"checks": [
      {"method": "truncate", "face": "-", "family": "multidoc_qa", "rate": 0.5,
       "min": {"question_intact": 1.0}, "max_rate_error": 0.05}]})";
  const std::vector<std::string> common = {
      "--model", kTinyModel,      "--families", "multidoc_qa", "--items",   "2", "--rates",
      "0.5",     "--no-progress", "--faces",    "chat",        "--threads", "1"};
  std::vector<std::string> args = common;
  args.insert(args.end(),
              {"--check", checks, "--json", TempPath("run.json"), "--svg", TempPath("run.svg")});
  EXPECT_EQ(Eval(args), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("checks met"));
  std::ifstream json(TempPath("run.json"));
  EXPECT_TRUE(Json::accept(json));

  std::ofstream(checks) << R"({"checks": [
      {"method": "truncate", "face": "-", "family": "multidoc_qa", "rate": 0.5,
       "min": {"answer_kept": 1.01}},
      {"family": "code", "rate": 0.5, "min": {"answer_kept": 0}}]})";
  args = common;
  args.insert(args.end(), {"--check", checks});
  EXPECT_EQ(Eval(args), 1);
  EXPECT_THAT(err_.str(), HasSubstr("answer_kept"));
  EXPECT_THAT(err_.str(), HasSubstr("code at 0.5: not measured"));
}

TEST_F(EvalCommandTest, BadFlagsAreExitTwoWithAReason) {
  EXPECT_EQ(Eval({"--families", "poetry"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("poetry"));
  EXPECT_EQ(Eval({"--rates", "0.5,1.5"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("1.5"));
  EXPECT_EQ(Eval({"--items"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("needs a value"));
  EXPECT_EQ(Eval({"--frobnicate"}), 2);
  EXPECT_EQ(Eval({"--help"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("usage: terse eval"));
}

TEST_F(EvalCommandTest, WritesItemsAsJsonLines) {
  const std::string path = TempPath("items.jsonl");
  ASSERT_EQ(Eval({"--families", "tool_json,code", "--items", "3", "--write-items", path}), 0)
      << err_.str();
  std::ifstream in(path);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    const Json item = Json::parse(line);
    EXPECT_TRUE(item["context"].is_array());
    EXPECT_FALSE(item["answer"].get<std::string>().empty());
    ++lines;
  }
  EXPECT_EQ(lines, 6);
}

}  // namespace
}  // namespace terse::eval

namespace terse::eval {
namespace {

// The gateway face against a fake OpenAI-compatible server: each item is one chat completion
// with x-terse-rate (or x-terse-compress: off for the reference), and what comes back is scored.
TEST(GatewayMethodTest, SendsRatesAndScoresWhatComesBack) {
  testing::FakeUpstream upstream;  // answers with the last user message: an echo
  GatewayOptions options;
  options.base_url = upstream.base_url();
  options.api_key = "sk-test";
  auto client = GatewayClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  RunOptions run;
  run.families = {Family::kMultiDocQa};
  run.items_per_family = 2;
  run.rates = {0.5};
  run.progress = false;
  auto result = Evaluate(run, {{"terse", "gateway", (*client)->AsMethod()}});
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->rows.size(), 1u);
  EXPECT_EQ(result->rows[0].errors, 0u) << result->rows[0].first_error;
  // The echo holds the documents and the question whole: everything survives.
  EXPECT_EQ(result->rows[0].answer_kept, 1.0);
  EXPECT_EQ(result->rows[0].question_intact, 1.0);
  ASSERT_EQ(upstream.request_count(), 2u);
  const testing::FakeRequest request = upstream.last_request();
  EXPECT_EQ(request.path, "/v1/chat/completions");
  EXPECT_EQ(request.Header("x-terse-rate"), "0.5");
  EXPECT_EQ(request.Header("authorization"), "Bearer sk-test");
  EXPECT_EQ(request.JsonBody()["messages"][0]["role"], "system");
}

TEST(GatewayMethodTest, LlmAnswersAreScoredForExactMatchAgainstTheUncompressedReference) {
  testing::FakeUpstream upstream;
  const std::vector<Item> items = Generate(Family::kToolJson, 1, 1);
  upstream.SetDefaultReply(testing::FakeReply::Text("It is " + items[0].expected_reply + "."));
  GatewayOptions options;
  options.base_url = upstream.base_url();
  options.llm_answers = true;
  auto compressed = GatewayClient::Create(options);
  options.compress = false;
  auto reference = GatewayClient::Create(options);
  ASSERT_TRUE(compressed.ok() && reference.ok());
  RunOptions run;
  run.families = {Family::kToolJson};
  run.items_per_family = 1;
  run.rates = {0.5, 0.33};
  run.progress = false;
  auto result = Evaluate(run, {{"terse", "gateway", (*compressed)->AsMethod()},
                               {"uncompressed", "gateway", (*reference)->AsMethod(), true}});
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->rows.size(), 3u);  // two rates, and the reference once at rate 1
  for (const Row& r : result->rows) {
    EXPECT_EQ(r.reply_exact_match, 1.0) << r.method << " " << r.rate;
    EXPECT_EQ(r.errors, 0u) << r.first_error;
  }
  EXPECT_EQ(result->rows.back().method, "uncompressed");
  EXPECT_EQ(result->rows.back().rate, 1.0);
  // Two workers send them in any order: the reference once, uncompressed; each rate once.
  ASSERT_EQ(upstream.request_count(), 3u);
  std::vector<std::string> asked;
  for (const testing::FakeRequest& request : upstream.requests()) {
    asked.push_back(request.HasHeader("x-terse-compress")
                        ? "compress " + request.Header("x-terse-compress")
                        : "rate " + request.Header("x-terse-rate"));
  }
  EXPECT_THAT(asked, ::testing::UnorderedElementsAre("compress off", "rate 0.5", "rate 0.33"));
}

TEST(GatewayMethodTest, AnUnreachableGatewayIsAnErrorPerItemNotACrash) {
  GatewayOptions options;
  options.base_url = "http://127.0.0.1:1/v1";
  options.timeout_seconds = 5;
  auto client = GatewayClient::Create(options);
  ASSERT_TRUE(client.ok());
  RunOptions run;
  run.families = {Family::kCode};
  run.items_per_family = 1;
  run.rates = {0.5};
  run.progress = false;
  auto result = Evaluate(run, {{"terse", "gateway", (*client)->AsMethod()}});
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->rows[0].errors, 1u);
  EXPECT_EQ(result->rows[0].items, 0u);
  EXPECT_THAT(FormatTable(*result), HasSubstr("1 failed"));
}

}  // namespace
}  // namespace terse::eval
