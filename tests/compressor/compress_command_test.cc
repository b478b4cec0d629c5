#include "compressor/compress_command.h"

#include <sstream>
#include <string>
#include <vector>

#include "base/json.h"
#include "compressor/compressor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/compressor/compressor_testing.h"

namespace terse::compressor {
namespace {

using ::terse::compressor::testing::Prose;
using ::terse::compressor::testing::TinyCompressor;
using ::testing::HasSubstr;
using ::testing::Not;

struct Outcome {
  int status;
  std::string out;
  std::string err;
};

class CompressCommandTest : public ::testing::Test {
 protected:
  Outcome Run(std::vector<std::string> args, const std::string& input, bool color = false,
              bool use_fixture = true) {
    args.insert(args.begin(), "compress");
    std::istringstream in(input);
    std::ostringstream out, err;
    const int status =
        RunCompressCommand(args, in, out, err, color, use_fixture ? compressor_.get() : nullptr);
    return {status, out.str(), err.str()};
  }
  std::unique_ptr<Compressor> compressor_ = TinyCompressor();
};

TEST_F(CompressCommandTest, PlainTextAtARate) {
  const std::string text = Prose(300, 1);
  const Outcome o = Run({"--rate", "0.3"}, text);
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_LT(o.out.size(), text.size() / 2);
  EXPECT_EQ(o.out.back(), '\n');
}

TEST_F(CompressCommandTest, JsonOutputHasTheDocumentedFields) {
  const std::string text = Prose(300, 2);
  const Outcome o = Run({"--target-tokens=60", "--json"}, text);
  ASSERT_EQ(o.status, 0) << o.err;
  const Json j = Json::parse(o.out);
  for (const char* key :
       {"compressed_prompt", "origin_tokens", "compressed_tokens", "rate", "ratio", "ms"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_NEAR(j["compressed_tokens"].get<double>(), 60, 2);
  EXPECT_NEAR(j["ratio"].get<double>(),
              j["origin_tokens"].get<double>() / j["compressed_tokens"].get<double>(), 1e-9);
}

TEST_F(CompressCommandTest, StructuredInputWithQuestionAwareFlags) {
  Json in = {{"instruction", "Answer briefly."},
             {"context", {Prose(150, 3), Prose(150, 4), Prose(150, 5)}},
             {"question", "Which towns grew into markets?"}};
  const Outcome o = Run(
      {"--rate", "0.3", "--question-aware", "--contrastive", "--reorder", "two_stage",
       "--dynamic-ratio", "0.3", "--segment-tokens", "50", "--tokenizer", "o200k_base",
       "--exact-past", "--json"},
      in.dump());
  ASSERT_EQ(o.status, 0) << o.err;
  const std::string prompt = Json::parse(o.out)["compressed_prompt"];
  EXPECT_THAT(prompt, ::testing::StartsWith("Answer"));
}

TEST_F(CompressCommandTest, ShowMarksDroppedText) {
  const std::string text = Prose(120, 6);
  const Outcome plain = Run({"--rate", "0.4", "--show"}, text);
  ASSERT_EQ(plain.status, 0) << plain.err;
  EXPECT_THAT(plain.out, HasSubstr("[-"));
  EXPECT_THAT(plain.out, HasSubstr("-]"));
  EXPECT_THAT(plain.err, HasSubstr("tokens"));
  // Unmarking gives back the original.
  std::string unmarked = plain.out;
  for (const std::string mark : {"[-", "-]"}) {
    for (size_t p = unmarked.find(mark); p != std::string::npos; p = unmarked.find(mark, p)) {
      unmarked.erase(p, 2);
    }
  }
  EXPECT_EQ(unmarked, text + "\n");

  const Outcome color = Run({"--rate", "0.4", "--show"}, text, /*color=*/true);
  ASSERT_EQ(color.status, 0);
  EXPECT_THAT(color.out, HasSubstr("\x1b[2;9m"));
  EXPECT_THAT(color.out, Not(HasSubstr("[-")));
}

TEST_F(CompressCommandTest, BadInputAndFlagsExitTwo) {
  EXPECT_EQ(Run({"--rate"}, "x").status, 2);
  EXPECT_EQ(Run({"--rate", "abc"}, "x").status, 2);
  EXPECT_EQ(Run({"--rate", "1.5"}, Prose(80, 7)).status, 2);
  EXPECT_EQ(Run({"--reorder", "sideways"}, "x").status, 2);
  EXPECT_EQ(Run({"--tokenizer", "p50k"}, "x").status, 2);
  EXPECT_EQ(Run({"--frobnicate"}, "x").status, 2);
  const Outcome utf8 = Run({}, "bad \xFF bytes");
  EXPECT_EQ(utf8.status, 2);
  EXPECT_THAT(utf8.err, HasSubstr("UTF-8"));
  const Outcome context = Run({}, R"({"context": [1, 2]})");
  EXPECT_EQ(context.status, 2);
  EXPECT_THAT(context.err, HasSubstr("context"));
  EXPECT_EQ(Run({}, R"({"question": "q", "extra": 1})").status, 2);
}

TEST_F(CompressCommandTest, JsonThatIsNotAPromptIsText) {
  const Outcome o = Run({"--rate", "0.5"}, R"({"name": "value", "n": 1})");
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(o.out, "{\"name\": \"value\", \"n\": 1}\n");  // kept whole: JSON is structure
}

TEST_F(CompressCommandTest, HelpAndMissingModel) {
  const Outcome help = Run({"--help"}, "");
  EXPECT_EQ(help.status, 0);
  EXPECT_THAT(help.out, HasSubstr("--target-tokens"));
  const Outcome missing =
      Run({"--model", "no/such/model"}, "some text here", false, /*use_fixture=*/false);
  EXPECT_EQ(missing.status, 1);
  EXPECT_THAT(missing.err, HasSubstr("no/such/model"));
}

TEST_F(CompressCommandTest, LoadsAModelDirectory) {
  const Outcome o = Run({"--model", "tests/fixtures/tiny-lm", "--threads", "1", "--rate", "0.5"},
                        Prose(100, 8), false, /*use_fixture=*/false);
  EXPECT_EQ(o.status, 0) << o.err;
}

}  // namespace
}  // namespace terse::compressor
