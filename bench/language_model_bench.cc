// The LM scorer: tokens/s, batching on vs off under 8 concurrent callers, and model FLOP
// utilisation (the scorer's FLOP/s over plain matrix products of the model's shapes, both
// measured in this run on the same worker thread).
//
// Model: $TERSE_LM_BENCH_MODEL, else models/terse-small-en, else the tiny test fixture (whose
// numbers mean little). Threads: $TERSE_LM_BENCH_THREADS (default 0: all cores).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "compressor/language_model.h"
#include "compressor/language_model_probes.h"
#include "compressor/torch_language_model.h"

namespace terse::compressor {
namespace {

std::string ModelDir() {
  if (const char* dir = std::getenv("TERSE_LM_BENCH_MODEL")) return dir;
  const char* root = std::getenv("TERSE_SOURCE_DIR");
  const std::string base = root != nullptr ? std::string(root) + "/" : "";
  if (std::filesystem::exists(base + "models/terse-small-en/model.pt")) {
    return base + "models/terse-small-en";
  }
  return base + "tests/fixtures/tiny-lm";
}

int Threads() {
  const char* threads = std::getenv("TERSE_LM_BENCH_THREADS");
  return threads != nullptr ? std::atoi(threads) : 0;
}

// One loaded model per batch size, kept for the whole run.
LanguageModel& Model(int max_batch_size) {
  static auto* models = new std::map<int, std::unique_ptr<LanguageModel>>();
  auto& slot = (*models)[max_batch_size];
  if (slot == nullptr) {
    LanguageModelOptions options;
    options.model_dir = ModelDir();
    options.threads = Threads();
    options.max_batch_size = max_batch_size;
    auto loaded = LanguageModel::Load(options);
    if (!loaded.ok()) {
      std::fprintf(stderr, "cannot load %s: %s\n", options.model_dir.c_str(),
                   loaded.status().ToString().c_str());
      std::exit(1);
    }
    slot = *std::move(loaded);
    const ModelShape shape = *ShapeOf(*slot);
    std::fprintf(stderr,
                 "model %s: d_model %d, %d layers, %d heads, vocab %d, context %d, "
                 "%lld non-embedding params, max_batch_size %d\n",
                 options.model_dir.c_str(), shape.d_model, shape.n_layer, shape.n_head,
                 shape.vocab_size, shape.max_context,
                 static_cast<long long>(shape.non_embedding_params), max_batch_size);
  }
  return *slot;
}

std::vector<int32_t> RandomTokens(size_t n, int vocab_size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(4, vocab_size - 1);
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = id(rng);
  return tokens;
}

// FLOPs of one forward pass over `t` new tokens after `past` cached ones: the weight matrices
// (2 per parameter per token), the LM head (2 * d * V per token) and the attention products
// over the keys each token may see (causal; masked-out work is not counted).
double ForwardFlops(const ModelShape& s, int64_t t, int64_t past = 0) {
  const double per_token = 2.0 * static_cast<double>(s.non_embedding_params) +
                           2.0 * s.d_model * static_cast<double>(s.vocab_size);
  double keys = 0;
  for (int64_t j = 0; j < t; ++j) keys += static_cast<double>(past + j + 1);
  return per_token * static_cast<double>(t) + 4.0 * s.n_layer * s.d_model * keys;
}

// FLOPs ScoreSequences spends on one sequence of n tokens (its windows, overlap included).
double ScoreFlops(const ModelShape& s, size_t n) {
  const std::vector<int32_t> dummy(n, 4);
  double flops = 0;
  for (const ScoringWindow& w : PlanWindows(dummy, 0, s.bos_id, s.max_context)) {
    flops += ForwardFlops(s, static_cast<int64_t>(w.ids.size()));
  }
  return flops;
}

// FLOPs of MeasureMatmulFlops(rows): the weight products of one forward pass and the LM head.
double ProbeFlops(const ModelShape& s, int rows) {
  const double d = s.d_model;
  return 2.0 * rows * (s.n_layer * (d * 3 * d + d * d + d * 4 * d + 4 * d * d) + d * s.vocab_size);
}

// Scoring one sequence of range(0) tokens: tokens/s, GFLOP/s and MFU. The matmul ceiling is
// measured between iterations, interleaved with the scoring, so both see the same machine load
// (this CPU is shared).
void BM_ScoreSequence(benchmark::State& state) {
  LanguageModel& model = Model(8);
  const ModelShape shape = *ShapeOf(model);
  const size_t n = static_cast<size_t>(state.range(0));
  const int rows = static_cast<int>(std::min<size_t>(n, shape.max_context));
  const auto tokens = RandomTokens(n, shape.vocab_size, 1);
  double probe_seconds = 0;
  double probe_flops = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    auto scores = model.ScoreSequences({tokens});
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (!scores.ok()) state.SkipWithError(scores.status().ToString().c_str());
    benchmark::DoNotOptimize(scores);
    const double rate = *MeasureMatmulFlops(model, rows, /*repeats=*/1, /*bf16=*/false);
    probe_flops += ProbeFlops(shape, rows);
    probe_seconds += ProbeFlops(shape, rows) / rate;
  }
  const double flops = ScoreFlops(shape, n);
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP_per_s"] =
      benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["mm_GFLOP_per_s"] = probe_flops / probe_seconds / 1e9;
}
BENCHMARK(BM_ScoreSequence)
    ->Arg(512)
    ->Arg(2048)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

// The ceiling alone, fp32 vs bf16 (bf16 only pays off on CPUs with native bf16 units).
void BM_MatmulCeiling(benchmark::State& state) {
  LanguageModel& model = Model(8);
  const ModelShape shape = *ShapeOf(model);
  const bool bf16 = state.range(0) != 0;
  double flops = 0;
  for (auto _ : state) flops = *MeasureMatmulFlops(model, shape.max_context, 3, bf16);
  state.counters["GFLOP_per_s"] = flops / 1e9;
  state.SetLabel(bf16 ? "bf16" : "fp32");
}
BENCHMARK(BM_MatmulCeiling)->Arg(0)->Arg(1)->Iterations(1)->Unit(benchmark::kMillisecond);

// 8 callers at once, each scoring work of its own; range(0): max_batch_size (1 = batching off),
// range(1): 0 = short independent items (coarse ranking), 1 = sessions (iterative compression:
// Score a 100-token segment, Append the 50 kept tokens).
void BM_ConcurrentCallers(benchmark::State& state) {
  constexpr int kCallers = 8;
  constexpr int kCallsPerCaller = 6;
  constexpr size_t kItemTokens = 64;
  constexpr size_t kSegmentTokens = 100;
  LanguageModel& model = Model(static_cast<int>(state.range(0)));
  const bool sessions = state.range(1) != 0;
  const int vocab = model.vocab_size();
  int64_t tokens = 0;
  const InferenceStats before = StatsOf(model);
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> callers;
    for (int c = 0; c < kCallers; ++c) {
      callers.emplace_back([&, c] {
        auto session = model.NewSession();
        for (int k = 0; k < kCallsPerCaller; ++k) {
          if (sessions) {
            const auto segment = RandomTokens(kSegmentTokens, vocab, 100 * c + k);
            benchmark::DoNotOptimize(session->Score(segment));
            benchmark::DoNotOptimize(
                session->Append(std::span<const int32_t>(segment.data(), kSegmentTokens / 2)));
          } else {
            benchmark::DoNotOptimize(
                model.ScoreSequences({RandomTokens(kItemTokens, vocab, 100 * c + k)}));
          }
        }
      });
    }
    for (auto& t : callers) t.join();
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    tokens += kCallers * kCallsPerCaller *
              static_cast<int64_t>(sessions ? kSegmentTokens + kSegmentTokens / 2 : kItemTokens);
  }
  const InferenceStats after = StatsOf(model);
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  state.counters["steps_per_batch"] =
      static_cast<double>(after.steps - before.steps) /
      static_cast<double>(std::max<int64_t>(1, after.batches - before.batches));
  state.SetLabel(std::string(state.range(0) > 1 ? "batching on" : "batching off") +
                 (sessions ? ", sessions" : ", 64-token items"));
}
BENCHMARK(BM_ConcurrentCallers)
    ->Args({1, 0})
    ->Args({8, 0})
    ->Args({1, 1})
    ->Args({8, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

// One caller compressing iteratively: 200-token segments scored, 100 tokens kept each time,
// past the context (the cache slides).
void BM_SessionSegments(benchmark::State& state) {
  LanguageModel& model = Model(8);
  const ModelShape shape = *ShapeOf(model);
  constexpr int kSegments = 10;
  constexpr size_t kSegment = 200;
  int64_t tokens = 0;
  for (auto _ : state) {
    auto session = model.NewSession();
    for (int k = 0; k < kSegments; ++k) {
      const auto segment = RandomTokens(kSegment, shape.vocab_size, k);
      benchmark::DoNotOptimize(session->Score(segment));
      benchmark::DoNotOptimize(
          session->Append(std::span<const int32_t>(segment.data(), kSegment / 2)));
    }
    tokens += kSegments * static_cast<int64_t>(kSegment);
  }
  state.counters["segment_tokens_per_s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SessionSegments)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);

// Adds the MFU line to the console output: GFLOP/s of the scorer over the matmul ceiling.
class MfuReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      auto achieved = run.counters.find("GFLOP_per_s");
      auto ceiling = run.counters.find("mm_GFLOP_per_s");
      if (achieved == run.counters.end() || ceiling == run.counters.end()) continue;
      if (ceiling->second.value <= 0) continue;
      const double rate = achieved->second.value;  // already divided by time
      std::fprintf(stdout, "MFU %s: %.1f GFLOP/s of %.1f GFLOP/s matmul ceiling = %.0f%%\n",
                   run.benchmark_name().c_str(), rate, ceiling->second.value,
                   100.0 * rate / ceiling->second.value);
    }
  }
};

}  // namespace
}  // namespace terse::compressor

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  terse::compressor::MfuReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
