// The eval run: items of each family, compressed by each method at each rate, scored and
// aggregated; the results as a table, JSON and an SVG plot.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/json.h"
#include "compressor/chat_compression.h"
#include "compressor/compressor.h"
#include "eval/metrics.h"
#include "eval/tasks.h"

namespace terse::eval {

// How an item reaches the compressor, i.e. which of terse's faces is measured.
enum class Face {
  kPrompt,  // Compressor::Compress on the item's parts (`terse compress --json`, gRPC Compress)
  kChat,    // CompressChat on OpenAI messages (the HTTP and gRPC chat path, a route's policy)
};
std::string_view FaceName(Face face);  // "prompt" | "chat"
absl::StatusOr<Face> ParseFace(std::string_view name);

// The item as OpenAI chat messages: system = instruction; a chat family's turns as user and
// assistant messages; otherwise one user message holding the context items and the question,
// separated by blank lines.
Json ItemMessages(const Item& item);

// Compresses one item to a rate; thread-safe. Returns the prompt the upstream would receive.
using Method = std::function<absl::StatusOr<CompressedPrompt>(const Item& item, double rate)>;

struct NamedMethod {
  std::string name;  // "terse", "truncate", "random", or a recipe's name
  std::string face;  // FaceName, "gateway", or "-" for the baselines
  Method method;
  bool uncompressed = false;  // the reference: run once per item, reported at rate 1
};

// terse in process on one face. `policy.options` is the recipe; the rate is set per call (and
// min_prompt_tokens forced to 0, so every item is compressed).
Method TerseMethod(std::shared_ptr<compressor::Compressor> compressor,
                   compressor::ChatPolicy policy, Face face);

// The baselines at the same budget: instruction and question kept, the context cut to what
// remains of rate x the prompt's target tokens, by keeping its first tokens (truncate) or a
// uniformly random subset of them in order (random, seeded by the item id).
Method TruncateMethod(std::shared_ptr<const compressor::TargetTokenizer> tokenizer);
Method RandomDropMethod(std::shared_ptr<const compressor::TargetTokenizer> tokenizer,
                        uint64_t seed);

struct RunOptions {
  std::vector<Family> families;
  size_t items_per_family = 20;
  uint64_t seed = 1;
  std::vector<double> rates = {0.5, 0.33, 0.2, 0.1};
  int threads = 2;            // items compressed at once (the compressor batches their scoring)
  bool progress = true;       // a progress bar on stderr
  bool keep_outputs = false;  // RunResult::outputs: every compressed prompt, for inspection
};

// One (method, face, family, rate) cell: shares over its items.
struct Row {
  std::string method, face, family;
  double rate = 0;
  size_t items = 0;
  double achieved_rate = 0;     // sum of compressed over sum of original target tokens
  double worst_rate_error = 0;  // the largest |achieved / rate - 1| of one item
  double answer_kept = -1;      // -1: the family has no answers
  double numeric_answer_kept = -1, name_answer_kept = -1;  // by answer kind, -1: none
  double question_intact = 0;
  double demo_answers_kept = -1, numbers_kept = -1, entities_kept = -1;
  double reply_exact_match = -1;  // replies of a target LLM that contain the answer; -1: none
  double ms_per_item = 0;
  size_t errors = 0;  // items the method failed on (left out of the shares)
  std::string first_error;
};

struct RunResult {
  std::vector<Row> rows;
  Json outputs = Json::array();  // {method, face, family, rate, id, prompt | reply} per compression
  Json config;                   // what was run, for the JSON file
};

absl::StatusOr<RunResult> Evaluate(const RunOptions& options,
                                   const std::vector<NamedMethod>& methods);

// An item as one JSON object: the prompt's parts in `terse compress --json` form, and what must
// survive.
Json ItemJson(const Item& item);

// A fixed-width table: one block per method and face, a row per family and rate.
std::string FormatTable(const RunResult& result);
// {"config": ..., "rows": [...]}: the file two runs are compared by.
Json ResultJson(const RunResult& result);
// Retention (the answer, or demonstration answers for few-shot) against rate, a panel per
// family and a line per method.
std::string RetentionSvg(const RunResult& result);

}  // namespace terse::eval
