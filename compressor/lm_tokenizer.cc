// SentencePiece unigram encoding (the "optimized" Viterbi of sentencepiece 0.1.97) over the
// vocabulary exported by tools/lm_files.py. Scores are summed in float, like SentencePiece, so
// ties resolve the same way.
#include "compressor/lm_tokenizer.h"

#include <cfloat>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "base/utf8.h"

namespace terse::compressor {
namespace {

enum class PieceType { kNormal, kUnknown, kControl, kUserDefined, kUnused, kByte };

// SentencePiece's penalty of an unknown character below the lowest piece score.
constexpr float kUnkPenalty = 10.0f;
// SentencePiece's bonus that makes a user-defined piece win over any split of the same bytes.
constexpr float kUserDefinedBonus = 0.1f;
constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581

absl::StatusOr<PieceType> ParseType(const std::string& s) {
  if (s == "normal") return PieceType::kNormal;
  if (s == "unknown") return PieceType::kUnknown;
  if (s == "control") return PieceType::kControl;
  if (s == "user_defined") return PieceType::kUserDefined;
  if (s == "unused") return PieceType::kUnused;
  if (s == "byte") return PieceType::kByte;
  return absl::DataLossError(absl::StrCat("tokenizer.json: unknown piece type \"", s, "\""));
}

// Length of the UTF-8 character at text[pos], or 0 when the bytes there are ill-formed.
size_t Utf8CharLen(std::string_view text, size_t pos) {
  const int n = Utf8SequenceAt(text, pos);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

}  // namespace

struct LmTokenizer::Impl {
  struct Piece {
    std::string text;
    float score;
    PieceType type;
  };

  // Constant after Load.
  std::vector<Piece> pieces;
  int32_t unk_id = 0, bos_id = -1, eos_id = -1, pad_id = -1;
  bool byte_fallback = false;
  float unk_score = 0;    // min normal score - kUnkPenalty
  float max_score = 0;    // as SentencePiece computes it (see Load)
  int32_t byte_ids[256];  // id of "<0xXX>", or unk_id when absent
  // Byte trie over the matchable pieces: edge (node << 8 | byte) -> child node; node 0 is the
  // root. node_piece[node] is the piece id ending at that node, or -1.
  std::unordered_map<uint64_t, int32_t> edges;
  std::vector<int32_t> node_piece{-1};

  void Insert(std::string_view text, int32_t id) {
    int32_t node = 0;
    for (unsigned char c : text) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | c;
      auto it = edges.find(key);
      if (it == edges.end()) {
        it = edges.emplace(key, static_cast<int32_t>(node_piece.size())).first;
        node_piece.push_back(-1);
      }
      node = it->second;
    }
    node_piece[node] = id;
  }
};

LmTokenizer::LmTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LmTokenizer::~LmTokenizer() = default;

absl::StatusOr<std::unique_ptr<LmTokenizer>> LmTokenizer::Load(const std::string& model_dir) {
  const std::string path = model_dir + "/tokenizer.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream buf;
  buf << in.rdbuf();
  Json doc = Json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::DataLossError(absl::StrCat(path, " is not valid JSON"));
  }
  auto impl = std::make_unique<Impl>();
  int declared_size = -1;
  try {
    if (doc.value("format", "") != "terse-unigram-v1") {
      return absl::UnimplementedError(absl::StrCat(path, ": format must be \"terse-unigram-v1\""));
    }
    if (doc.value("normalization", "") != "identity" || doc.value("add_dummy_prefix", true) ||
        doc.value("remove_extra_whitespaces", true) || !doc.value("escape_whitespaces", false)) {
      return absl::UnimplementedError(
          absl::StrCat(path,
                       ": only identity normalization without dummy prefix or whitespace folding, "
                       "with escaped spaces, is supported"));
    }
    impl->byte_fallback = doc.at("byte_fallback").get<bool>();
    impl->unk_id = doc.at("unk_id").get<int32_t>();
    impl->bos_id = doc.at("bos_id").get<int32_t>();
    impl->eos_id = doc.at("eos_id").get<int32_t>();
    impl->pad_id = doc.at("pad_id").get<int32_t>();
    declared_size = doc.value("vocab_size", -1);
    for (const auto& p : doc.at("pieces")) {
      absl::StatusOr<PieceType> type = ParseType(p.at("type").get<std::string>());
      if (!type.ok()) return type.status();
      impl->pieces.push_back({p.at("piece").get<std::string>(), p.at("score").get<float>(), *type});
    }
  } catch (const Json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": ", e.what()));
  }
  const auto n = static_cast<int32_t>(impl->pieces.size());
  if (n == 0 || impl->unk_id < 0 || impl->unk_id >= n ||
      impl->pieces[impl->unk_id].type != PieceType::kUnknown || n != declared_size) {
    return absl::DataLossError(absl::StrCat(path, ": inconsistent vocabulary"));
  }
  // SentencePiece starts its maximum at FLT_MIN (the smallest positive float), not -FLT_MAX;
  // with log-probability scores it stays there. Reproduced so user-defined pieces score alike.
  float min_score = FLT_MAX;
  impl->max_score = FLT_MIN;
  std::unordered_map<std::string_view, int32_t> by_text;
  for (int32_t id = 0; id < n; ++id) {
    const Impl::Piece& p = impl->pieces[id];
    by_text.emplace(p.text, id);
    if (p.type == PieceType::kNormal) {
      min_score = std::min(min_score, p.score);
      impl->max_score = std::max(impl->max_score, p.score);
    }
    // Control, unknown and byte pieces never match text; unused ones are skipped when matched.
    if ((p.type == PieceType::kNormal || p.type == PieceType::kUserDefined) && !p.text.empty()) {
      impl->Insert(p.text, id);
    }
  }
  impl->unk_score = min_score - kUnkPenalty;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = by_text.find(name);
    impl->byte_ids[b] = it != by_text.end() && impl->pieces[it->second].type == PieceType::kByte
                            ? it->second
                            : impl->unk_id;
  }
  return std::unique_ptr<LmTokenizer>(new LmTokenizer(std::move(impl)));
}

absl::StatusOr<std::vector<LmToken>> LmTokenizer::Encode(std::string_view text) const {
  if (text.size() > std::numeric_limits<uint32_t>::max() / 4) {
    return absl::InvalidArgumentError("text too long to tokenize");
  }
  // Normalize: spaces become U+2581, everything else is kept; remember where each normalized
  // byte came from.
  std::string norm;
  std::vector<uint32_t> origin;  // origin[i]: input offset of normalized byte i; one past end
  norm.reserve(text.size() + text.size() / 4);
  origin.reserve(text.size() + text.size() / 4 + 1);
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = Utf8CharLen(text, pos);
    if (len == 0) {
      return absl::InvalidArgumentError(absl::StrCat("text is not valid UTF-8 at byte ", pos));
    }
    if (text[pos] == ' ') {
      norm.append(kSpaceSymbol);
      origin.insert(origin.end(), kSpaceSymbol.size(), static_cast<uint32_t>(pos));
    } else {
      norm.append(text.substr(pos, len));
      for (size_t k = 0; k < len; ++k) origin.push_back(static_cast<uint32_t>(pos + k));
    }
    pos += len;
  }
  origin.push_back(static_cast<uint32_t>(text.size()));

  // best[i]: the best segmentation of norm[0, i) ends with piece `id` starting at `start`.
  struct Node {
    int32_t id = -1;
    int64_t start = -1;
    float score = 0;
  };
  const size_t size = norm.size();
  std::vector<Node> best(size + 1);
  best[0].start = 0;
  const Impl& m = *impl_;
  for (size_t start = 0; start < size;) {
    const float base = best[start].score;
    const size_t char_len = Utf8CharLen(norm, start);  // valid: checked above
    bool has_single_char_piece = false;
    int32_t node = 0;
    for (size_t pos = start; pos < size; ++pos) {
      auto it =
          m.edges.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(norm[pos]));
      if (it == m.edges.end()) break;
      node = it->second;
      const int32_t id = m.node_piece[node];
      if (id < 0) continue;
      const size_t length = pos + 1 - start;
      const Impl::Piece& piece = m.pieces[id];
      const float score = piece.type == PieceType::kUserDefined
                              ? static_cast<float>(length) * m.max_score - kUserDefinedBonus
                              : piece.score;
      const float candidate = score + base;
      Node& target = best[pos + 1];
      if (target.start == -1 || candidate > target.score) {
        target = {id, static_cast<int64_t>(start), candidate};
      }
      if (length == char_len) has_single_char_piece = true;
    }
    if (!has_single_char_piece) {
      Node& target = best[start + char_len];
      const float candidate = m.unk_score + base;
      if (target.start == -1 || candidate > target.score) {
        target = {m.unk_id, static_cast<int64_t>(start), candidate};
      }
    }
    start += char_len;
  }

  std::vector<std::pair<size_t, size_t>> spans;  // normalized [start, end), back to front
  for (size_t end = size; end > 0; end = static_cast<size_t>(best[end].start)) {
    spans.emplace_back(static_cast<size_t>(best[end].start), end);
  }
  std::vector<LmToken> tokens;
  tokens.reserve(spans.size());
  for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
    const auto [start, end] = *it;
    const int32_t id = best[end].id;
    if (id == m.unk_id && m.byte_fallback) {
      // An unknown character: one byte piece per UTF-8 byte of its normalized form (never a
      // space, which is always in the vocabulary), each covering its own input byte.
      for (size_t k = start; k < end; ++k) {
        tokens.push_back(
            {m.byte_ids[static_cast<unsigned char>(norm[k])], origin[k], origin[k] + 1});
      }
    } else {
      tokens.push_back({id, origin[start], origin[end]});
    }
  }
  return tokens;
}

int32_t LmTokenizer::vocab_size() const { return static_cast<int32_t>(impl_->pieces.size()); }
int32_t LmTokenizer::bos_id() const { return impl_->bos_id; }
int32_t LmTokenizer::eos_id() const { return impl_->eos_id; }
int32_t LmTokenizer::pad_id() const { return impl_->pad_id; }
int32_t LmTokenizer::unk_id() const { return impl_->unk_id; }

std::string_view LmTokenizer::piece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return impl_->pieces[id].text;
}

}  // namespace terse::compressor
