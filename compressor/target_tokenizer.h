// Target-token counting: OpenAI's byte-level BPE (cl100k_base, o200k_base), so budgets are met in
// the tokens the upstream model bills, not in the tokens of terse's own scoring model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace terse::compressor {

// Counts and encodes text in a target LLM's tokens, with ids identical to the npm `tiktoken`
// package's `encode_ordinary` (whose regex classes characters by Unicode 16; characters assigned
// after that may be classed differently). Immutable after Load; every method is thread-safe.
//
// Input that is not valid UTF-8 never fails: each maximal ill-formed subsequence is replaced by
// U+FFFD first (the WHATWG rule, as Node's TextDecoder and JSON encoders do), so the ids are the
// ones the upstream sees after the request is serialised. Decode(Encode(x)) == x only for valid
// UTF-8 x.
class TargetTokenizer {
 public:
  // Loads <dir>/<name>.json, a tiktoken rank file (`pat_str`, `special_tokens`, `bpe_ranks`).
  // name: "cl100k_base" | "o200k_base" (any [A-Za-z0-9_]+ file of that format works). An empty
  // dir means $TERSE_TIKTOKEN_DIR when set, else the first of models/tiktoken and
  // tests/e2e/node_modules/tiktoken/encoders (relative to cwd) that holds the file.
  // Errors: InvalidArgument for a bad name, NotFound when no file exists, DataLoss when the
  // file is malformed or its regex does not compile.
  static absl::StatusOr<std::shared_ptr<const TargetTokenizer>> Load(std::string_view name,
                                                                     std::string dir = "");

  ~TargetTokenizer();
  TargetTokenizer(const TargetTokenizer&) = delete;
  TargetTokenizer& operator=(const TargetTokenizer&) = delete;

  // Special tokens are treated as ordinary text (like tiktoken's encode_ordinary).
  std::vector<uint32_t> Encode(std::string_view text) const;
  // == Encode(text).size(), without materialising the ids.
  size_t Count(std::string_view text) const;
  // Concatenated bytes of the ids; a special token's id yields its text; unknown ids are skipped.
  // The result may be partial UTF-8 when ids split a character.
  std::string Decode(std::span<const uint32_t> ids) const;

  // The encoding an upstream model bills in: o200k_base for gpt-4o*, gpt-4.1*, o1*, o3*, o4*,
  // gpt-5*, chatgpt-4o*; cl100k_base otherwise. A "provider/" prefix is ignored.
  static std::string_view EncodingForModel(std::string_view model);

  const std::string& name() const;
  // Number of ordinary (BPE) tokens; ids of special tokens are at or above it.
  size_t vocab_size() const;

 private:
  struct Impl;
  explicit TargetTokenizer(std::unique_ptr<const Impl> impl);

  std::unique_ptr<const Impl> impl_;
};

// Process-wide cache: each encoding is loaded once (from the default directory) and shared.
// A failed load is not cached, so a later call retries.
absl::StatusOr<std::shared_ptr<const TargetTokenizer>> GetTargetTokenizer(std::string_view name);

}  // namespace terse::compressor
