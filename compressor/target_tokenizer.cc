// TargetTokenizer: loading tiktoken rank files, PCRE2 pre-tokenization, UTF-8 repair, the cache.
#include "compressor/target_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "compressor/bpe_ranks.h"
#include "compressor/target_tokenizer_text.h"

namespace terse::compressor {
namespace {

// Match data holds only the ovector, so one per thread serves every tokenizer. The JIT stack is
// larger than PCRE2's 32 KiB default so huge runs of one character class cannot exhaust it.
class ThreadMatchState {
 public:
  ThreadMatchState()
      : data_(pcre2_match_data_create(1, nullptr)),
        jit_stack_(pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr)),
        context_(pcre2_match_context_create(nullptr)) {
    if (context_ != nullptr && jit_stack_ != nullptr) {
      pcre2_jit_stack_assign(context_, nullptr, jit_stack_);
    }
  }
  ~ThreadMatchState() {
    pcre2_match_context_free(context_);
    pcre2_jit_stack_free(jit_stack_);
    pcre2_match_data_free(data_);
  }
  ThreadMatchState(const ThreadMatchState&) = delete;
  ThreadMatchState& operator=(const ThreadMatchState&) = delete;

  pcre2_match_data* data() { return data_; }
  pcre2_match_context* context() { return context_; }

 private:
  pcre2_match_data* data_;
  pcre2_jit_stack* jit_stack_;
  pcre2_match_context* context_;
};

ThreadMatchState& MatchState() {
  thread_local ThreadMatchState state;
  return state;
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

bool FileExists(const std::string& path) { return std::ifstream(path).good(); }

absl::StatusOr<std::string> ResolvePath(std::string_view name, const std::string& dir) {
  const std::string file = std::string(name) + ".json";
  std::vector<std::string> candidates;
  if (!dir.empty()) {
    candidates.push_back(dir);
  } else if (const char* env = std::getenv("TERSE_TIKTOKEN_DIR"); env != nullptr && *env) {
    candidates.push_back(env);
  } else {
    candidates = {"models/tiktoken", "tests/e2e/node_modules/tiktoken/encoders"};
  }
  std::string tried;
  for (const std::string& d : candidates) {
    std::string path = absl::StrCat(d, "/", file);
    if (FileExists(path)) return path;
    absl::StrAppend(&tried, tried.empty() ? "" : ", ", path);
  }
  return absl::NotFoundError(
      absl::StrCat("tiktoken rank file not found (tried ", tried, "); run tools/bootstrap.sh"));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return std::move(out).str();
}

// One compiled pre-tokenization pattern. Matching is thread-safe (match data is per thread).
class CompiledPattern {
 public:
  // DataLoss when the pattern does not compile.
  static absl::StatusOr<std::unique_ptr<const CompiledPattern>> Compile(
      const std::string& pattern) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof(message));
      return absl::DataLossError(absl::StrCat("pat_str does not compile at offset ", error_offset,
                                              ": ", reinterpret_cast<const char*>(message)));
    }
    // Without JIT (a build or platform without it) the interpreter gives the same matches.
    const bool jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    return std::unique_ptr<const CompiledPattern>(new CompiledPattern(code, jit));
  }
  ~CompiledPattern() { pcre2_code_free(code_); }
  CompiledPattern(const CompiledPattern&) = delete;
  CompiledPattern& operator=(const CompiledPattern&) = delete;

  // Calls f(piece) for each pre-token of valid UTF-8 `text`, left to right. Like tiktoken's
  // find_iter, text no alternative matches is skipped (the patterns leave none).
  template <typename F>
  void ForEachPiece(std::string_view text, F&& f) const {
    ThreadMatchState& state = MatchState();
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t offset = 0;
    while (offset < text.size()) {
      int rc = jit_ ? pcre2_jit_match(code_, subject, text.size(), offset, 0, state.data(),
                                      state.context())
                    : pcre2_match(code_, subject, text.size(), offset, PCRE2_NO_UTF_CHECK,
                                  state.data(), state.context());
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
        // Fall back to the interpreter, which keeps its backtracking state on the heap.
        rc = pcre2_match(code_, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, state.data(),
                         state.context());
      }
      if (rc < 0) {
        // No further match (or a resource limit): what is left is one piece, so no byte is
        // lost. The shipped patterns match every character, so this is a safety net only.
        f(text.substr(offset));
        return;
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(state.data());
      const size_t begin = ov[0];
      size_t end = ov[1];
      if (end == begin) {
        // An empty match cannot make progress; step over one character.
        end = begin + 1;
        while (end < text.size() && (static_cast<uint8_t>(text[end]) & 0xC0) == 0x80) ++end;
        offset = end;
        continue;
      }
      f(text.substr(begin, end - begin));
      offset = end;
    }
  }

 private:
  CompiledPattern(pcre2_code* code, bool jit) : code_(code), jit_(jit) {}

  pcre2_code* code_;
  bool jit_;
};

}  // namespace

struct TargetTokenizer::Impl {
  // Repairs `text` when it is not valid UTF-8 (see the class comment), then pre-tokenizes it
  // with the pattern it needs.
  template <typename F>
  void ForEachPiece(std::string_view text, F&& f) const {
    std::string repaired;
    if (!IsValidUtf8(text)) {
      repaired = ReplaceInvalidUtf8(text);
      text = repaired;
    }
    const CompiledPattern& p = HasCodePointsNewerThanPcre2(text) ? *unicode16_pattern : *pattern;
    p.ForEachPiece(text, f);
  }

  std::string name;
  BpeRanks ranks;
  // The same pattern twice: with PCRE2's own categories (fast), and with the code points
  // Unicode 15 and 16 added to them (for the rare text that holds some).
  std::unique_ptr<const CompiledPattern> pattern;
  std::unique_ptr<const CompiledPattern> unicode16_pattern;
  std::vector<std::pair<uint32_t, std::string>> special_tokens;  // id -> text, for Decode
};

TargetTokenizer::TargetTokenizer(std::unique_ptr<const Impl> impl) : impl_(std::move(impl)) {}
TargetTokenizer::~TargetTokenizer() = default;

absl::StatusOr<std::shared_ptr<const TargetTokenizer>> TargetTokenizer::Load(std::string_view name,
                                                                             std::string dir) {
  if (!ValidName(name)) {
    return absl::InvalidArgumentError("bad tiktoken encoding name '" + std::string(name) +
                                      "' (want e.g. cl100k_base)");
  }
  ASSIGN_OR_RETURN(const std::string path, ResolvePath(name, dir));
  ASSIGN_OR_RETURN(const std::string contents, ReadFile(path));
  const Json json = Json::parse(contents, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": not a JSON object"));
  }
  auto string_field = [&](const char* key) -> const std::string* {
    auto it = json.find(key);
    return it != json.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
  };
  const std::string* pat_str = string_field("pat_str");
  const std::string* bpe_ranks = string_field("bpe_ranks");
  if (pat_str == nullptr || bpe_ranks == nullptr) {
    return absl::DataLossError(absl::StrCat(path, ": needs string fields pat_str and bpe_ranks"));
  }

  auto impl = std::make_unique<Impl>();
  impl->name = std::string(name);
  auto ranks = BpeRanks::Parse(*bpe_ranks);
  if (!ranks.ok()) {
    return absl::DataLossError(absl::StrCat(path, ": ", ranks.status().message()));
  }
  impl->ranks = std::move(ranks).value();

  if (auto it = json.find("special_tokens"); it != json.end() && it->is_object()) {
    for (const auto& [text, id] : it->items()) {
      if (!id.is_number_unsigned()) {
        return absl::DataLossError(absl::StrCat(path, ": special token ", text, " has no id"));
      }
      impl->special_tokens.emplace_back(id.get<uint32_t>(), text);
    }
  }

  for (const bool unicode16 : {false, true}) {
    auto pattern = RewriteTiktokenPattern(*pat_str, unicode16);
    if (!pattern.ok()) {
      return absl::DataLossError(absl::StrCat(path, ": pat_str: ", pattern.status().message()));
    }
    auto compiled = CompiledPattern::Compile(*pattern);
    if (!compiled.ok()) {
      return absl::DataLossError(absl::StrCat(path, ": ", compiled.status().message()));
    }
    (unicode16 ? impl->unicode16_pattern : impl->pattern) = std::move(compiled).value();
  }
  return std::shared_ptr<const TargetTokenizer>(new TargetTokenizer(std::move(impl)));
}

std::vector<uint32_t> TargetTokenizer::Encode(std::string_view text) const {
  std::vector<uint32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  impl_->ForEachPiece(text, [&](std::string_view piece) { impl_->ranks.AppendPiece(piece, ids); });
  return ids;
}

size_t TargetTokenizer::Count(std::string_view text) const {
  size_t count = 0;
  impl_->ForEachPiece(text,
                      [&](std::string_view piece) { count += impl_->ranks.CountPiece(piece); });
  return count;
}

std::string TargetTokenizer::Decode(std::span<const uint32_t> ids) const {
  std::string out;
  for (uint32_t id : ids) {
    const std::string_view bytes = impl_->ranks.Bytes(id);
    if (!bytes.empty()) {
      out.append(bytes);
      continue;
    }
    for (const auto& [special_id, text] : impl_->special_tokens) {
      if (special_id == id) {
        out.append(text);
        break;
      }
    }
  }
  return out;
}

std::string_view TargetTokenizer::EncodingForModel(std::string_view model) {
  if (const size_t slash = model.rfind('/'); slash != std::string_view::npos) {
    model.remove_prefix(slash + 1);
  }
  static constexpr std::string_view kO200kPrefixes[] = {"gpt-4o", "gpt-4.1", "o1",        "o3",
                                                        "o4",     "gpt-5",   "chatgpt-4o"};
  for (std::string_view prefix : kO200kPrefixes) {
    if (model.substr(0, prefix.size()) == prefix) return "o200k_base";
  }
  return "cl100k_base";
}

const std::string& TargetTokenizer::name() const { return impl_->name; }

size_t TargetTokenizer::vocab_size() const { return impl_->ranks.size(); }

absl::StatusOr<std::shared_ptr<const TargetTokenizer>> GetTargetTokenizer(std::string_view name) {
  static absl::Mutex mu(absl::kConstInit);
  // Never destroyed, so tokenizers outlive every static that might still count with them.
  static auto* cache =
      new std::map<std::string, std::shared_ptr<const TargetTokenizer>, std::less<>>();
  absl::MutexLock lock(&mu);
  if (auto it = cache->find(name); it != cache->end()) return it->second;
  // Loading under the lock keeps concurrent first callers from parsing the same file twice.
  ASSIGN_OR_RETURN(std::shared_ptr<const TargetTokenizer> tokenizer, TargetTokenizer::Load(name));
  cache->emplace(std::string(name), tokenizer);
  return tokenizer;
}

}  // namespace terse::compressor
