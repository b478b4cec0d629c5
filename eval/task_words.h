// Internal to the task generators (eval/tasks.cc): the portable PRNG, the template writer that
// records every number and name it inserts, the word and template pools, and the content that is
// easier written as code (math problems, JSON tool results). Defined in eval/task_*.cc: words
// (PRNG, numbers, pools, writer), subjects, dialogues (chat, meeting), code, math and tools.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "eval/tasks.h"

namespace terse::eval::internal {

using Strings = std::vector<std::string_view>;

// This abseil's string_view is not std::string_view: convert when passing to absl::StrCat etc.
inline absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// splitmix64 finaliser: a well-mixed 64-bit hash of (a, b).
uint64_t HashMix(uint64_t a, uint64_t b);

// xoshiro256** seeded through splitmix64, with its own bounded draws (no std distributions, whose
// output differs between standard libraries): the same stream on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t Next();
  // Uniform in [0, n); n > 0. Rejection keeps it unbiased.
  uint64_t Below(uint64_t n);
  // Uniform in [lo, hi].
  int64_t Range(int64_t lo, int64_t hi);
  bool Percent(int p) { return Below(100) < static_cast<uint64_t>(p); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Below(v.size())];
  }
  template <typename T>
  void Shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[Below(i)]);
  }

 private:
  uint64_t s_[4];
};

// One of `options`, uniformly.
template <typename T>
T PickOf(Rng& r, std::initializer_list<T> options) {
  return *(options.begin() + r.Below(options.size()));
}

// Digits grouped by thousands: 1234567 -> "1,234,567".
std::string Commas(int64_t n);
// `scaled` / 10^places with exactly `places` decimals: (1750, 2) -> "17.50", (-45, 1) -> "-4.5".
std::string Fixed(int64_t scaled, int places);
// `v` zero-padded to `width` digits.
std::string Pad(int64_t v, int width);
// "2024-05-17" and "2024-05-17T14:35:00Z" (`minutes` after midnight).
std::string IsoDate(int64_t year, int month, int day);
std::string IsoTime(int64_t year, int month, int day, int64_t minutes);
// "two" .. "twelve"; digits for anything else.
std::string NumberWord(int n);
// Whitespace-separated words.
size_t WordCount(std::string_view text);

using Vars = std::map<std::string, std::string, std::less<>>;

// Expands templates and generates values, recording each number and multi-word name as it is
// made. Template syntax, with `{`/`}` (or `<%`/`%>` in code templates, which contain braces):
//   {a|b|c}   one alternative, itself a template      {name}   the variable `name`
//   {#gen:args}  a generated value (see Generate)     {=12}    literal text recorded as a number
//   {@tmpl}   the expansion recorded as a name        {^tmpl}  first letter upper-cased
//   {_tmpl} / {!tmpl}  all lower / all upper case
// A missing variable expands to "[[missing:name]]" so tests catch it.
class Writer {
 public:
  explicit Writer(Rng& rng) : rng_(rng) {}
  Rng& rng() { return rng_; }

  std::string Expand(std::string_view tmpl, const Vars& vars, std::string_view open = "{",
                     std::string_view close = "}");
  std::string Expand(std::string_view tmpl) { return Expand(tmpl, Vars{}); }
  // Runs "name=template" lines in order, each seeing the variables set before it.
  void Setup(const Strings& lines, Vars& vars);

  // One generated value, e.g. "int:100:900", "date:1950:2020", "person", "org:builder",
  // "unit:km:2:60:1", "id:LL-DDDD", "w:product". Retries until the value contains no reserved
  // string and, for names, was not made before in this item.
  std::string Generate(std::string_view spec);

  std::string Number(std::string s);  // records s as a number and returns it
  std::string Entity(std::string s);  // records s as a multi-word name and returns it
  // Marks `s` as a name made in this item; false when it already was.
  bool Claim(std::string s);
  // No value generated from now on may contain `s` (the answer, once chosen).
  void Reserve(std::string s);
  bool Clashes(std::string_view s) const;

  const std::vector<std::string>& numbers() const { return numbers_; }
  const std::vector<std::string>& entities() const { return entities_; }

 private:
  std::string Make(std::string_view kind, const std::vector<std::string_view>& args, bool& name,
                   int& record);
  std::string ExpandInner(std::string_view content, const Vars& vars, std::string_view open,
                          std::string_view close);

  Rng& rng_;
  std::vector<std::string> numbers_, entities_, reserved_;
  std::set<std::string, std::less<>> used_;
};

// A named pool of words or phrases ("product", "profession", ...); empty for an unknown name.
const Strings& Pool(std::string_view name);

// --- multidoc_qa and rag: subjects with facts ---

struct Fact {
  std::string_view key;
  AnswerKind kind;
  std::string_view value;  // template of the value, e.g. "{#year:1890:2016}"
  Strings says;            // statements of the fact; {v} is the value
  Strings asks;            // paraphrased questions, never containing {v}
};

struct Frame {
  std::string_view group;  // plural noun phrase for rag titles: "bridges and crossings"
  Strings setup;           // "var=template": must set name (a recorded name) and ref
  Strings titles;          // multidoc titles, each containing {name}
  std::vector<Fact> facts;
  Strings colour;  // sentences about the subject that answer nothing asked
};
const std::vector<Frame>& Frames();

struct Genre {
  Strings titles;  // with {group} and {region}
  Strings intro;
  Strings closing;
};
const std::vector<Genre>& Genres();
// Sentences opening a rag paragraph about a subject: {ref} is the subject.
const Strings& Segues();

// --- chat ---

struct Exchange {
  std::string_view user, assistant;
};
struct ChatFact {
  AnswerKind kind;
  std::string_view value;
  Exchange says;  // {v} is the value, in exactly one of the two turns
  Strings asks;
};
struct ChatScene {
  Strings setup;
  Strings greetings;  // assistant openers for histories of odd length
  std::vector<Exchange> talk;
  std::vector<ChatFact> facts;
};
const std::vector<ChatScene>& ChatScenes();

// --- meeting ---

struct MeetingFact {
  AnswerKind kind;
  std::string_view value;
  Strings says;
  Strings asks;
};
struct MeetingTopic {
  Strings setup;
  Strings lines;  // {other} is another speaker's first name
  std::vector<MeetingFact> facts;
};
const std::vector<MeetingTopic>& MeetingTopics();
// Lines any meeting may contain once each, and short acknowledgements that may repeat.
const Strings& MeetingSmallTalk();
const Strings& MeetingAcks();

// --- code ---

struct CodeAsk {
  std::string_view slot;  // variable holding the answer
  AnswerKind kind;
  Strings asks;
};
struct CodeModule {
  std::string_view lang;  // fence info string: python, cpp, yaml, bash
  Strings setup;
  Strings prose;          // explanation paragraphs ({} templates)
  std::string_view code;  // <% %> template
  std::vector<CodeAsk> asks;
};
const std::vector<CodeModule>& CodeModules();

// --- fewshot_math ---

struct Problem {
  std::string question;   // the word problem
  std::string reasoning;  // worked steps with the intermediate arithmetic
  std::string answer;     // the final number as written
};
inline constexpr int kMathTemplates = 16;
// A problem from template `which` (0 .. kMathTemplates - 1) with fresh numbers chosen so the
// arithmetic is exact; every number written is recorded.
Problem MathProblem(Writer& w, int which);

// --- tool_json ---

struct ToolAsk {
  std::string answer;  // a field's value as it appears in the JSON text, without quotes
  AnswerKind kind;
  std::string question;
};
struct ToolResult {
  std::string name;  // "get_order", "get_weather", ...
  std::string json;  // pretty-printed object
  std::vector<ToolAsk> asks;
};
// The result of a random tool (order, weather, flight, balance, search, employee, shipment).
ToolResult MakeToolResult(Writer& w);

// Instructions (system text) per family.
const Strings& Instructions(Family family);

}  // namespace terse::eval::internal
