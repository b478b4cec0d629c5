#include "eval/tasks.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "eval/task_words.h"

namespace terse::eval {
namespace {

using internal::Av;
using internal::Rng;
using internal::Strings;
using internal::Vars;
using internal::WordCount;
using internal::Writer;

constexpr std::string_view kFamilyNames[] = {"multidoc_qa", "fewshot_math", "chat",   "rag",
                                             "tool_json",   "code",         "meeting"};
constexpr std::string_view kKindNames[] = {"number",       "date",  "amount",     "person",
                                           "organisation", "place", "identifier", "other"};

std::string Join(const std::vector<std::string>& parts, std::string_view sep) {
  return absl::StrJoin(parts, Av(sep));
}

bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// True when `needle` occurs in `hay` as a whole token: not glued to a letter or digit, nor to
// "1." / ".5" (so "12" does not count inside "2012" or "1.12").
bool OccursAlone(std::string_view hay, std::string_view needle) {
  if (needle.empty()) return false;
  for (size_t p = hay.find(needle); p != std::string_view::npos; p = hay.find(needle, p + 1)) {
    const size_t e = p + needle.size();
    const bool before_ok =
        p == 0 || (!IsAlnum(hay[p - 1]) && !((hay[p - 1] == '.' || hay[p - 1] == ',') && p >= 2 &&
                                             IsDigit(hay[p - 2]) && IsDigit(needle[0])));
    const bool after_ok =
        e == hay.size() ||
        (!IsAlnum(hay[e]) && !((hay[e] == '.' || hay[e] == ',') && e + 1 < hay.size() &&
                               IsDigit(hay[e + 1]) && IsDigit(needle.back())));
    if (before_ok && after_ok) return true;
  }
  return false;
}

// True when `number` ("42", "-3", "$1,150", "7.5") is written in `text` as a whole number, with
// or without its sign, currency sign or thousands separators: "3" is in "-3 degrees" and "$3",
// "1150" in "1,150", but "12" is not in "120", "2012" or "1.12", nor "7" in "7.5".
bool WritesNumber(std::string_view text, std::string_view number) {
  std::string want;
  for (char c : number) {
    if (IsDigit(c) || c == '.') want += c;
  }
  if (want.empty()) return false;
  for (size_t p = 0; p < text.size();) {
    if (!IsDigit(text[p])) {
      ++p;
      continue;
    }
    std::string token;
    for (; p < text.size(); ++p) {
      const bool joiner =
          (text[p] == ',' || text[p] == '.') && p + 1 < text.size() && IsDigit(text[p + 1]);
      if (!IsDigit(text[p]) && !joiner) break;
      if (text[p] != ',') token += text[p];
    }
    if (token == want) return true;
  }
  return false;
}

// Recorded numbers and names, de-duplicated in order and kept only when some context item
// really contains them (a value may have been generated for a sentence that was not used).
std::vector<std::string> Present(const std::vector<std::string>& recorded,
                                 const std::vector<std::string>& context) {
  std::vector<std::string> out;
  for (const std::string& s : recorded) {
    if (std::find(out.begin(), out.end(), s) != out.end()) continue;
    for (const std::string& c : context) {
      if (OccursAlone(c, s)) {
        out.push_back(s);
        break;
      }
    }
  }
  return out;
}

// The answer contract of Item: in context[answer_item] only, never in the question or
// instruction; and the question is not lifted from any context item. fewshot_math has no answer
// in the context; its expected reply (the question's own answer) is in neither the question nor
// the instruction, a draw that happens to write it there being redrawn like any other.
bool Valid(const Item& item) {
  if (item.question.empty() || item.context.empty() || item.expected_reply.empty()) return false;
  for (const std::string& c : item.context) {
    if (c.find(item.question) != std::string::npos) return false;
  }
  if (item.family == Family::kFewShotMath) {
    return !WritesNumber(item.question, item.expected_reply) &&
           !WritesNumber(item.instruction, item.expected_reply);
  }
  if (item.answer.empty()) return true;
  if (item.answer_item >= item.context.size()) return false;
  for (size_t i = 0; i < item.context.size(); ++i) {
    const bool has = item.context[i].find(item.answer) != std::string::npos;
    if (has != (i == item.answer_item)) return false;
  }
  if (!OccursAlone(item.context[item.answer_item], item.answer)) return false;
  return item.question.find(item.answer) == std::string::npos &&
         item.instruction.find(item.answer) == std::string::npos;
}

// --- multidoc_qa and rag ---

struct Subject {
  const internal::Frame* frame = nullptr;
  Vars vars;
  std::vector<std::pair<std::string_view, std::string>> values;  // fact key -> value
  std::vector<std::pair<size_t, std::string>> colour;            // colour index -> its expansion
};

Subject NewSubject(Writer& w, const internal::Frame& frame) {
  Subject s;
  s.frame = &frame;
  w.Setup(frame.setup, s.vars);
  return s;
}

// The subject's value for `fact`, made on first use so later sentences agree with earlier ones.
const std::string& FactValue(Writer& w, Subject& s, const internal::Fact& fact) {
  for (auto& [key, value] : s.values) {
    if (key == fact.key) return value;
  }
  s.values.emplace_back(fact.key, w.Expand(fact.value, s.vars));
  return s.values.back().second;
}

// A colour sentence reads the same in every document about the subject, so two documents never
// contradict each other (two different chief executives, say).
std::string Colour(Writer& w, Subject& s, size_t i) {
  for (const auto& [index, text] : s.colour) {
    if (index == i) return text;
  }
  s.colour.emplace_back(i, w.Expand(s.frame->colour[i], s.vars));
  return s.colour.back().second;
}

// Templates already used in one scope (an item for multidoc_qa, a document for rag): colour
// sentences are used once per scope, and facts prefer statements not yet used, so documents
// about similar subjects do not repeat each other word for word.
using Seen = std::set<const char*>;

std::string Say(Writer& w, Subject& s, const internal::Fact& fact, Seen& seen) {
  std::vector<std::string_view> fresh;
  for (std::string_view t : fact.says) {
    if (seen.count(t.data()) == 0) fresh.push_back(t);
  }
  const std::string_view tmpl = w.rng().Pick(fresh.empty() ? fact.says : fresh);
  seen.insert(tmpl.data());
  Vars vars = s.vars;
  vars["v"] = FactValue(w, s, fact);
  return w.Expand(tmpl, vars);
}

// Sentences about `s` of about `target` words (never over `max`): `must` when given, then other
// facts (never the one keyed `skip`) and colour in random order. A sentence naming the subject
// comes first so the text reads as being about it.
std::vector<std::string> Sentences(Writer& w, Subject& s, const internal::Fact* must,
                                   std::string_view skip, size_t target, size_t max, Seen& seen) {
  Rng& r = w.rng();
  const internal::Frame& frame = *s.frame;
  std::string must_text = must != nullptr ? Say(w, s, *must, seen) : "";
  size_t words = WordCount(must_text);
  std::vector<std::pair<bool, size_t>> candidates;  // (is fact, index)
  for (size_t i = 0; i < frame.facts.size(); ++i) {
    if (frame.facts[i].key != skip && &frame.facts[i] != must) candidates.emplace_back(true, i);
  }
  for (size_t i = 0; i < frame.colour.size(); ++i) {
    if (seen.count(frame.colour[i].data()) == 0) candidates.emplace_back(false, i);
  }
  r.Shuffle(candidates);
  std::vector<std::string> out;
  for (const auto& [is_fact, i] : candidates) {
    if (words >= target) break;
    std::string sentence = is_fact ? Say(w, s, frame.facts[i], seen) : Colour(w, s, i);
    const size_t n = WordCount(sentence);
    if (words + n > max) continue;
    if (!is_fact) seen.insert(frame.colour[i].data());
    words += n;
    out.push_back(std::move(sentence));
  }
  const std::string& name = s.vars["name"];
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].find(name) != std::string::npos) {
      std::rotate(out.begin(), out.begin() + i, out.begin() + i + 1);
      break;
    }
  }
  if (must != nullptr) out.insert(out.begin() + r.Below(out.size() + 1), std::move(must_text));
  return out;
}

// The answer subject shared by multidoc_qa and rag: a fact of the item's kind, whose value is
// reserved before any other text exists.
struct Target {
  Subject subject;
  const internal::Fact* fact = nullptr;
  std::string answer;
};

Target NewTarget(Writer& w, size_t index) {
  static constexpr AnswerKind kKinds[] = {AnswerKind::kNumber,       AnswerKind::kDate,
                                          AnswerKind::kAmount,       AnswerKind::kPerson,
                                          AnswerKind::kOrganisation, AnswerKind::kPlace};
  const AnswerKind kind = kKinds[index % 6];
  std::vector<std::pair<const internal::Frame*, const internal::Fact*>> options;
  for (const internal::Frame& frame : internal::Frames()) {
    for (const internal::Fact& fact : frame.facts) {
      if (fact.kind == kind) options.emplace_back(&frame, &fact);
    }
  }
  const auto [frame, fact] = w.rng().Pick(options);
  Target t;
  t.fact = fact;
  t.answer = w.Expand(fact->value);
  w.Reserve(t.answer);
  t.subject = NewSubject(w, *frame);
  t.subject.values.emplace_back(fact->key, t.answer);
  return t;
}

Item MultiDoc(Writer& w, size_t index) {
  Rng& r = w.rng();
  Target t = NewTarget(w, index);
  const internal::Frame& frame = *t.subject.frame;
  const size_t n = r.Range(5, 30);
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  r.Shuffle(order);
  // order[0] holds the answer; the next 1-3 documents are about the same subject without it.
  const size_t echoes = r.Range(1, std::min<size_t>(3, n - 1));
  std::vector<int> role(n, 0);  // 0: other subject, 1: answer, 2: same subject
  role[order[0]] = 1;
  for (size_t i = 1; i <= echoes; ++i) role[order[i]] = 2;
  Item item;
  Seen seen;
  for (size_t i = 0; i < n; ++i) {
    Subject other;
    if (role[i] == 0) {
      other = NewSubject(w, r.Percent(40) ? frame : r.Pick(internal::Frames()));
    }
    Subject& s = role[i] == 0 ? other : t.subject;
    const std::vector<std::string> text =
        Sentences(w, s, role[i] == 1 ? t.fact : nullptr, role[i] == 2 ? t.fact->key : "",
                  r.Range(50, 170), 180, seen);
    const std::string title = w.Expand(r.Pick(s.frame->titles), s.vars);
    item.context.push_back(
        absl::StrCat("Document [", i + 1, "] (Title: ", title, ")\n", Join(text, " ")));
  }
  item.answer = t.answer;
  item.answer_kind = t.fact->kind;
  item.answer_item = order[0];
  item.question = w.Expand(r.Pick(t.fact->asks), t.subject.vars);
  return item;
}

// A rag paragraph about `s`. It always names the subject: when no sentence does, or now and then
// anyway, a segue sentence introduces it.
std::string Paragraph(Writer& w, Subject& s, const internal::Fact* must, std::string_view skip,
                      size_t max, Seen& seen) {
  Rng& r = w.rng();
  std::string segue = w.Expand(r.Pick(internal::Segues()), s.vars);
  const size_t budget = max - std::min(max - 40, WordCount(segue));
  std::vector<std::string> text =
      Sentences(w, s, must, skip, r.Range(std::min<size_t>(90, budget), budget), budget, seen);
  const bool named = !text.empty() && text[0].find(s.vars["name"]) != std::string::npos;
  if (!named || r.Percent(35)) text.insert(text.begin(), std::move(segue));
  return Join(text, " ");
}

Item Rag(Writer& w, size_t index) {
  Rng& r = w.rng();
  Target t = NewTarget(w, index);
  const internal::Frame& frame = *t.subject.frame;
  const size_t n = r.Range(2, 4);
  const size_t answer_doc = r.Below(n);
  const size_t echo_doc = (answer_doc + 1 + r.Below(n - 1)) % n;
  Item item;
  for (size_t d = 0; d < n; ++d) {
    const internal::Frame& theme =
        d == answer_doc || (d == echo_doc && r.Percent(50)) ? frame : r.Pick(internal::Frames());
    const internal::Genre& genre = r.Pick(internal::Genres());
    Vars doc_vars = {{"group", std::string(theme.group)},
                     {"region", w.Expand("{{#place}|the {#root} district}")}};
    const std::string title = w.Expand(r.Pick(genre.titles), doc_vars);
    std::vector<std::string_view> intro_lines = genre.intro;
    r.Shuffle(intro_lines);
    std::vector<std::string> intro;
    const size_t intro_count = std::min<size_t>(intro_lines.size(), r.Range(2, 3));
    for (size_t i = 0; i < intro_count; ++i) {
      intro.push_back(w.Expand(intro_lines[i], doc_vars));
    }
    Seen seen;
    std::string special;
    if (d == answer_doc) special = Paragraph(w, t.subject, t.fact, "", 170, seen);
    if (d == echo_doc) special = Paragraph(w, t.subject, nullptr, t.fact->key, 170, seen);
    const std::string closing = w.Expand(r.Pick(genre.closing), doc_vars);
    size_t words =
        WordCount(title) + WordCount(Join(intro, " ")) + WordCount(special) + WordCount(closing);
    const size_t target = r.Range(650, 1400);
    std::vector<std::string> body;
    while (words < target && words + 60 < 1470) {
      Subject s = NewSubject(w, r.Percent(50) ? theme : r.Pick(internal::Frames()));
      body.push_back(Paragraph(w, s, nullptr, "", std::min<size_t>(170, 1470 - words), seen));
      words += WordCount(body.back());
    }
    if (!special.empty()) body.insert(body.begin() + r.Below(body.size() + 1), special);
    item.context.push_back(
        absl::StrCat(title, "\n\n", Join(intro, " "), "\n\n", Join(body, "\n\n"), "\n\n", closing));
  }
  item.answer = t.answer;
  item.answer_kind = t.fact->kind;
  item.answer_item = answer_doc;
  item.question = w.Expand(r.Pick(t.fact->asks), t.subject.vars);
  return item;
}

// --- fewshot_math ---

Item FewShotMath(Writer& w, size_t /*index*/) {
  Rng& r = w.rng();
  std::vector<int> templates(internal::kMathTemplates);
  for (int i = 0; i < internal::kMathTemplates; ++i) templates[i] = i;
  r.Shuffle(templates);
  const size_t demos = r.Range(4, 8);
  Item item;
  for (size_t i = 0; i < demos; ++i) {
    const internal::Problem p = internal::MathProblem(w, templates[i]);
    item.context.push_back(absl::StrCat("Question: ", p.question, "\nLet's think step by step\n",
                                        p.reasoning, "\nThe answer is ", p.answer));
    item.demo_answers.push_back(p.answer);
  }
  const internal::Problem q =
      internal::MathProblem(w, templates[demos + r.Below(internal::kMathTemplates - demos)]);
  item.question = absl::StrCat("Question: ", q.question, "\nLet's think step by step");
  item.expected_reply = q.answer;
  return item;
}

// --- chat and meeting: one fact of the asked kind is the answer, the others are distractors ---

template <typename Fact>
std::pair<const Fact*, std::vector<const Fact*>> SplitFacts(const std::vector<Fact>& facts,
                                                            AnswerKind kind) {
  const Fact* fact = nullptr;
  std::vector<const Fact*> others;
  for (const Fact& f : facts) {
    if (f.kind == kind && fact == nullptr) {
      fact = &f;
    } else {
      others.push_back(&f);
    }
  }
  return {fact, std::move(others)};
}

// An item whose answer is `value` expanded and reserved before any other text is written, so
// nothing written later can repeat it.
template <typename Template>
Item ReserveAnswer(Writer& w, const Template& value, AnswerKind kind) {
  Item item;
  item.answer = w.Expand(value);
  w.Reserve(item.answer);
  item.answer_kind = kind;
  return item;
}

Item Chat(Writer& w, size_t index) {
  Rng& r = w.rng();
  static constexpr AnswerKind kKinds[] = {AnswerKind::kIdentifier, AnswerKind::kDate,
                                          AnswerKind::kAmount, AnswerKind::kPerson,
                                          AnswerKind::kPlace};
  const AnswerKind kind = kKinds[index % 5];
  const internal::ChatScene& scene = r.Pick(internal::ChatScenes());
  auto [fact, others] = SplitFacts(scene.facts, kind);
  Item item = ReserveAnswer(w, fact->value, kind);
  Vars vars;
  w.Setup(scene.setup, vars);
  const size_t turns = r.Range(4, 12);
  const size_t exchanges = turns / 2;
  // One exchange states the answer, up to two state other facts, the rest (at least one) is
  // related talk.
  struct Slot {
    const internal::Exchange* exchange;
    std::string value;
  };
  std::vector<Slot> slots = {{&fact->says, item.answer}};
  r.Shuffle(others);
  const size_t distractors = r.Range(0, std::min<size_t>(2, exchanges - 2));
  for (size_t i = 0; i < distractors; ++i) {
    slots.push_back({&others[i]->says, w.Expand(others[i]->value)});
  }
  std::vector<const internal::Exchange*> talk;
  for (const internal::Exchange& e : scene.talk) talk.push_back(&e);
  r.Shuffle(talk);
  // At least one exchange of small talk carries numbers of its own.
  auto numeric = [](const internal::Exchange* e) {
    for (std::string_view slot :
         {"{#num", "{#int", "{#price", "{#cash", "{#pct", "{#date", "{#dec", "{#unit", "{#time"}) {
      if (e->user.find(slot) != std::string_view::npos ||
          e->assistant.find(slot) != std::string_view::npos) {
        return true;
      }
    }
    return false;
  };
  const auto first_numeric = std::find_if(talk.begin(), talk.end(), numeric);
  if (first_numeric != talk.end()) std::rotate(talk.begin(), first_numeric, first_numeric + 1);
  for (size_t i = 0; slots.size() < exchanges && i < talk.size(); ++i) {
    slots.push_back({talk[i], ""});
  }
  r.Shuffle(slots);
  if (turns % 2 == 1) {
    item.context.push_back("Assistant: " + w.Expand(r.Pick(scene.greetings), vars));
  }
  for (const Slot& slot : slots) {
    Vars turn_vars = vars;
    turn_vars["v"] = slot.value;
    const bool answer_here = slot.exchange == &fact->says;
    if (answer_here && slot.exchange->user.find("{v}") != std::string_view::npos) {
      item.answer_item = item.context.size();
    }
    item.context.push_back("User: " + w.Expand(slot.exchange->user, turn_vars));
    if (answer_here && slot.exchange->user.find("{v}") == std::string_view::npos) {
      item.answer_item = item.context.size();
    }
    item.context.push_back("Assistant: " + w.Expand(slot.exchange->assistant, turn_vars));
  }
  item.question = w.Expand(r.Pick(fact->asks), vars);
  return item;
}

// --- meeting ---

Item Meeting(Writer& w, size_t index) {
  Rng& r = w.rng();
  static constexpr AnswerKind kKinds[] = {AnswerKind::kPerson, AnswerKind::kDate,
                                          AnswerKind::kAmount, AnswerKind::kNumber};
  const AnswerKind kind = kKinds[index % 4];
  const internal::MeetingTopic& topic = r.Pick(internal::MeetingTopics());
  auto [fact, others] = SplitFacts(topic.facts, kind);
  Item item = ReserveAnswer(w, fact->value, kind);
  Vars vars;
  w.Setup(topic.setup, vars);
  // Speakers are made after the reservation, so a decided-on person is never one of them.
  std::vector<std::string> speakers(r.Range(3, 6));
  for (std::string& s : speakers) s = w.Generate("person");
  const size_t lines = r.Range(20, 60);
  const size_t answer_line = r.Below(lines);
  // Utterance per line: the fact, the other facts (each half the time), then topic lines and
  // small talk, each used at most once, with short acknowledgements between them.
  std::vector<std::pair<std::string_view, std::string>> plan(lines);  // template, {v}
  plan[answer_line] = {r.Pick(fact->says), item.answer};
  std::vector<size_t> free;
  for (size_t i = 0; i < lines; ++i) {
    if (i != answer_line) free.push_back(i);
  }
  r.Shuffle(free);
  size_t next = 0;
  for (const internal::MeetingFact* f : others) {
    if (r.Percent(50)) plan[free[next++]] = {r.Pick(f->says), w.Expand(f->value)};
  }
  std::vector<std::string_view> topic_lines = topic.lines,
                                small_talk = internal::MeetingSmallTalk();
  r.Shuffle(topic_lines);
  r.Shuffle(small_talk);
  for (; next < free.size(); ++next) {
    const uint64_t roll = r.Below(100);
    std::vector<std::string_view>* pool = nullptr;
    if (roll >= 20) {
      pool = roll < 65 && !topic_lines.empty() ? &topic_lines
             : !small_talk.empty()             ? &small_talk
             : !topic_lines.empty()            ? &topic_lines
                                               : nullptr;
    }
    if (pool == nullptr) {
      plan[free[next]] = {r.Pick(internal::MeetingAcks()), ""};
      continue;
    }
    plan[free[next]] = {pool->back(), ""};
    pool->pop_back();
  }
  const bool stamps = r.Percent(50);
  int64_t clock = r.Range(0, 900);
  size_t last = speakers.size();
  std::vector<std::string> text;
  for (size_t i = 0; i < lines; ++i) {
    size_t who = r.Below(speakers.size());
    if (who == last) who = (who + 1) % speakers.size();
    last = who;
    const size_t other = (who + 1 + r.Below(speakers.size() - 1)) % speakers.size();
    Vars line_vars = vars;
    line_vars["v"] = plan[i].second;
    line_vars["other"] = speakers[other].substr(0, speakers[other].find(' '));
    std::string prefix;
    if (stamps) {
      std::string ts;
      do {
        clock += r.Range(4, 75);
        ts = absl::StrCat(internal::Pad(clock / 3600, 2), ":", internal::Pad(clock / 60 % 60, 2),
                          ":", internal::Pad(clock % 60, 2));
      } while (w.Clashes(ts));
      prefix = absl::StrCat("[", w.Number(ts), "] ");
    }
    text.push_back(absl::StrCat(prefix, speakers[who], ": ", w.Expand(plan[i].first, line_vars)));
  }
  // Chunks of 5-10 lines; each leaves at least 5 for the rest.
  size_t start = 0;
  while (start < lines) {
    const size_t left = lines - start;
    const size_t take = left <= 10 ? left : r.Range(5, std::min<size_t>(10, left - 5));
    if (answer_line >= start && answer_line < start + take) {
      item.answer_item = item.context.size();
    }
    item.context.push_back(
        Join(std::vector<std::string>(text.begin() + start, text.begin() + start + take), "\n"));
    start += take;
  }
  item.question = w.Expand(r.Pick(fact->asks), vars);
  return item;
}

// --- code ---

Item Code(Writer& w, size_t index) {
  Rng& r = w.rng();
  const auto& modules = internal::CodeModules();
  std::vector<size_t> order(modules.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  r.Shuffle(order);
  const size_t n = r.Range(2, 5);
  const size_t answer_pos = r.Below(n);
  // The answer module is written first so that its value can be reserved before the others.
  std::vector<std::string> texts(n);
  Item item;
  const AnswerKind want = index % 2 == 0 ? AnswerKind::kIdentifier : AnswerKind::kNumber;
  for (size_t k = 0; k < n; ++k) {
    const size_t pos = k == 0 ? answer_pos : (k <= answer_pos ? k - 1 : k);
    const internal::CodeModule& m = modules[order[k]];
    Vars vars;
    w.Setup(m.setup, vars);
    if (k == 0) {
      std::vector<const internal::CodeAsk*> asks;
      for (const internal::CodeAsk& a : m.asks) {
        if (a.kind == want) asks.push_back(&a);
      }
      if (asks.empty()) {
        for (const internal::CodeAsk& a : m.asks) asks.push_back(&a);
      }
      const internal::CodeAsk& ask = *r.Pick(asks);
      item.answer = vars[std::string(ask.slot)];
      item.answer_kind = ask.kind;
      item.answer_item = pos;
      item.question = w.Expand(r.Pick(ask.asks), vars);
      w.Reserve(item.answer);
    }
    texts[pos] = absl::StrCat(w.Expand(r.Pick(m.prose), vars), "\n\n```", Av(m.lang), "\n",
                              w.Expand(m.code, vars, "<%", "%>"), "\n```");
  }
  item.context = std::move(texts);
  return item;
}

// --- tool_json ---

Item ToolJson(Writer& w, size_t index) {
  Rng& r = w.rng();
  static constexpr AnswerKind kKinds[] = {
      AnswerKind::kIdentifier, AnswerKind::kOrganisation, AnswerKind::kDate,  AnswerKind::kAmount,
      AnswerKind::kPerson,     AnswerKind::kPlace,        AnswerKind::kNumber};
  const AnswerKind want = kKinds[index % 7];
  // The answer's tool comes first so its value is reserved before the others are made.
  internal::ToolResult first;
  std::vector<const internal::ToolAsk*> asks;
  for (int tries = 0; tries < 20 && asks.empty(); ++tries) {
    first = internal::MakeToolResult(w);
    for (const internal::ToolAsk& a : first.asks) {
      if (a.kind == want) asks.push_back(&a);
    }
  }
  if (asks.empty()) asks.push_back(&first.asks[0]);
  const internal::ToolAsk ask = *r.Pick(asks);
  w.Reserve(ask.answer);
  const size_t n = r.Range(2, 6);
  const size_t answer_pos = r.Below(n);
  const bool labelled = r.Percent(60);
  Item item;
  for (size_t i = 0; i < n; ++i) {
    const internal::ToolResult tool = i == answer_pos ? first : internal::MakeToolResult(w);
    item.context.push_back(
        absl::StrCat(labelled ? absl::StrCat("Tool result (", tool.name, "):\n") : "", tool.json));
  }
  item.answer = ask.answer;
  item.answer_kind = ask.kind;
  item.answer_item = answer_pos;
  item.question = ask.question;
  return item;
}

Item Build(Family family, Writer& w, size_t index) {
  switch (family) {
    case Family::kMultiDocQa:
      return MultiDoc(w, index);
    case Family::kFewShotMath:
      return FewShotMath(w, index);
    case Family::kChat:
      return Chat(w, index);
    case Family::kRag:
      return Rag(w, index);
    case Family::kToolJson:
      return ToolJson(w, index);
    case Family::kCode:
      return Code(w, index);
    case Family::kMeeting:
      return Meeting(w, index);
  }
  return {};
}

Item GenerateOne(Family family, uint64_t seed, size_t index) {
  const uint64_t base =
      internal::HashMix(internal::HashMix(seed, static_cast<uint64_t>(family) + 1), index);
  Item item;
  // A draw that breaks the answer contract (a value repeated by chance) is redrawn; the attempt
  // number is part of the seed, so the result is still a function of (family, seed, index).
  for (uint64_t attempt = 0; attempt < 64; ++attempt) {
    Rng rng(internal::HashMix(base, attempt));
    Writer w(rng);
    item = Build(family, w, index);
    item.family = family;
    item.id = absl::StrCat(Av(FamilyName(family)), "-", index);
    item.instruction = std::string(rng.Pick(internal::Instructions(family)));
    item.numbers = Present(w.numbers(), item.context);
    item.entities = Present(w.entities(), item.context);
    if (item.expected_reply.empty()) item.expected_reply = item.answer;
    if (Valid(item)) break;
  }
  return item;
}

}  // namespace

std::string_view FamilyName(Family family) { return kFamilyNames[static_cast<size_t>(family)]; }

absl::StatusOr<Family> ParseFamily(std::string_view name) {
  for (Family f : kAllFamilies) {
    if (FamilyName(f) == name) return f;
  }
  std::vector<std::string> names;
  for (std::string_view n : kFamilyNames) names.emplace_back(n);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown task family \"", Av(name), "\"; valid families: ", Join(names, ", ")));
}

std::string_view AnswerKindName(AnswerKind kind) { return kKindNames[static_cast<size_t>(kind)]; }

std::vector<Item> Generate(Family family, size_t count, uint64_t seed) {
  std::vector<Item> items;
  items.reserve(count);
  for (size_t i = 0; i < count; ++i) items.push_back(GenerateOne(family, seed, i));
  return items;
}

}  // namespace terse::eval
