// The scoring model's tokenizer: a SentencePiece unigram encoder written for terse, reading the
// vocabulary from <model_dir>/tokenizer.json (Debian's libsentencepiece cannot be linked next to
// gRPC and LibTorch).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace terse::compressor {

// One token of the scoring model and the input bytes it stands for: [begin, end) are byte
// offsets into the text given to Encode. Pieces cover the input exactly, in order, without gaps.
// A character missing from the vocabulary becomes one byte-fallback token per UTF-8 byte, each
// covering that single byte (so a lone token of such a run is not valid UTF-8 by itself).
struct LmToken {
  int32_t id;
  uint32_t begin;
  uint32_t end;
};

// Encodes text exactly as the Python SentencePiece (0.1.97) model the tokenizer.json was
// derived from (tools/lm_files.py): identity normalization, spaces as U+2581, no dummy prefix,
// Viterbi over piece scores, user-defined pieces preferred as SentencePiece does, byte fallback.
// Immutable after Load; every method is thread-safe.
class LmTokenizer {
 public:
  // Reads <model_dir>/tokenizer.json ("format": "terse-unigram-v1").
  // Errors: NotFound when the file is missing; DataLoss when it is malformed;
  // Unimplemented for options terse's encoder does not support (a normalization other than
  // identity, a dummy prefix, whitespace folding).
  static absl::StatusOr<std::unique_ptr<LmTokenizer>> Load(const std::string& model_dir);

  ~LmTokenizer();
  LmTokenizer(const LmTokenizer&) = delete;
  LmTokenizer& operator=(const LmTokenizer&) = delete;

  // The ids SentencePiece gives for `text`, with byte offsets. Empty text gives no tokens.
  // InvalidArgument when `text` is not valid UTF-8 (the message names the byte offset).
  absl::StatusOr<std::vector<LmToken>> Encode(std::string_view text) const;

  int32_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  int32_t unk_id() const;
  // The piece text of `id` (U+2581 for spaces, "<0x0A>" for byte pieces); empty if out of range.
  std::string_view piece(int32_t id) const;

 private:
  struct Impl;
  explicit LmTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace terse::compressor
