#include "eval/tasks.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "eval/task_words.h"
#include "tests/support/status_matchers.h"

namespace terse::eval {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::HasSubstr;

constexpr size_t kItems = 200;

// Every field of an item, for byte-for-byte comparisons.
std::string Dump(const Item& item) {
  std::ostringstream out;
  out << FamilyName(item.family) << '\x1f' << item.id << '\x1f' << item.instruction << '\x1f'
      << item.question << '\x1f' << item.answer << '\x1f' << AnswerKindName(item.answer_kind)
      << '\x1f' << item.answer_item << '\x1f' << item.expected_reply;
  for (const auto* list : {&item.context, &item.demo_answers, &item.numbers, &item.entities}) {
    out << '\x1e';
    for (const std::string& s : *list) out << s << '\x1f';
  }
  return out.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

size_t Words(const std::string& text) {
  std::istringstream in(text);
  size_t n = 0;
  for (std::string w; in >> w;) ++n;
  return n;
}

// The text of a multidoc_qa document after its "Document [N]" label, whose digits are structure.
std::string WithoutLabel(const Item& item, const std::string& context) {
  if (item.family != Family::kMultiDocQa) return context;
  return context.substr(context.find(']') + 1);
}

// --- names ---

TEST(TaskFamilyTest, NamesRoundTrip) {
  for (Family f : kAllFamilies) {
    const absl::StatusOr<Family> parsed = ParseFamily(FamilyName(f));
    ASSERT_THAT(parsed, IsOk());
    EXPECT_EQ(*parsed, f);
  }
  EXPECT_EQ(FamilyName(Family::kMultiDocQa), "multidoc_qa");
  EXPECT_EQ(FamilyName(Family::kFewShotMath), "fewshot_math");
  EXPECT_EQ(FamilyName(Family::kToolJson), "tool_json");
  EXPECT_EQ(FamilyName(Family::kMeeting), "meeting");
}

TEST(TaskFamilyTest, UnknownNameListsTheValidOnes) {
  EXPECT_THAT(ParseFamily("poetry"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("poetry"), HasSubstr("multidoc_qa"),
                                        HasSubstr("meeting"))));
  EXPECT_THAT(ParseFamily(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseFamily("Chat"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TaskFamilyTest, AnswerKindNames) {
  EXPECT_EQ(AnswerKindName(AnswerKind::kNumber), "number");
  EXPECT_EQ(AnswerKindName(AnswerKind::kOrganisation), "organisation");
  EXPECT_EQ(AnswerKindName(AnswerKind::kIdentifier), "identifier");
  EXPECT_EQ(AnswerKindName(AnswerKind::kOther), "other");
}

// --- determinism ---

TEST(TaskDeterminismTest, RngIsPinned) {
  // The stream must not depend on the platform or standard library.
  internal::Rng rng(1);
  EXPECT_EQ(rng.Next(), 12966619160104079557ULL);
  EXPECT_EQ(rng.Next(), 9600361134598540522ULL);
  EXPECT_EQ(rng.Next(), 10590380919521690900ULL);
  internal::Rng bounded(42);
  EXPECT_EQ(bounded.Below(10), 2u);
  EXPECT_EQ(bounded.Below(1000), 102u);
  EXPECT_EQ(bounded.Range(-5, 5), -3);
  EXPECT_EQ(internal::HashMix(1, 2), 3965022595533706929ULL);
}

TEST(TaskDeterminismTest, SameSeedSameBytes) {
  for (Family f : kAllFamilies) {
    const std::vector<Item> a = Generate(f, 12, 99);
    const std::vector<Item> b = Generate(f, 12, 99);
    ASSERT_EQ(a.size(), 12u);
    ASSERT_EQ(b.size(), 12u);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(Dump(a[i]), Dump(b[i])) << FamilyName(f);
  }
}

TEST(TaskDeterminismTest, SmallerCountIsAPrefix) {
  for (Family f : kAllFamilies) {
    const std::vector<Item> few = Generate(f, 5, 3);
    const std::vector<Item> many = Generate(f, 20, 3);
    ASSERT_EQ(many.size(), 20u);
    for (size_t i = 0; i < few.size(); ++i) {
      EXPECT_EQ(Dump(few[i]), Dump(many[i])) << FamilyName(f) << " " << i;
    }
  }
}

TEST(TaskDeterminismTest, SeedsAndFamiliesDiffer) {
  for (Family f : kAllFamilies) {
    const std::vector<Item> a = Generate(f, 5, 1);
    const std::vector<Item> b = Generate(f, 5, 2);
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_NE(a[i].context, b[i].context) << FamilyName(f) << " " << i;
    }
  }
  EXPECT_TRUE(Generate(Family::kChat, 0, 1).empty());
}

// --- contracts every family keeps ---

class TaskContractTest : public ::testing::TestWithParam<Family> {
 protected:
  static const std::vector<Item>& Items(Family f) {
    static auto* cache = new std::vector<std::vector<Item>>(std::size(kAllFamilies));
    auto& items = (*cache)[static_cast<size_t>(f)];
    if (items.empty()) items = Generate(f, kItems, 20240517);
    return items;
  }
};

TEST_P(TaskContractTest, ItemsAreWellFormed) {
  const Family f = GetParam();
  const std::vector<Item>& items = Items(f);
  ASSERT_EQ(items.size(), kItems);
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& item = items[i];
    SCOPED_TRACE(item.id);
    EXPECT_EQ(item.family, f);
    EXPECT_EQ(item.id, std::string(FamilyName(f)) + "-" + std::to_string(i));
    EXPECT_FALSE(item.instruction.empty());
    EXPECT_FALSE(item.question.empty());
    ASSERT_FALSE(item.context.empty());
    for (const std::string& text : item.context) {
      EXPECT_FALSE(text.empty());
      EXPECT_EQ(text.find("[[missing:"), std::string::npos) << text;
      EXPECT_EQ(text.find("[[bad:"), std::string::npos) << text;
    }
    EXPECT_EQ(item.question.find("[[missing:"), std::string::npos) << item.question;
  }
}

TEST_P(TaskContractTest, AnswerIsOnlyInItsItem) {
  for (const Item& item : Items(GetParam())) {
    SCOPED_TRACE(item.id);
    if (item.family == Family::kFewShotMath) {
      EXPECT_TRUE(item.answer.empty());
      EXPECT_EQ(item.answer_kind, AnswerKind::kOther);
      continue;
    }
    ASSERT_FALSE(item.answer.empty());
    EXPECT_NE(item.answer_kind, AnswerKind::kOther);
    ASSERT_LT(item.answer_item, item.context.size());
    for (size_t i = 0; i < item.context.size(); ++i) {
      EXPECT_EQ(item.context[i].find(item.answer) != std::string::npos, i == item.answer_item)
          << "answer \"" << item.answer << "\" in item " << i;
    }
    EXPECT_EQ(item.question.find(item.answer), std::string::npos) << item.question;
    EXPECT_EQ(item.instruction.find(item.answer), std::string::npos);
  }
}

TEST_P(TaskContractTest, QuestionIsNotLiftedFromTheContext) {
  for (const Item& item : Items(GetParam())) {
    for (const std::string& text : item.context) {
      EXPECT_EQ(text.find(item.question), std::string::npos) << item.id << ": " << item.question;
    }
  }
}

TEST_P(TaskContractTest, NumbersAndEntitiesOccurOnce) {
  for (const Item& item : Items(GetParam())) {
    SCOPED_TRACE(item.id);
    std::string joined;
    for (const std::string& text : item.context) joined += WithoutLabel(item, text) + "\n\n";
    std::set<std::string> seen;
    for (const std::string& n : item.numbers) {
      EXPECT_TRUE(seen.insert(n).second) << "duplicate " << n;
      EXPECT_NE(joined.find(n), std::string::npos) << "number " << n;
      EXPECT_TRUE(std::any_of(n.begin(), n.end(), [](unsigned char c) { return std::isdigit(c); }))
          << n;
    }
    for (const std::string& e : item.entities) {
      EXPECT_TRUE(seen.insert(e).second) << "duplicate " << e;
      EXPECT_NE(joined.find(e), std::string::npos) << "entity " << e;
      EXPECT_NE(e.find(' '), std::string::npos) << "not multi-word: " << e;
    }
    if (item.family != Family::kFewShotMath) {
      EXPECT_FALSE(item.numbers.empty());
    }
  }
}

// The numbers written in `text`, thousands separators dropped and signs left off: "-3 degrees",
// "$1,150." and "7.5" give "3", "1150" and "7.5".
std::set<std::string> WholeNumbers(const std::string& text) {
  static const std::regex kNumber("[0-9]+(?:[.,][0-9]+)*");
  std::set<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kNumber);
       it != std::sregex_iterator(); ++it) {
    std::string n = it->str();
    n.erase(std::remove(n.begin(), n.end(), ','), n.end());
    out.insert(n);
  }
  return out;
}

TEST_P(TaskContractTest, ExpectedReply) {
  static const std::regex kNumberString("-?[0-9]+(\\.[0-9]+)?");
  for (const Item& item : Items(GetParam())) {
    SCOPED_TRACE(item.id);
    ASSERT_FALSE(item.expected_reply.empty());
    if (item.family != Family::kFewShotMath) {
      EXPECT_EQ(item.expected_reply, item.answer);
      continue;
    }
    // The question's own answer, written as a demonstration's "The answer is N" writes N, and
    // written nowhere in the question (nor the instruction), not even without its sign.
    EXPECT_TRUE(std::regex_match(item.expected_reply, kNumberString)) << item.expected_reply;
    std::string unsigned_reply = item.expected_reply;
    if (unsigned_reply[0] == '-') unsigned_reply.erase(0, 1);
    EXPECT_EQ(WholeNumbers(item.question).count(unsigned_reply), 0u)
        << item.expected_reply << " in " << item.question;
    EXPECT_EQ(WholeNumbers(item.instruction).count(unsigned_reply), 0u);
  }
}

// Each digit of the context lies inside some recorded number: the list is complete.
TEST_P(TaskContractTest, EveryDigitIsInARecordedNumber) {
  for (const Item& item : Items(GetParam())) {
    for (const std::string& full : item.context) {
      const std::string text = WithoutLabel(item, full);
      std::vector<bool> covered(text.size(), false);
      for (const std::string& n : item.numbers) {
        for (size_t p = text.find(n); p != std::string::npos; p = text.find(n, p + 1)) {
          std::fill(covered.begin() + p, covered.begin() + p + n.size(), true);
        }
      }
      for (size_t k = 0; k < text.size(); ++k) {
        if (std::isdigit(static_cast<unsigned char>(text[k])) && !covered[k]) {
          ADD_FAILURE() << item.id << ": unrecorded digit in \""
                        << text.substr(k < 30 ? 0 : k - 30, 60) << "\"";
          break;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TaskFamilies, TaskContractTest, ::testing::ValuesIn(kAllFamilies),
                         [](const auto& info) { return std::string(FamilyName(info.param)); });

// --- per family ---

TEST(TaskMultiDocTest, DocumentsAndDistractors) {
  const std::vector<Item> items = Generate(Family::kMultiDocQa, kItems, 11);
  std::set<AnswerKind> kinds;
  size_t early = 0, late = 0;
  for (const Item& item : items) {
    SCOPED_TRACE(item.id);
    kinds.insert(item.answer_kind);
    ASSERT_GE(item.context.size(), 5u);
    ASSERT_LE(item.context.size(), 30u);
    (item.answer_item * 2 < item.context.size() ? early : late)++;
    for (size_t i = 0; i < item.context.size(); ++i) {
      const std::string& doc = item.context[i];
      const std::string label = "Document [" + std::to_string(i + 1) + "] (Title: ";
      ASSERT_EQ(doc.rfind(label, 0), 0u) << doc;
      const size_t body = doc.find(")\n");
      ASSERT_NE(body, std::string::npos);
      EXPECT_GE(Words(doc.substr(body + 2)), 50u) << doc;
      EXPECT_LE(Words(doc.substr(body + 2)), 180u) << doc;
    }
    // A distractor names the answer document's subject (a name in its title) without the answer.
    const std::string& answer_doc = item.context[item.answer_item];
    const std::string title = answer_doc.substr(0, answer_doc.find('\n'));
    bool echoed = false;
    for (const std::string& e : item.entities) {
      if (title.find(e) == std::string::npos) continue;
      for (size_t i = 0; i < item.context.size(); ++i) {
        echoed |= i != item.answer_item && item.context[i].find(e) != std::string::npos;
      }
    }
    EXPECT_TRUE(echoed) << title;
  }
  EXPECT_EQ(kinds.size(), 6u);
  EXPECT_GT(early, kItems / 4);
  EXPECT_GT(late, kItems / 4);
}

TEST(TaskMultiDocTest, KindsRotate) {
  const std::vector<Item> items = Generate(Family::kMultiDocQa, 6, 5);
  EXPECT_EQ(items[0].answer_kind, AnswerKind::kNumber);
  EXPECT_EQ(items[1].answer_kind, AnswerKind::kDate);
  EXPECT_EQ(items[2].answer_kind, AnswerKind::kAmount);
  EXPECT_EQ(items[3].answer_kind, AnswerKind::kPerson);
  EXPECT_EQ(items[4].answer_kind, AnswerKind::kOrganisation);
  EXPECT_EQ(items[5].answer_kind, AnswerKind::kPlace);
}

// Parses "$1,250", "-4", "3.5", "240." as a number.
bool ParseNumber(std::string token, double& value) {
  while (!token.empty() && (token.back() == '.' || token.back() == ',')) token.pop_back();
  bool negative = false;
  if (!token.empty() && token[0] == '-') {
    negative = true;
    token.erase(0, 1);
  }
  if (!token.empty() && token[0] == '$') token.erase(0, 1);
  std::string digits;
  for (char c : token) {
    if (c == ',') continue;
    if (!std::isdigit(static_cast<unsigned char>(c)) && c != '.') return false;
    digits += c;
  }
  if (digits.empty() || !std::isdigit(static_cast<unsigned char>(digits[0]))) return false;
  value = std::stod(digits) * (negative ? -1 : 1);
  return true;
}

// Checks every "a op b [op c ...] = r" in `text`, evaluated left to right.
void ExpectArithmeticHolds(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> tokens;
  for (std::string t; in >> t;) tokens.push_back(t);
  auto is_op = [](const std::string& t) { return t == "+" || t == "-" || t == "*" || t == "/"; };
  size_t checked = 0;
  for (size_t i = 1; i + 1 < tokens.size(); ++i) {
    if (tokens[i] != "=") continue;
    double result = 0, operand = 0;
    ASSERT_TRUE(ParseNumber(tokens[i + 1], result)) << text;
    size_t start = i - 1;
    ASSERT_TRUE(ParseNumber(tokens[start], operand)) << text;
    while (start >= 2 && is_op(tokens[start - 1]) && ParseNumber(tokens[start - 2], operand)) {
      start -= 2;
    }
    ASSERT_LT(start + 2, i) << "no operation before '=' in: " << text;
    double value = 0;
    ParseNumber(tokens[start], value);
    for (size_t k = start + 1; k + 1 < i; k += 2) {
      ParseNumber(tokens[k + 1], operand);
      const std::string& op = tokens[k];
      value = op == "+"   ? value + operand
              : op == "-" ? value - operand
              : op == "*" ? value * operand
                          : value / operand;
    }
    EXPECT_NEAR(value, result, 1e-9) << text;
    ++checked;
  }
  EXPECT_GT(checked, 0u) << text;
}

TEST(TaskFewShotTest, DemonstrationsAreWorkedAndCorrect) {
  const std::vector<Item> items = Generate(Family::kFewShotMath, kItems, 17);
  for (const Item& item : items) {
    SCOPED_TRACE(item.id);
    ASSERT_GE(item.context.size(), 4u);
    ASSERT_LE(item.context.size(), 8u);
    ASSERT_EQ(item.demo_answers.size(), item.context.size());
    for (size_t i = 0; i < item.context.size(); ++i) {
      const std::string& demo = item.context[i];
      EXPECT_EQ(demo.rfind("Question: ", 0), 0u) << demo;
      EXPECT_NE(demo.find("\nLet's think step by step\n"), std::string::npos) << demo;
      const std::string tail = "\nThe answer is " + item.demo_answers[i];
      ASSERT_GE(demo.size(), tail.size());
      EXPECT_EQ(demo.substr(demo.size() - tail.size()), tail) << demo;
      double answer = 0;
      EXPECT_TRUE(ParseNumber(item.demo_answers[i], answer)) << item.demo_answers[i];
      const size_t steps = demo.find("step by step\n") + 13;
      ExpectArithmeticHolds(demo.substr(steps, demo.size() - tail.size() - steps));
      // The final answer is the result of the last computation ("= $1,150" for "1150").
      const size_t last = demo.rfind("= ");
      ASSERT_NE(last, std::string::npos) << demo;
      std::istringstream rest(demo.substr(last + 2));
      std::string token;
      rest >> token;
      double result = 0;
      ASSERT_TRUE(ParseNumber(token, result)) << demo;
      EXPECT_DOUBLE_EQ(result, answer) << demo;
    }
    EXPECT_EQ(item.question.rfind("Question: ", 0), 0u);
    EXPECT_EQ(item.question.find("The answer is"), std::string::npos);
  }
}

TEST(TaskChatTest, TurnsAlternate) {
  const std::vector<Item> items = Generate(Family::kChat, kItems, 23);
  std::set<AnswerKind> kinds;
  for (const Item& item : items) {
    SCOPED_TRACE(item.id);
    kinds.insert(item.answer_kind);
    ASSERT_GE(item.context.size(), 4u);
    ASSERT_LE(item.context.size(), 12u);
    for (size_t i = 0; i < item.context.size(); ++i) {
      const bool user = item.context[i].rfind("User: ", 0) == 0;
      const bool assistant = item.context[i].rfind("Assistant: ", 0) == 0;
      EXPECT_TRUE(user != assistant) << item.context[i];
      // The history ends with the assistant; the question is the user's next message.
      EXPECT_EQ(assistant, (item.context.size() - i) % 2 == 1) << i;
    }
    EXPECT_EQ(item.question.rfind("User:", 0), std::string::npos);
  }
  EXPECT_EQ(kinds.size(), 5u);
}

TEST(TaskRagTest, LongDocuments) {
  const std::vector<Item> items = Generate(Family::kRag, 60, 29);
  for (const Item& item : items) {
    SCOPED_TRACE(item.id);
    ASSERT_GE(item.context.size(), 2u);
    ASSERT_LE(item.context.size(), 4u);
    for (const std::string& doc : item.context) {
      EXPECT_GE(Words(doc), 600u);
      EXPECT_LE(Words(doc), 1500u);
      size_t paragraphs = 0;
      for (size_t p = doc.find("\n\n"); p != std::string::npos; p = doc.find("\n\n", p + 2)) {
        ++paragraphs;
      }
      EXPECT_GE(paragraphs, 4u);
    }
  }
}

TEST(TaskToolJsonTest, EachItemIsAJsonObject) {
  const std::vector<Item> items = Generate(Family::kToolJson, kItems, 31);
  std::set<AnswerKind> kinds;
  for (const Item& item : items) {
    SCOPED_TRACE(item.id);
    kinds.insert(item.answer_kind);
    ASSERT_GE(item.context.size(), 2u);
    ASSERT_LE(item.context.size(), 6u);
    for (const std::string& text : item.context) {
      const size_t brace = text.find('{');
      ASSERT_NE(brace, std::string::npos) << text;
      if (brace > 0) {
        EXPECT_EQ(text.rfind("Tool result (", 0), 0u) << text;
      }
      const nlohmann::json json = nlohmann::json::parse(text.substr(brace), nullptr, false);
      ASSERT_FALSE(json.is_discarded()) << text;
      EXPECT_TRUE(json.is_object());
    }
  }
  EXPECT_EQ(kinds.size(), 7u);
}

TEST(TaskCodeTest, ProseAndFencedCode) {
  const std::vector<Item> items = Generate(Family::kCode, kItems, 37);
  for (const Item& item : items) {
    SCOPED_TRACE(item.id);
    ASSERT_GE(item.context.size(), 2u);
    ASSERT_LE(item.context.size(), 5u);
    EXPECT_TRUE(item.answer_kind == AnswerKind::kIdentifier ||
                item.answer_kind == AnswerKind::kNumber);
    for (const std::string& text : item.context) {
      const size_t open = text.find("\n\n```");
      ASSERT_NE(open, std::string::npos) << text;
      EXPECT_GT(Words(text.substr(0, open)), 20u);
      EXPECT_EQ(text.substr(text.size() - 4), "\n```");
    }
  }
}

TEST(TaskMeetingTest, TranscriptChunks) {
  const std::vector<Item> items = Generate(Family::kMeeting, kItems, 41);
  for (const Item& item : items) {
    SCOPED_TRACE(item.id);
    size_t total = 0;
    std::set<std::string> speakers;
    for (const std::string& chunk : item.context) {
      const std::vector<std::string> lines = Lines(chunk);
      EXPECT_GE(lines.size(), 5u);
      EXPECT_LE(lines.size(), 10u);
      total += lines.size();
      for (std::string line : lines) {
        if (line.rfind("[", 0) == 0) {
          ASSERT_GT(line.size(), 11u);
          EXPECT_EQ(line.substr(9, 2), "] ") << line;
          line = line.substr(11);
        }
        const size_t colon = line.find(": ");
        ASSERT_NE(colon, std::string::npos) << line;
        const std::string speaker = line.substr(0, colon);
        EXPECT_NE(speaker.find(' '), std::string::npos) << line;
        speakers.insert(speaker);
      }
    }
    EXPECT_GE(total, 20u);
    EXPECT_LE(total, 60u);
    EXPECT_GE(speakers.size(), 2u);
    EXPECT_LE(speakers.size(), 6u);
    // A person named as the answer is never a speaker (speakers appear in every chunk).
    EXPECT_EQ(speakers.count(item.answer), 0u);
  }
}

}  // namespace
}  // namespace terse::eval
