// The private helpers of config/: ${VAR} expansion, suggestions and glob checks.
#include "config/env_refs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "config/glob.h"
#include "config/suggest.h"
#include "tests/support/status_matchers.h"

namespace terse::config {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(EnvRefsTest, PlainTextIsUnchanged) {
  auto out = ExpandEnvRefs("https://api.example.com/v1 costs $5", FakeEnv({}));
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->text, "https://api.example.com/v1 costs $5");
  EXPECT_FALSE(out->has_refs);
  EXPECT_THAT(out->env_values, IsEmpty());
}

TEST(EnvRefsTest, ExpandsReferencesAndRecordsTheirValues) {
  auto out = ExpandEnvRefs("Bearer ${TOKEN} for ${USER_NAME}",
                           FakeEnv({{"TOKEN", "s3cr3t-value"}, {"USER_NAME", "ada"}}));
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->text, "Bearer s3cr3t-value for ada");
  EXPECT_TRUE(out->has_refs);
  EXPECT_THAT(out->env_values, ElementsAre("s3cr3t-value", "ada"));
}

TEST(EnvRefsTest, DefaultsFollowShellRules) {
  EnvLookup env = FakeEnv({{"EMPTY", ""}, {"SET", "x"}});
  EXPECT_EQ(ExpandEnvRefs("${MISSING:-d}", env)->text, "d");
  EXPECT_EQ(ExpandEnvRefs("${EMPTY:-d}", env)->text, "d");  // `:-`: empty counts as unset
  EXPECT_EQ(ExpandEnvRefs("${EMPTY-d}", env)->text, "");    // `-`: only unset
  EXPECT_EQ(ExpandEnvRefs("${MISSING-d}", env)->text, "d");
  EXPECT_EQ(ExpandEnvRefs("${SET:-d}", env)->text, "x");
  EXPECT_EQ(ExpandEnvRefs("${EMPTY}", env)->text, "");
  EXPECT_EQ(ExpandEnvRefs("${MISSING:-}", env)->text, "");
  EXPECT_EQ(ExpandEnvRefs("${MISSING:-http://h:1/v1}", env)->text, "http://h:1/v1");
}

TEST(EnvRefsTest, DefaultsNestAndAreEvaluatedOnlyWhenUsed) {
  EnvLookup env = FakeEnv({{"INNER", "in"}, {"OUTER", "out"}});
  EXPECT_EQ(ExpandEnvRefs("${MISSING:-${INNER}}", env)->text, "in");
  EXPECT_EQ(ExpandEnvRefs("${MISSING:-a${ALSO_MISSING:-b}c}", env)->text, "abc");
  // The default refers to an unset variable but is not needed: not an error.
  auto out = ExpandEnvRefs("${OUTER:-${ALSO_MISSING}}", env);
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->text, "out");
  EXPECT_THAT(out->env_values, ElementsAre("out"));
}

TEST(EnvRefsTest, DollarDollarIsALiteralDollar) {
  EXPECT_EQ(ExpandEnvRefs("$${NOT_A_REF} $$", FakeEnv({}))->text, "${NOT_A_REF} $");
}

TEST(EnvRefsTest, ErrorsNameTheVariableButNoValue) {
  EXPECT_THAT(
      ExpandEnvRefs("key=${OPENAI_KEY_X}", FakeEnv({})),
      StatusIs(absl::StatusCode::kInvalidArgument, "environment variable OPENAI_KEY_X is not set"));
  EXPECT_THAT(ExpandEnvRefs("${OPEN", FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unterminated")));
  EXPECT_THAT(ExpandEnvRefs("${X:-abc", FakeEnv({{"X", "v"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unterminated")));
  EXPECT_THAT(ExpandEnvRefs("${1BAD}", FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid environment")));
  EXPECT_THAT(ExpandEnvRefs("${}", FakeEnv({})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid environment")));
  EXPECT_THAT(ExpandEnvRefs("${A?x}", FakeEnv({{"A", "secretvalue"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("secretvalue"))));
}

TEST(EnvRefsTest, EnvNames) {
  EXPECT_TRUE(IsEnvName("OPENAI_API_KEY"));
  EXPECT_TRUE(IsEnvName("_x1"));
  EXPECT_FALSE(IsEnvName(""));
  EXPECT_FALSE(IsEnvName("1X"));
  EXPECT_FALSE(IsEnvName("sk-abc"));
}

TEST(SuggestTest, SuggestsCloseSpellingsOnly) {
  std::vector<std::string> providers = {"openai", "echo", "anthropic"};
  EXPECT_EQ(DidYouMean("opnai", providers), " (did you mean \"openai\"?)");
  EXPECT_EQ(DidYouMean("anthorpic", providers), " (did you mean \"anthropic\"?)");
  EXPECT_EQ(DidYouMean("OpenAI", providers), " (did you mean \"openai\"?)");
  EXPECT_EQ(DidYouMean("mistral", providers), "");
  EXPECT_EQ(DidYouMean("openai", providers), "");
  EXPECT_EQ(EditDistance("compresion", "compression"), 1u);
  EXPECT_EQ(EditDistance("tagret", "target"), 1u);  // a transposition is one edit
}

TEST(GlobTest, ValidatesBrackets) {
  EXPECT_THAT(ValidateGlob("gpt-4o*"), IsOk());
  EXPECT_THAT(ValidateGlob("claude-[0-9]*"), IsOk());
  EXPECT_THAT(ValidateGlob("model-[!ab]"), IsOk());
  EXPECT_THAT(ValidateGlob("x[]]"), IsOk());
  EXPECT_THAT(ValidateGlob("x[[:digit:]]"), IsOk());
  EXPECT_THAT(ValidateGlob("a\\*b"), IsOk());
  EXPECT_THAT(ValidateGlob("gpt-[4"),
              StatusIs(absl::StatusCode::kInvalidArgument, "unterminated \"[\" at offset 4"));
  EXPECT_THAT(ValidateGlob("x[[:digit:"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateGlob("ends\\"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(GlobTest, MatchesLikeFnmatch) {
  EXPECT_TRUE(GlobMatches("gpt-4o*", "gpt-4o-mini"));
  EXPECT_TRUE(GlobMatches("*", "meta-llama/Llama-3-8B"));  // `*` crosses `/`
  EXPECT_TRUE(GlobMatches("gpt-?", "gpt-5"));
  EXPECT_FALSE(GlobMatches("gpt-?", "gpt-10"));
  EXPECT_TRUE(GlobMatches("claude-[0-9]*", "claude-3-opus"));
  EXPECT_FALSE(GlobMatches("claude-[0-9]*", "claude-x"));
  EXPECT_TRUE(GlobMatches("a\\*b", "a*b"));
  EXPECT_FALSE(GlobMatches("a\\*b", "axb"));
  EXPECT_FALSE(IsGlob("gpt-4o"));
  EXPECT_TRUE(IsGlob("gpt-4o*"));
}

}  // namespace
}  // namespace terse::config
