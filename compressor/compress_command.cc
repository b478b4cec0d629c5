// `terse compress`: its flags, the prompt on stdin (plain text or the JSON form), and the result
// printed as text, as JSON (--json) or as the original with the dropped text marked (--show).
#include "compressor/compress_command.h"

#include <unistd.h>

#include <cmath>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "base/json.h"
#include "compressor/chat_compression.h"
#include "compressor/compressor.h"

namespace terse::compressor {
namespace {

constexpr std::string_view kUsage =
    R"(usage: terse compress [flags] < prompt

Compresses a prompt read from stdin: plain text, or a JSON object
  {"instruction": "...", "context": ["...", ...], "question": "..."}
and prints the compressed prompt.

  --rate R             fraction of target tokens to keep, in (0, 1] (default 0.5)
  --target-tokens N    size of the compressed prompt in target tokens (instead of --rate)
  --question-aware     rank context items by how well they predict the question
  --contrastive        token scores conditioned on the question (needs a question)
  --reorder MODE       original | rank | two_stage (default original)
  --dynamic-ratio D    spread item rates +-D over their ranks (default 0: off)
  --context-budget-k K the coarse step keeps items until K x their budget (default 2)
                       (--question-aware: the recipe terse eval chose, reorder rank,
                       dynamic ratio 0.3, K 2.5, unless these flags say otherwise)
  --segment-tokens N   scoring-model tokens per segment (default 200)
  --question-rate R    compress the question too (the paper's 0.9; default 1: verbatim)
  --instruction-rate R compress the instruction too (the paper's 0.85; default 1: verbatim)
  --sentence-filter    also drop whole sentences of kept items
  --exact-past         re-run the kept tokens of each segment, so later segments are scored
                       against exactly the compressed text (slower: 1 + rate passes)
  --keep-digits        never drop words with digits
  --force-token T      always keep text T (repeatable)
  --compress-json      shrink JSON string values (JSON is otherwise kept whole)
  --model DIR          scoring model directory (default models/terse-small-en)
  --tokenizer NAME     cl100k_base | o200k_base (default cl100k_base)
  --threads N          scoring threads (default: all cores)
  --json               print {"compressed_prompt", "origin_tokens", "compressed_tokens",
                       "rate", "ratio", "ms"}
  --show               print the original with dropped text struck through (a terminal) or
                       marked [-like this-]
)";

struct Flags {
  CompressOptions options;
  LanguageModelOptions model;
  bool question_aware = false;
  std::set<std::string> given;  // the flags on the command line
  bool json = false;
  bool show = false;
  bool help = false;
};

absl::Status BadFlag(std::string_view flag, std::string_view why) {
  return absl::InvalidArgumentError(std::string(flag) + ": " + std::string(why));
}

template <typename T>
absl::Status ParseNumber(std::string_view flag, std::string_view text, T* out) {
  const std::string s(text);
  std::istringstream is(s);
  T value;
  if (!(is >> value) || !is.eof()) return BadFlag(flag, "not a number: \"" + s + "\"");
  *out = value;
  return absl::OkStatus();
}

absl::Status ParseFlags(const std::vector<std::string>& args, Flags* f) {
  f->options.rate = 0.5;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string flag = args[i];
    std::optional<std::string> inline_value;
    if (const size_t eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    f->given.insert(flag);
    const auto value = [&]() -> absl::StatusOr<std::string> {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) return BadFlag(flag, "needs a value");
      return args[++i];
    };
    const auto switch_flag = [&](bool* b) -> absl::Status {
      if (inline_value) return BadFlag(flag, "takes no value");
      *b = true;
      return absl::OkStatus();
    };
    absl::Status s;
    if (flag == "--help" || flag == "-h") {
      f->help = true;
    } else if (flag == "--rate") {
      auto v = value();
      if (!v.ok()) return v.status();
      double rate = 0;
      s = ParseNumber(flag, *v, &rate);
      f->options.rate = rate;
      f->options.target_tokens.reset();
    } else if (flag == "--target-tokens") {
      auto v = value();
      if (!v.ok()) return v.status();
      long long n = 0;
      s = ParseNumber(flag, *v, &n);
      if (s.ok() && n < 0) s = BadFlag(flag, "must not be negative");
      f->options.target_tokens = static_cast<size_t>(n);
      f->options.rate.reset();
    } else if (flag == "--question-aware") {
      s = switch_flag(&f->question_aware);
      f->options.rank = RankMethod::kQuestion;
    } else if (flag == "--contrastive") {
      s = switch_flag(&f->options.contrastive);
    } else if (flag == "--sentence-filter") {
      s = switch_flag(&f->options.sentence_filter);
    } else if (flag == "--exact-past") {
      s = switch_flag(&f->options.exact_past);
    } else if (flag == "--keep-digits") {
      s = switch_flag(&f->options.keep_digits);
    } else if (flag == "--compress-json") {
      s = switch_flag(&f->options.compress_json_strings);
    } else if (flag == "--json") {
      s = switch_flag(&f->json);
    } else if (flag == "--show") {
      s = switch_flag(&f->show);
    } else if (flag == "--reorder") {
      auto v = value();
      if (!v.ok()) return v.status();
      auto r = ParseReorder(*v);
      if (!r.ok()) return BadFlag(flag, std::string(r.status().message()));
      f->options.reorder = *r;
    } else if (flag == "--question-rate" || flag == "--instruction-rate") {
      auto v = value();
      if (!v.ok()) return v.status();
      double rate = 0;
      s = ParseNumber(flag, *v, &rate);
      if (s.ok() && !(rate >= 0 && rate <= 1)) s = BadFlag(flag, "must be in [0, 1]");
      (flag == "--question-rate" ? f->options.question_rate : f->options.instruction_rate) = rate;
    } else if (flag == "--context-budget-k") {
      auto v = value();
      if (!v.ok()) return v.status();
      s = ParseNumber(flag, *v, &f->options.context_budget_k);
      if (s.ok() && !(f->options.context_budget_k > 0)) s = BadFlag(flag, "must be positive");
    } else if (flag == "--dynamic-ratio") {
      auto v = value();
      if (!v.ok()) return v.status();
      s = ParseNumber(flag, *v, &f->options.dynamic_ratio);
    } else if (flag == "--segment-tokens") {
      auto v = value();
      if (!v.ok()) return v.status();
      s = ParseNumber(flag, *v, &f->options.segment_tokens);
    } else if (flag == "--force-token") {
      auto v = value();
      if (!v.ok()) return v.status();
      f->options.force_tokens.push_back(*v);
    } else if (flag == "--model") {
      auto v = value();
      if (!v.ok()) return v.status();
      f->model.model_dir = *v;
    } else if (flag == "--tokenizer") {
      auto v = value();
      if (!v.ok()) return v.status();
      if (*v != "cl100k_base" && *v != "o200k_base") {
        return BadFlag(flag, "want cl100k_base or o200k_base, got \"" + *v + "\"");
      }
      f->options.target_tokenizer = *v;
    } else if (flag == "--threads") {
      auto v = value();
      if (!v.ok()) return v.status();
      s = ParseNumber(flag, *v, &f->model.threads);
      if (s.ok() && f->model.threads < 0) s = BadFlag(flag, "must not be negative");
    } else {
      return BadFlag(flag, "unknown flag (see --help)");
    }
    if (!s.ok()) return s;
  }
  // --question-aware brings the rest of the recipe `terse eval` chose, flag by flag.
  if (f->question_aware) {
    const ChatPolicy recipe = RecommendedChatPolicy();
    if (!f->given.count("--reorder")) f->options.reorder = recipe.options.reorder;
    if (!f->given.count("--dynamic-ratio")) f->options.dynamic_ratio = recipe.options.dynamic_ratio;
    if (!f->given.count("--context-budget-k")) {
      f->options.context_budget_k = recipe.options.context_budget_k;
    }
  }
  return absl::OkStatus();
}

// Plain text, or the JSON form when the input is an object with any of the three fields.
absl::StatusOr<Prompt> ParseInput(const std::string& input, bool* is_json) {
  *is_json = false;
  Prompt prompt;
  size_t first = input.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && input[first] == '{') {
    Json doc = Json::parse(input, nullptr, /*allow_exceptions=*/false);
    if (doc.is_object() &&
        (doc.contains("instruction") || doc.contains("context") || doc.contains("question"))) {
      *is_json = true;
      for (const auto& [key, value] : doc.items()) {
        if (key == "instruction" || key == "question") {
          if (!value.is_string()) {
            return absl::InvalidArgumentError("\"" + key + "\" must be a string");
          }
          (key == "instruction" ? prompt.instruction : prompt.question) = value.get<std::string>();
        } else if (key == "context") {
          if (value.is_string()) {
            prompt.context.push_back(value.get<std::string>());
            continue;
          }
          if (!value.is_array()) {
            return absl::InvalidArgumentError("\"context\" must be an array of strings");
          }
          for (const Json& item : value) {
            if (!item.is_string()) {
              return absl::InvalidArgumentError("\"context\" must be an array of strings");
            }
            prompt.context.push_back(item.get<std::string>());
          }
        } else {
          return absl::InvalidArgumentError("unknown field \"" + key +
                                            "\" (want instruction, context, question)");
        }
      }
      return prompt;
    }
  }
  prompt.context.push_back(input);
  return prompt;
}

// Dropped runs (words and the whitespace between them) marked up for a terminal or plain text.
std::string Show(const std::vector<CompressResult::Piece>& pieces, bool color) {
  std::string out;
  std::string dropped;
  std::string pending_space;  // whitespace after a dropped run, joined if another run follows
  const auto flush = [&]() {
    if (dropped.empty()) return;
    out += color ? "\x1b[2;9m" + dropped + "\x1b[0m" : "[-" + dropped + "-]";
    dropped.clear();
  };
  for (const auto& piece : pieces) {
    if (!piece.kept) {
      dropped += pending_space + piece.text;
      pending_space.clear();
      continue;
    }
    const bool space = piece.text.find_first_not_of(" \t") == std::string::npos;
    if (space && !dropped.empty()) {
      pending_space += piece.text;
      continue;
    }
    flush();
    out += pending_space + piece.text;
    pending_space.clear();
  }
  flush();
  out += pending_space;
  return out;
}

}  // namespace

int RunCompressCommand(const std::vector<std::string>& args, std::istream& in, std::ostream& out,
                       std::ostream& err, bool color, Compressor* compressor) {
  Flags flags;
  if (absl::Status s = ParseFlags(args, &flags); !s.ok()) {
    err << "terse compress: " << s.message() << "\n";
    return 2;
  }
  if (flags.help) {
    out << kUsage;
    return 0;
  }
  const std::string input((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bool is_json = false;
  absl::StatusOr<Prompt> prompt = ParseInput(input, &is_json);
  if (!prompt.ok()) {
    err << "terse compress: bad input: " << prompt.status().message() << "\n";
    return 2;
  }
  flags.options.explain = flags.show;

  std::unique_ptr<Compressor> owned;
  if (compressor == nullptr) {
    absl::StatusOr<std::unique_ptr<Compressor>> loaded = Compressor::Load(flags.model, 0);
    if (!loaded.ok()) {
      err << "terse compress: cannot load the model from " << flags.model.model_dir << ": "
          << loaded.status().message() << "\n";
      return 1;
    }
    owned = std::move(*loaded);
    compressor = owned.get();
  }
  absl::StatusOr<CompressResult> result = compressor->Compress(*prompt, flags.options);
  if (!result.ok()) {
    err << "terse compress: " << result.status().message() << "\n";
    return result.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  if (flags.json) {
    Json j = {
        {"compressed_prompt", result->prompt},
        {"origin_tokens", result->origin_tokens},
        {"compressed_tokens", result->compressed_tokens},
        {"rate", result->rate},
        {"ratio", result->compressed_tokens > 0 ? static_cast<double>(result->origin_tokens) /
                                                      static_cast<double>(result->compressed_tokens)
                                                : 0.0},
        {"ms", std::round(result->ms * 1000.0) / 1000.0}};
    if (!result->reason.empty()) j["reason"] = result->reason;
    out << j.dump() << "\n";
  } else if (flags.show) {
    out << Show(result->explanation, color);
    if (!result->explanation.empty() && result->explanation.back().text.back() != '\n') {
      out << "\n";
    }
  } else {
    out << result->prompt;
    if (result->prompt.empty() || result->prompt.back() != '\n') out << "\n";
  }
  if (flags.show) {
    err << result->origin_tokens << " -> " << result->compressed_tokens << " tokens (rate "
        << result->rate << ") in " << result->ms << " ms"
        << (result->reason.empty() ? "" : "; unchanged: " + result->reason) << "\n";
  }
  return 0;
}

int RunCompressCommand(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  return RunCompressCommand(args, std::cin, std::cout, std::cerr, isatty(STDOUT_FILENO) == 1,
                            nullptr);
}

}  // namespace terse::compressor
