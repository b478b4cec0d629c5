// The deterministic task generators of `terse eval`: synthetic prompts shaped like real ones
// (multi-document QA, few-shot math, chat, RAG, tool results, code, meeting transcripts), each
// with the answer, numbers, names and demonstrations that compression must keep.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace terse::eval {

enum class Family { kMultiDocQa, kFewShotMath, kChat, kRag, kToolJson, kCode, kMeeting };
inline constexpr Family kAllFamilies[] = {Family::kMultiDocQa, Family::kFewShotMath, Family::kChat,
                                          Family::kRag,        Family::kToolJson,    Family::kCode,
                                          Family::kMeeting};

// "multidoc_qa", "fewshot_math", "chat", "rag", "tool_json", "code", "meeting".
std::string_view FamilyName(Family family);
// The inverse of FamilyName; InvalidArgument naming the valid names for anything else.
absl::StatusOr<Family> ParseFamily(std::string_view name);

// What kind of string the answer is (for per-kind breakdowns).
enum class AnswerKind {
  kNumber,
  kDate,
  kAmount,
  kPerson,
  kOrganisation,
  kPlace,
  kIdentifier,
  kOther
};
// "number", "date", "amount", "person", "organisation", "place", "identifier", "other".
std::string_view AnswerKindName(AnswerKind kind);

// One evaluation item: a prompt split the way terse's compressor splits it, plus what must survive.
struct Item {
  Family family;
  std::string id;                    // "<family>-<index>", e.g. "multidoc_qa-7"
  std::string instruction;           // system text
  std::vector<std::string> context;  // the compressible items: documents, demonstrations, turns...
  std::string question;              // the final ask (never contains the answer)
  // Gold answer, verbatim as it occurs in context[answer_item] and in no other context item, the
  // question or the instruction; empty for none (fewshot_math).
  std::string answer;
  AnswerKind answer_kind = AnswerKind::kOther;
  size_t answer_item = 0;  // index in context of the item that holds the answer
  // What a correct reply of the target LLM contains: the answer; for fewshot_math, the question's
  // own answer as the demonstrations would write it ("The answer is N" -> "N").
  std::string expected_reply;
  // fewshot_math: each demonstration's final answer as written ("42", "3.5"); else empty.
  std::vector<std::string> demo_answers;
  // Every number in the context items as written, with its sign, decimals, unit or currency when
  // attached ("$1,250.00", "3.5 km", "-4", "15%"); dates, times and identifiers that contain
  // digits ("14 March 2003", "00:12:31", "KX-4821") count as numbers. The "[3]" of multidoc_qa's
  // "Document [3]" labels is structure, not content, and is left out. One entry per distinct
  // string, in order of first insertion; each occurs verbatim in the context.
  std::vector<std::string> numbers;
  // Every multi-word proper name in the context: people, organisations, places, events, vessels
  // ("Idris Bramwell", "Northwind Logistics", "Port Elsinore"). One entry per distinct string.
  std::vector<std::string> entities;
};

// `count` items of one family: the same bytes for the same (family, count, seed) on every run and
// platform. Item i depends only on (family, seed, i), so a smaller count yields a prefix.
std::vector<Item> Generate(Family family, size_t count, uint64_t seed);

}  // namespace terse::eval
