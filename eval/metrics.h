// What a compressed prompt kept of what an eval item needs: the answer, the question, the
// demonstrations' answers, numbers and names, and the achieved rate in target tokens.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/target_tokenizer.h"
#include "eval/tasks.h"

namespace terse::eval {

// The prompt as a compression face returned it. `items` holds the compressed text of each
// context item by original index when the face reports it (empty string: dropped); it may be
// empty, and then per-demonstration checks look at the whole `prompt`.
struct CompressedPrompt {
  std::string prompt;              // everything the upstream would be sent, as one text
  std::vector<std::string> items;  // per context item, when known
  // With a target LLM behind the face: its reply, and the prompt tokens it billed (then `prompt`
  // is unknown and the achieved rate is the upstream's count over this harness's).
  std::optional<std::string> reply;
  std::optional<size_t> billed_prompt_tokens;
};

struct ItemScore {
  size_t original_tokens = 0;    // target tokens of the uncompressed prompt
  size_t compressed_tokens = 0;  // target tokens of CompressedPrompt::prompt, counted here
  bool has_answer = false;
  bool answer_kept = false;      // the answer occurs whole in the compressed prompt
  bool question_intact = false;  // the question occurs verbatim in the compressed prompt
  size_t demo_answers = 0, demo_answers_kept = 0;
  size_t numbers = 0, numbers_kept = 0;    // occurrences, each number with its unit
  size_t entities = 0, entities_kept = 0;  // occurrences of multi-word names, whole
  bool has_reply = false;
  bool reply_correct = false;  // the reply contains the item's expected reply (folded, any case)
};

// The uncompressed prompt of an item as one text: instruction, items and question joined by blank
// lines, as the compressor joins its parts.
std::string OriginalPrompt(const Item& item);

// Scores one compression of `item`. Text is compared with runs of white space folded to one
// space, so a face that rejoins parts with other separators is not penalised. A number or name
// counts as kept only whole: not as a prefix or suffix of a longer number or word.
ItemScore ScoreItem(const Item& item, const CompressedPrompt& compressed,
                    const compressor::TargetTokenizer& tokenizer);

// Occurrences of `needle` in `haystack` (both already folded) that are not glued to a letter or
// digit on either side (a number's digits, a name's letters).
size_t CountWhole(std::string_view haystack, std::string_view needle);

// `text` with each run of white space replaced by one space, trimmed.
std::string FoldSpace(std::string_view text);

}  // namespace terse::eval
