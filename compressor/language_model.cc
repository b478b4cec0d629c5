// LanguageModel::Load: option checks, reading and fingerprinting the model file, and the window
// plan for long sequences. The backend itself is torch_language_model.cc, which runs its forward
// passes (torch_forward.cc) through a BatchScheduler (batch_scheduler.cc).
#include "compressor/language_model.h"

#include <openssl/evp.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "compressor/torch_language_model.h"

namespace terse::compressor {
namespace {

absl::StatusOr<std::string> Sha256Hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("sha256 of the model file failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 15]);
  }
  return hex;
}

absl::Status CheckOptions(const LanguageModelOptions& options) {
  if (options.device != "auto" && options.device != "cpu" && options.device != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat(
        "language model device must be auto, cpu or cuda, not \"", options.device, "\""));
  }
  if (options.threads < 0) {
    return absl::InvalidArgumentError("language model threads must be >= 0 (0: all cores)");
  }
  if (options.max_batch_size < 1) {
    return absl::InvalidArgumentError("language model max_batch_size must be >= 1");
  }
  if (options.max_batch_wait_us < 0) {
    return absl::InvalidArgumentError("language model max_batch_wait_us must be >= 0");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LanguageModel>> LanguageModel::Load(
    const LanguageModelOptions& options) {
  if (absl::Status status = CheckOptions(options); !status.ok()) return status;
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::path dir(options.model_dir);
  if (!fs::is_directory(dir, error)) {
    return absl::NotFoundError(
        absl::StrCat("language model directory not found: ", options.model_dir));
  }
  const fs::path file = dir / "model.pt";
  if (!fs::is_regular_file(file, error)) {
    return absl::NotFoundError(absl::StrCat("language model file not found: ", file.string(),
                                            " (a model directory holds model.pt, "
                                            "tokenizer.json and model.json)"));
  }
  std::ifstream in(file, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return absl::UnavailableError(absl::StrCat("cannot read ", file.string()));
  }
  absl::StatusOr<std::string> digest = Sha256Hex(bytes);
  if (!digest.ok()) return digest.status();
  return LoadTorchScriptModel(options, bytes, *std::move(digest));
}

std::vector<ScoringWindow> PlanWindows(std::span<const int32_t> tokens, size_t score_from,
                                       int bos_id, int max_context) {
  std::vector<ScoringWindow> windows;
  const size_t n = tokens.size();
  if (score_from >= n) return windows;
  // x = BOS + tokens; x[k + 1] is tokens[k]. A target x[k] is wanted when k > score_from.
  auto x = [&](size_t k) -> int64_t { return k == 0 ? bos_id : tokens[k - 1]; };
  const size_t length = n + 1;
  const size_t width = static_cast<size_t>(max_context);
  const size_t first_wanted = score_from + 1;

  if (length <= width) {
    ScoringWindow& w = windows.emplace_back();
    for (size_t k = 0; k + 1 < length; ++k) {
      w.ids.push_back(x(k));
      w.targets.push_back(k + 1 >= first_wanted ? x(k + 1) : -1);
    }
    return windows;
  }

  const size_t sink = kSinkTokens;
  const size_t tail = width - sink;  // ids after the sink in a later window
  const size_t stride = tail / 2;    // new tokens per later window
  // The first window: x[0, width) predicting x[1, width].
  {
    ScoringWindow w;
    bool any = false;
    for (size_t k = 0; k < width; ++k) {
      w.ids.push_back(x(k));
      const bool wanted = k + 1 >= first_wanted;
      w.targets.push_back(wanted ? x(k + 1) : -1);
      any |= wanted;
    }
    if (any) windows.push_back(std::move(w));
  }
  size_t covered = width;  // targets x[1..covered] are scored
  while (covered < length - 1) {
    const size_t end = std::min(covered + stride, length - 1);
    // ids: x[0, sink) + x[begin, end). A full window is `width` long; the last one may be
    // shorter, giving its new tokens the same guaranteed context, not more.
    const size_t begin = covered - (tail - stride);
    if (end < first_wanted) {
      covered = end;
      continue;
    }
    ScoringWindow w;
    for (size_t k = 0; k < sink; ++k) {
      w.ids.push_back(x(k));
      w.targets.push_back(-1);
    }
    for (size_t k = begin; k < end; ++k) {
      w.ids.push_back(x(k));
      const bool wanted = k + 1 > covered && k + 1 >= first_wanted;
      w.targets.push_back(wanted ? x(k + 1) : -1);
    }
    windows.push_back(std::move(w));
    covered = end;
  }
  return windows;
}

}  // namespace terse::compressor
