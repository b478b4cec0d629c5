// Flags, model loading and output files of `terse eval`; the run itself is runner.cc's.
#include "eval/eval_command.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <ostream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "eval/gateway_method.h"
#include "eval/runner.h"

namespace terse::eval {
namespace {

constexpr char kUsage[] =
    R"(usage: terse eval [flags]

Generates prompts of each task family (seeded), compresses them at each rate with terse and
with two baselines at the same budget (truncation, random token drop), and reports what
survived: the answer, the question, demonstration answers, numbers and multi-word names, and
the achieved rate counted in target tokens (cl100k_base).

  --families LIST      comma-separated, default all: multidoc_qa, fewshot_math, chat, rag,
                       tool_json, code, meeting
  --items N            items per family (default 20)
  --seed S             generator seed (default 1)
  --rates LIST         default 0.5,0.33,0.2,0.1
  --faces LIST         prompt (Compressor::Compress, as terse compress --json) and/or chat
                       (the messages path of HTTP and gRPC chat); default chat,prompt
  --no-baselines       measure terse only
  --model DIR          scoring model directory (default models/terse-small-en)
  --threads N          scoring threads (default: all cores)
  --workers N          items compressed at once (default 2)
  --json FILE          write the results as JSON (compare runs with it)
  --svg FILE           write a plot of retention against rate per family
  --check FILE         thresholds (JSON, see docs/eval.md); exit 1 when one is missed
  --no-progress        no progress bar on stderr
  --write-outputs FILE write every compressed prompt (or reply) as JSON lines
  --write-items FILE   write the generated items as JSON lines and exit (each line works as
                       input to terse compress --json once its extra fields are dropped)
A running gateway instead of the compressor in process (its route's recipe applies; the route
must allow overrides, as make run's config does):
  --gateway URL        its OpenAI base URL, e.g. http://127.0.0.1:8080/v1; items go as chat
                       completions with x-terse-rate. With the echo provider upstream, what
                       the gateway forwarded is scored.
  --gateway-model M    the requests' model (default gpt-4o-mini)
  --api-key-env VAR    send $VAR as the bearer key
  --llm-answers        the upstream is a real LLM: score its replies (exact match: the reply
                       contains the answer) against the uncompressed prompt's replies
The recipe (defaults: a route's defaults, the recipe this harness chose: question-aware,
reorder rank, dynamic ratio 0.3, context budget k 2.5):
  --name NAME          label of the recipe in the output (default terse)
  --question-aware     rank context items by the question
  --no-question-aware  rank them by their own perplexity
  --contrastive        question-conditioned token scores
  --reorder MODE       original | rank | two_stage
  --dynamic-ratio D    item rates spread +-D over their ranks
  --keep-digits        never drop words with digits
  --context-budget-k K coarse step keeps items until K x the item budget
  --segment-tokens N   scoring-model tokens per segment (default 200)
  --question-rate R    compress the question on the prompt face too (the paper's 0.9)
)";

struct Flags {
  RunOptions run;
  std::vector<Face> faces = {Face::kChat, Face::kPrompt};
  bool baselines = true;
  bool help = false;
  compressor::LanguageModelOptions model;
  compressor::ChatPolicy policy = compressor::RecommendedChatPolicy();
  std::string name = "terse";
  std::string json_path, svg_path, check_path, items_path, outputs_path;
  GatewayOptions gateway;
  std::string api_key_env;
};

absl::Status BadFlag(absl::string_view flag, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(flag, ": ", why));
}

absl::Status ParseDouble(absl::string_view flag, absl::string_view text, double* out) {
  if (!absl::SimpleAtod(text, out) || !std::isfinite(*out)) {
    return BadFlag(flag, absl::StrCat("not a number: \"", text, "\""));
  }
  return absl::OkStatus();
}

absl::Status ParseCount(absl::string_view flag, absl::string_view text, size_t* out) {
  uint64_t v = 0;
  if (!absl::SimpleAtoi(text, &v))
    return BadFlag(flag, absl::StrCat("not a count: \"", text, "\""));
  *out = static_cast<size_t>(v);
  return absl::OkStatus();
}

absl::Status ParseFlags(const std::vector<std::string>& args, Flags* f) {
  f->run.families.assign(std::begin(kAllFamilies), std::end(kAllFamilies));
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& flag = args[i];
    const auto value = [&]() -> absl::StatusOr<std::string> {
      if (i + 1 >= args.size()) return BadFlag(flag, "needs a value");
      return args[++i];
    };
    size_t count = 0;
    if (flag == "--help" || flag == "-h") {
      f->help = true;
    } else if (flag == "--families") {
      ASSIGN_OR_RETURN(std::string v, value());
      f->run.families.clear();
      for (absl::string_view name : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        absl::StatusOr<Family> family = ParseFamily(std::string(name));
        if (!family.ok()) return BadFlag(flag, family.status().message());
        f->run.families.push_back(*family);
      }
    } else if (flag == "--faces") {
      ASSIGN_OR_RETURN(std::string v, value());
      f->faces.clear();
      for (absl::string_view name : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        absl::StatusOr<Face> face = ParseFace(std::string(name));
        if (!face.ok()) return BadFlag(flag, face.status().message());
        f->faces.push_back(*face);
      }
    } else if (flag == "--rates") {
      ASSIGN_OR_RETURN(std::string v, value());
      f->run.rates.clear();
      for (absl::string_view text : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        double rate = 0;
        RETURN_IF_ERROR(ParseDouble(flag, text, &rate));
        if (!(rate > 0 && rate <= 1)) return BadFlag(flag, absl::StrCat(text, " is not in (0, 1]"));
        f->run.rates.push_back(rate);
      }
    } else if (flag == "--items") {
      ASSIGN_OR_RETURN(std::string v, value());
      RETURN_IF_ERROR(ParseCount(flag, v, &f->run.items_per_family));
    } else if (flag == "--seed") {
      ASSIGN_OR_RETURN(std::string v, value());
      RETURN_IF_ERROR(ParseCount(flag, v, &count));
      f->run.seed = count;
    } else if (flag == "--workers") {
      ASSIGN_OR_RETURN(std::string v, value());
      RETURN_IF_ERROR(ParseCount(flag, v, &count));
      f->run.threads = static_cast<int>(std::max<size_t>(1, count));
    } else if (flag == "--threads") {
      ASSIGN_OR_RETURN(std::string v, value());
      RETURN_IF_ERROR(ParseCount(flag, v, &count));
      f->model.threads = static_cast<int>(count);
    } else if (flag == "--model") {
      ASSIGN_OR_RETURN(f->model.model_dir, value());
    } else if (flag == "--json") {
      ASSIGN_OR_RETURN(f->json_path, value());
    } else if (flag == "--write-outputs") {
      ASSIGN_OR_RETURN(f->outputs_path, value());
      f->run.keep_outputs = true;
    } else if (flag == "--write-items") {
      ASSIGN_OR_RETURN(f->items_path, value());
    } else if (flag == "--svg") {
      ASSIGN_OR_RETURN(f->svg_path, value());
    } else if (flag == "--check") {
      ASSIGN_OR_RETURN(f->check_path, value());
    } else if (flag == "--name") {
      ASSIGN_OR_RETURN(f->name, value());
    } else if (flag == "--gateway") {
      ASSIGN_OR_RETURN(f->gateway.base_url, value());
    } else if (flag == "--gateway-model") {
      ASSIGN_OR_RETURN(f->gateway.model, value());
    } else if (flag == "--api-key-env") {
      ASSIGN_OR_RETURN(f->api_key_env, value());
    } else if (flag == "--llm-answers") {
      f->gateway.llm_answers = true;
    } else if (flag == "--no-baselines") {
      f->baselines = false;
    } else if (flag == "--no-progress") {
      f->run.progress = false;
    } else if (flag == "--question-aware") {
      f->policy.question_aware = true;
    } else if (flag == "--no-question-aware") {
      f->policy.question_aware = false;
    } else if (flag == "--contrastive") {
      f->policy.options.contrastive = true;
    } else if (flag == "--keep-digits") {
      f->policy.options.keep_digits = true;
    } else if (flag == "--reorder") {
      ASSIGN_OR_RETURN(std::string v, value());
      absl::StatusOr<compressor::Reorder> r = compressor::ParseReorder(v);
      if (!r.ok()) return BadFlag(flag, r.status().message());
      f->policy.options.reorder = *r;
    } else if (flag == "--dynamic-ratio") {
      ASSIGN_OR_RETURN(std::string v, value());
      RETURN_IF_ERROR(ParseDouble(flag, v, &f->policy.options.dynamic_ratio));
    } else if (flag == "--context-budget-k") {
      ASSIGN_OR_RETURN(std::string v, value());
      RETURN_IF_ERROR(ParseDouble(flag, v, &f->policy.options.context_budget_k));
    } else if (flag == "--question-rate") {
      ASSIGN_OR_RETURN(std::string v, value());
      RETURN_IF_ERROR(ParseDouble(flag, v, &f->policy.options.question_rate));
    } else if (flag == "--segment-tokens") {
      ASSIGN_OR_RETURN(std::string v, value());
      RETURN_IF_ERROR(ParseCount(flag, v, &count));
      f->policy.options.segment_tokens = static_cast<int>(count);
    } else {
      return BadFlag(flag, "unknown flag (see --help)");
    }
  }
  return absl::OkStatus();
}

// Each check names a cell and the least share (or the largest rate error) it may show:
//   {"checks": [{"method": "terse", "face": "chat", "family": "multidoc_qa", "rate": 0.5,
//                "min": {"answer_kept": 0.3}, "max_rate_error": 0.05}]}
absl::StatusOr<std::vector<std::string>> Check(const Json& result, const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--check: cannot read ", path));
  const Json checks = Json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!checks.is_object() || !checks.value("checks", Json()).is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": want {\"checks\": [...]}"));
  }
  std::vector<std::string> misses;
  for (const Json& c : checks["checks"]) {
    if (!c.is_object())
      return absl::InvalidArgumentError(absl::StrCat(path, ": a check is not an object"));
    const Json* row = nullptr;
    for (const Json& r : result["rows"]) {
      if (r["method"] == c.value("method", "terse") && r["face"] == c.value("face", "chat") &&
          r["family"] == c.value("family", "") &&
          std::abs(r["rate"].get<double>() - c.value("rate", 0.0)) < 1e-9) {
        row = &r;
      }
    }
    const std::string where =
        absl::StrCat(c.value("method", "terse"), "/", c.value("face", "chat"), " ",
                     c.value("family", ""), " at ", c.value("rate", 0.0));
    if (row == nullptr) {
      misses.push_back(absl::StrCat(where, ": not measured in this run"));
      continue;
    }
    const Json mins = c.value("min", Json::object());
    if (!mins.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"min\" must be an object"));
    }
    for (const auto& [metric, least] : mins.items()) {
      if (!least.is_number()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": min.", metric, " is no number"));
      }
      const Json got = row->value(metric, Json());
      if (!got.is_number() || got.get<double>() < least.get<double>()) {
        misses.push_back(absl::StrCat(where, ": ", metric, " ", got.dump(), " < ", least.dump()));
      }
    }
    if (c.contains("max_rate_error")) {
      const double error =
          std::abs((*row)["achieved_rate"].get<double>() / (*row)["rate"].get<double>() - 1);
      if (error > c["max_rate_error"].get<double>()) {
        misses.push_back(absl::StrCat(where, ": achieved rate ", (*row)["achieved_rate"].dump(),
                                      " is off by more than ", c["max_rate_error"].dump()));
      }
    }
  }
  return misses;
}

// One JSON value per line.
std::string JsonLines(const Json& values) {
  std::string lines;
  for (const Json& value : values) lines += value.dump() + "\n";
  return lines;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace

int RunEvalCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  const auto fail = [&err](const absl::Status& status, int exit_code) {
    err << "terse eval: " << status.message() << "\n";
    return exit_code;
  };
  Flags flags;
  if (absl::Status s = ParseFlags(args, &flags); !s.ok()) return fail(s, 2);
  if (flags.help) {
    out << kUsage;
    return 0;
  }
  if (!flags.items_path.empty()) {
    Json items = Json::array();
    for (Family family : flags.run.families) {
      for (const Item& item : Generate(family, flags.run.items_per_family, flags.run.seed)) {
        items.push_back(ItemJson(item));
      }
    }
    absl::Status s = WriteFile(flags.items_path, JsonLines(items));
    return s.ok() ? 0 : fail(s, 1);
  }
  absl::StatusOr<std::shared_ptr<const compressor::TargetTokenizer>> tokenizer =
      compressor::GetTargetTokenizer("cl100k_base");
  if (!tokenizer.ok()) return fail(tokenizer.status(), 1);
  std::vector<NamedMethod> methods;
  std::vector<std::shared_ptr<GatewayClient>> clients;  // outlive the run
  if (!flags.gateway.base_url.empty()) {
    if (!flags.api_key_env.empty()) {
      const char* key = std::getenv(flags.api_key_env.c_str());
      if (key == nullptr || *key == '\0') {
        err << "terse eval: --api-key-env: $" << flags.api_key_env << " is not set\n";
        return 2;
      }
      flags.gateway.api_key = key;
    }
    for (bool compress : {true, false}) {
      if (!compress && !flags.gateway.llm_answers) break;
      GatewayOptions options = flags.gateway;
      options.compress = compress;
      absl::StatusOr<std::shared_ptr<GatewayClient>> client = GatewayClient::Create(options);
      if (!client.ok()) {
        err << "terse eval: --gateway: " << client.status().message() << "\n";
        return 2;
      }
      clients.push_back(*client);
      methods.push_back({compress ? flags.name : "uncompressed", "gateway",
                         clients.back()->AsMethod(), !compress});
    }
  } else {
    absl::StatusOr<std::unique_ptr<compressor::Compressor>> loaded =
        compressor::Compressor::Load(flags.model, 0);
    if (!loaded.ok()) return fail(loaded.status(), 1);
    std::shared_ptr<compressor::Compressor> compressor = std::move(*loaded);
    for (Face face : flags.faces) {
      methods.push_back(
          {flags.name, std::string(FaceName(face)), TerseMethod(compressor, flags.policy, face)});
    }
  }
  if (flags.baselines && !flags.gateway.llm_answers) {
    methods.push_back({"truncate", "-", TruncateMethod(*tokenizer)});
    methods.push_back({"random", "-", RandomDropMethod(*tokenizer, flags.run.seed)});
  }
  absl::StatusOr<RunResult> result = Evaluate(flags.run, methods);
  if (!result.ok()) return fail(result.status(), 2);
  Json json = ResultJson(*result);
  json["config"]["model_dir"] = flags.model.model_dir;
  out << FormatTable(*result);
  const std::pair<const std::string&, std::function<std::string()>> files[] = {
      {flags.json_path, [&] { return json.dump(2) + "\n"; }},
      {flags.outputs_path, [&] { return JsonLines(result->outputs); }},
      {flags.svg_path, [&] { return RetentionSvg(*result); }}};
  for (const auto& [path, text] : files) {
    if (path.empty()) continue;
    if (absl::Status s = WriteFile(path, text()); !s.ok()) return fail(s, 1);
  }
  if (!flags.check_path.empty()) {
    absl::StatusOr<std::vector<std::string>> misses = Check(json, flags.check_path);
    if (!misses.ok()) return fail(misses.status(), 2);
    for (const std::string& m : *misses) err << "terse eval: check missed: " << m << "\n";
    if (!misses->empty()) return 1;
    out << "checks met: " << flags.check_path << "\n";
  }
  return 0;
}

}  // namespace terse::eval
