// Target-token counting speed (cl100k_base, o200k_base) on ~1 MB of prose and of code, against the
// npm tiktoken package measured on the same texts in the same run.
//
// The texts come from `node tests/e2e/tiktoken_compare.mjs --bench DIR`, which also prints npm
// tiktoken's speed; run from the repository root. With $TERSE_BENCH_TEXTS set to such a DIR, node
// is not run and only terse's figures are printed.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "base/json.h"
#include "compressor/target_tokenizer.h"

namespace terse::compressor {
namespace {

const char* const kEncodings[] = {"cl100k_base", "o200k_base"};
const char* const kTexts[] = {"prose", "code"};

std::map<std::string, std::string>& Texts() {
  static auto* texts = new std::map<std::string, std::string>();
  return *texts;
}

// (encoding, text) -> npm tiktoken tokens/s.
std::map<std::pair<std::string, std::string>, double>& NpmSpeeds() {
  static auto* speeds = new std::map<std::pair<std::string, std::string>, double>();
  return *speeds;
}

bool LoadTexts() {
  std::string dir;
  bool temporary = false;
  if (const char* env = std::getenv("TERSE_BENCH_TEXTS"); env != nullptr && *env) {
    dir = env;
  } else {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "terse-tiktoken-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) return false;
    dir = pattern;
    temporary = true;
    const std::string command = "node tests/e2e/tiktoken_compare.mjs --bench '" + dir + "'";
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) return false;
    char line[1024];
    while (std::fgets(line, sizeof(line), pipe) != nullptr) {
      const Json j = Json::parse(line, nullptr, false);
      if (!j.is_object()) continue;
      NpmSpeeds()[{j.value("encoding", ""), j.value("text", "")}] = j.value("tokens_per_s", 0.0);
    }
    if (pclose(pipe) != 0) {
      std::fprintf(stderr, "failed: %s (run from the repository root, with node installed)\n",
                   command.c_str());
      std::filesystem::remove_all(dir);
      return false;
    }
  }
  for (const char* name : kTexts) {
    std::ifstream in(dir + "/" + name + ".txt", std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    Texts()[name] = out.str();
  }
  if (temporary) std::filesystem::remove_all(dir);
  for (const char* name : kTexts) {
    if (Texts()[name].empty()) {
      std::fprintf(stderr, "no text in %s/%s.txt\n", dir.c_str(), name);
      return false;
    }
  }
  return true;
}

std::shared_ptr<const TargetTokenizer> Tokenizer(const char* encoding) {
  auto tokenizer = GetTargetTokenizer(encoding);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", std::string(tokenizer.status().message()).c_str());
    std::exit(1);
  }
  return *tokenizer;
}

void BM_Load(benchmark::State& state, const char* encoding) {
  for (auto _ : state) {
    auto tokenizer = TargetTokenizer::Load(encoding);
    benchmark::DoNotOptimize(tokenizer);
  }
}

void BM_Encode(benchmark::State& state, const char* encoding, const char* text_name) {
  const auto tokenizer = Tokenizer(encoding);
  const std::string& text = Texts()[text_name];
  size_t tokens = 0;
  for (auto _ : state) {
    const std::vector<uint32_t> ids = tokenizer->Encode(text);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens * state.iterations()),
                                                  benchmark::Counter::kIsRate);
}

void BM_Count(benchmark::State& state, const char* encoding, const char* text_name) {
  const auto tokenizer = Tokenizer(encoding);
  const std::string& text = Texts()[text_name];
  size_t tokens = 0;
  for (auto _ : state) {
    tokens = tokenizer->Count(text);
    benchmark::DoNotOptimize(tokens);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens * state.iterations()),
                                                  benchmark::Counter::kIsRate);
}

// The ratio table: terse's Encode timed like the node script times encode_ordinary (a warm-up,
// then the mean of 5 runs).
void PrintComparison() {
  if (NpmSpeeds().empty()) return;
  std::printf("\n%-12s %-6s %14s %14s %8s\n", "encoding", "text", "terse tok/s", "npm tok/s",
              "ratio");
  for (const char* encoding : kEncodings) {
    const auto tokenizer = Tokenizer(encoding);
    for (const char* name : kTexts) {
      const std::string& text = Texts()[name];
      size_t tokens = tokenizer->Encode(text).size();
      const auto start = std::chrono::steady_clock::now();
      constexpr int kRuns = 5;
      for (int i = 0; i < kRuns; ++i) tokens = tokenizer->Encode(text).size();
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / kRuns;
      const double terse = static_cast<double>(tokens) / seconds;
      const double npm = NpmSpeeds()[{encoding, name}];
      std::printf("%-12s %-6s %14.0f %14.0f %7.2fx\n", encoding, name, terse, npm,
                  npm > 0 ? terse / npm : 0.0);
    }
  }
}

}  // namespace
}  // namespace terse::compressor

int main(int argc, char** argv) {
  using namespace terse::compressor;
  if (!LoadTexts()) return 1;
  for (const char* encoding : kEncodings) {
    benchmark::RegisterBenchmark((std::string("BM_Load/") + encoding).c_str(), BM_Load, encoding)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(3);
    for (const char* text : kTexts) {
      const std::string suffix = std::string(encoding) + "/" + text;
      benchmark::RegisterBenchmark(("BM_Encode/" + suffix).c_str(), BM_Encode, encoding, text)
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(("BM_Count/" + suffix).c_str(), BM_Count, encoding, text)
          ->Unit(benchmark::kMillisecond);
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  PrintComparison();
  return 0;
}
