// Survival checks on folded text: what the compressor kept is what the upstream LLM reads.
#include "eval/metrics.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"

namespace terse::eval {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f'; }

bool IsWordByte(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return (u >= '0' && u <= '9') || (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || u >= 0x80;
}

// A number may continue with ".5" or ",000": a match followed by such a piece is part of a
// longer number, not the number itself.
bool ContinuesNumber(std::string_view haystack, size_t end) {
  return end + 1 < haystack.size() && (haystack[end] == '.' || haystack[end] == ',') &&
         haystack[end + 1] >= '0' && haystack[end + 1] <= '9';
}

// Likewise a match preceded by "1." or "2," is the tail of a longer number.
bool EndsNumber(std::string_view haystack, size_t at) {
  return at >= 2 && (haystack[at - 1] == '.' || haystack[at - 1] == ',') &&
         haystack[at - 2] >= '0' && haystack[at - 2] <= '9';
}

}  // namespace

std::string FoldSpace(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool space = false;
  for (char c : text) {
    if (IsSpace(c)) {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

size_t CountWhole(std::string_view haystack, std::string_view needle) {
  if (needle.empty()) return 0;
  size_t count = 0;
  for (size_t at = haystack.find(needle); at != std::string_view::npos;
       at = haystack.find(needle, at + 1)) {
    const size_t end = at + needle.size();
    const bool glued_before = at > 0 && IsWordByte(needle.front()) && IsWordByte(haystack[at - 1]);
    const bool glued_after =
        end < haystack.size() && IsWordByte(needle.back()) && IsWordByte(haystack[end]);
    const bool longer_number =
        (needle.back() >= '0' && needle.back() <= '9' && ContinuesNumber(haystack, end)) ||
        (needle.front() >= '0' && needle.front() <= '9' && EndsNumber(haystack, at));
    if (!glued_before && !glued_after && !longer_number) ++count;
  }
  return count;
}

std::string OriginalPrompt(const Item& item) {
  std::vector<std::string> parts;
  if (!item.instruction.empty()) parts.push_back(item.instruction);
  for (const std::string& c : item.context) parts.push_back(c);
  if (!item.question.empty()) parts.push_back(item.question);
  return absl::StrJoin(parts, "\n\n");
}

ItemScore ScoreItem(const Item& item, const CompressedPrompt& compressed,
                    const compressor::TargetTokenizer& tokenizer) {
  ItemScore s;
  const std::string original = OriginalPrompt(item);
  s.original_tokens = tokenizer.Count(original);
  s.compressed_tokens =
      compressed.billed_prompt_tokens.value_or(tokenizer.Count(compressed.prompt));
  if (compressed.reply.has_value()) {
    // A reply is judged only: the prompt it answered is not known here.
    s.has_reply = !item.expected_reply.empty();
    s.reply_correct =
        s.has_reply &&
        absl::AsciiStrToLower(FoldSpace(*compressed.reply))
                .find(absl::AsciiStrToLower(FoldSpace(item.expected_reply))) != std::string::npos;
    s.question_intact = true;
    return s;
  }
  const std::string kept = FoldSpace(compressed.prompt);
  const std::string context = FoldSpace(absl::StrJoin(item.context, "\n\n"));

  if (!item.answer.empty()) {
    s.has_answer = true;
    s.answer_kept = CountWhole(kept, FoldSpace(item.answer)) > 0;
  }
  s.question_intact =
      item.question.empty() || kept.find(FoldSpace(item.question)) != std::string::npos;

  // Occurrences in the context against occurrences in the output, so a number that appears
  // three times and survives once counts one of three.
  const auto count_kept = [&](const std::vector<std::string>& needles, size_t& total,
                              size_t& survived) {
    for (const std::string& n : needles) {
      const std::string folded = FoldSpace(n);
      const size_t in_context = CountWhole(context, folded);
      total += in_context;
      survived += std::min(in_context, CountWhole(kept, folded));
    }
  };
  count_kept(item.numbers, s.numbers, s.numbers_kept);
  count_kept(item.entities, s.entities, s.entities_kept);

  // A demonstration keeps its answer when the answer number survives in that demonstration's
  // own compressed text; without per-item text, anywhere in the prompt.
  for (size_t i = 0; i < item.demo_answers.size(); ++i) {
    ++s.demo_answers;
    const std::string_view where =
        i < compressed.items.size() ? std::string_view(compressed.items[i]) : compressed.prompt;
    if (CountWhole(FoldSpace(where), FoldSpace(item.demo_answers[i])) > 0) ++s.demo_answers_kept;
  }
  return s;
}

}  // namespace terse::eval
