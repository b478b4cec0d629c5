// The compressor end to end: latency and tokens/s by prompt size and rate, with and without the
// question-aware (LongLLMLingua) options; the 10k-token goal; growth with length; 8 concurrent
// callers with batching on vs off; cache-hit latency; achieved-rate accuracy.
//
//   compressor_bench [--model DIR] [--threads N] [--quick] [--reps N] [--section 1-5]
//
// Run from the repository root (the tiktoken rank files and the model resolve from there).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "compressor/compressor.h"
#include "compressor/language_model_probes.h"
#include "compressor/lm_tokenizer.h"
#include "compressor/target_tokenizer.h"
#include "tests/support/prose.h"

namespace terse::compressor {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

using ::terse::testing::Prose;

// A multi-document prompt of about `tokens` tokens: documents of ~500 tokens, one of which
// holds the answer to the question.
Prompt Documents(const TargetTokenizer& counter, size_t tokens, uint32_t seed) {
  Prompt p;
  p.instruction = "Answer the question using the documents below.";
  const size_t docs = std::max<size_t>(2, tokens / 500);
  for (size_t i = 0; i < docs; ++i) {
    p.context.push_back("Document " + std::to_string(i + 1) + ": " +
                        Prose(counter, tokens / docs, seed + static_cast<uint32_t>(i)));
  }
  p.context[docs / 2] += " The harbor master Ingrid Solberg opened the northern bridge in 1873.";
  p.question = "Who opened the northern bridge, and in which year?";
  return p;
}

struct Args {
  std::string model = "models/terse-small-en";
  int threads = 2;
  bool quick = false;
  int section = 0;  // 0: all
  int reps = 3;     // timed repetitions (median)
};

std::unique_ptr<Compressor> Load(const Args& args, int max_batch, size_t cache) {
  LanguageModelOptions o;
  o.model_dir = args.model;
  o.device = "cpu";
  o.threads = args.threads;
  o.max_batch_size = max_batch;
  auto c = Compressor::Load(o, cache);
  if (!c.ok()) {
    std::fprintf(stderr, "cannot load %s: %s\n", args.model.c_str(),
                 std::string(c.status().message()).c_str());
    std::exit(1);
  }
  return std::move(*c);
}

// Median latency of `reps` compressions (cache off) and the last result.
double Time(Compressor& c, const Prompt& p, CompressOptions o, int reps, CompressResult* last) {
  o.use_cache = false;
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto t = Clock::now();
    auto result = c.Compress(p, o);
    ms.push_back(MsSince(t));
    if (!result.ok()) {
      std::fprintf(stderr, "compress failed: %s\n", std::string(result.status().message()).c_str());
      std::exit(1);
    }
    *last = std::move(*result);
  }
  return Median(ms);
}

int Main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model" && i + 1 < argc) {
      args.model = argv[++i];
    } else if (a == "--threads" && i + 1 < argc) {
      args.threads = std::atoi(argv[++i]);
    } else if (a == "--quick") {
      args.quick = true;
    } else if (a == "--reps" && i + 1 < argc) {
      args.reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--section" && i + 1 < argc) {
      args.section = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: compressor_bench [--model DIR] [--threads N] [--quick] [--reps N] "
                   "[--section 1-5]\n");
      return 2;
    }
  }
  if (!std::filesystem::exists(args.model + "/model.pt")) {
    std::fprintf(stderr, "no model at %s; using the tiny test model (timings not representative)\n",
                 args.model.c_str());
    args.model = "tests/fixtures/tiny-lm";
  }
  auto counter = GetTargetTokenizer("cl100k_base");
  if (!counter.ok()) {
    std::fprintf(stderr, "%s\n", std::string(counter.status().message()).c_str());
    return 1;
  }
  const TargetTokenizer& cl = **counter;
  auto compressor = Load(args, 8, 64);
  std::printf("model %s (context %d), %d threads\n\n", args.model.c_str(),
              compressor->language_model().max_context(), args.threads);
  const int reps = args.quick ? 1 : args.reps;

  // 1. Latency and tokens/s by size, rate and mode.
  if (args.section == 0 || args.section == 1) {
    const std::vector<size_t> sizes =
        args.quick ? std::vector<size_t>{1000, 4000} : std::vector<size_t>{1000, 4000, 16000};
    const std::vector<double> rates = {0.5, 0.2, 0.1};
    std::printf("%-8s %-6s %-15s %10s %10s %12s %8s\n", "tokens", "rate", "mode", "ms", "tok/s",
                "achieved", "kept");
    double t1k[2][3] = {}, t16k[2][3] = {};
    for (size_t size : sizes) {
      Prompt plain;
      plain.context.push_back(Prose(cl, size, 7));
      const Prompt docs = Documents(cl, size, 11);
      for (size_t ri = 0; ri < rates.size(); ++ri) {
        for (int mode = 0; mode < 2; ++mode) {
          CompressOptions o;
          o.rate = rates[ri];
          if (mode == 1) {
            o.rank = RankMethod::kQuestion;
            o.contrastive = true;
            o.dynamic_ratio = 0.3;
            o.reorder = Reorder::kTwoStage;
          }
          CompressResult r;
          const double ms = Time(*compressor, mode == 0 ? plain : docs, o, reps, &r);
          std::printf("%-8zu %-6.2f %-15s %10.1f %10.0f %12.4f %8s\n", r.origin_tokens, rates[ri],
                      mode == 0 ? "plain" : "question-aware", ms, r.origin_tokens / (ms / 1000.0),
                      r.rate,
                      mode == 1 && r.prompt.find("Solberg") != std::string::npos ? "answer" : "");
          if (size == 1000) t1k[mode][ri] = ms;
          if (size == 16000) t16k[mode][ri] = ms;
        }
      }
    }
    if (!args.quick) {
      std::printf("\ngrowth 16k/1k (goal <= 17):");
      for (int mode = 0; mode < 2; ++mode) {
        for (size_t ri = 0; ri < rates.size(); ++ri) {
          std::printf(" %s@%.1f=%.1f", mode == 0 ? "plain" : "qa", rates[ri],
                      t16k[mode][ri] / t1k[mode][ri]);
        }
      }
      std::printf("\n");
    }
  }

  // 2. The 10,000-token goal, against the cost of one plain scoring pass over the same tokens
  //    (ScoreSequences in context-sized windows), measured in the same run: the ratio says how
  //    much work the method adds over reading the prompt once, whatever the machine's load.
  if (args.section == 0 || args.section == 2) {
    Prompt p;
    p.context.push_back(Prose(cl, 10000, 21));
    auto tokenizer = LmTokenizer::Load(args.model);
    double once_ms = 0;
    size_t lm_tokens = 0;
    if (tokenizer.ok()) {
      auto encoded = (*tokenizer)->Encode(p.context[0]);
      if (encoded.ok()) {
        const size_t window = static_cast<size_t>(compressor->language_model().max_context()) - 1;
        std::vector<std::vector<int32_t>> windows;
        for (size_t b = 0; b < encoded->size(); b += window) {
          std::vector<int32_t> ids;
          for (size_t k = b; k < std::min(encoded->size(), b + window); ++k) {
            ids.push_back((*encoded)[k].id);
          }
          windows.push_back(std::move(ids));
        }
        lm_tokens = encoded->size();
        std::vector<double> runs;
        for (int r = 0; r < reps; ++r) {
          const auto t = Clock::now();
          for (const auto& w : windows) (void)compressor->language_model().ScoreSequences({w});
          runs.push_back(MsSince(t));
        }
        once_ms = Median(runs);
      }
    }
    std::printf("\n10k-token prompt (%zu scoring-model tokens): one scoring pass %.0f ms\n",
                lm_tokens, once_ms);
    // The work, independent of the machine's load: tokens the model ran per prompt token, and
    // forward passes.
    const LanguageModel& lm = compressor->language_model();
    std::vector<bool> kept_chars[2][2];  // [exact][rate index]: kept characters of the original
    for (bool exact : {false, true}) {
      for (int ri = 0; ri < 2; ++ri) {
        const double rate = ri == 0 ? 0.5 : 0.2;
        CompressOptions o;
        o.rate = rate;
        o.exact_past = exact;
        o.explain = true;
        CompressResult r;
        const InferenceStats before = StatsOf(lm);
        const double ms = Time(*compressor, p, o, reps, &r);
        const InferenceStats after = StatsOf(lm);
        const double run = static_cast<double>(after.tokens - before.tokens) / reps;
        const double passes = static_cast<double>(after.batches - before.batches) / reps;
        std::printf(
            "  %s past, rate %.1f: %.0f ms = %.2f scoring passes (goal <= 2000 ms on 2 cores: "
            "%.2fx); ran %.2f tokens per prompt token in %.0f forward passes\n",
            exact ? "exact " : "reused", rate, ms, once_ms > 0 ? ms / once_ms : 0.0, 2000.0 / ms,
            lm_tokens > 0 ? run / lm_tokens : 0.0, passes);
        for (const CompressResult::Piece& piece : r.explanation) {
          kept_chars[exact][ri].insert(kept_chars[exact][ri].end(), piece.text.size(), piece.kept);
        }
      }
    }
    // How much the reused past changes the decisions: of the text the exact past keeps, the
    // share the reused past keeps too.
    for (int ri = 0; ri < 2; ++ri) {
      const std::vector<bool>& reused = kept_chars[0][ri];
      const std::vector<bool>& exact = kept_chars[1][ri];
      size_t both = 0, kept = 0;
      for (size_t i = 0; i < std::min(reused.size(), exact.size()); ++i) {
        kept += exact[i];
        both += exact[i] && reused[i];
      }
      std::printf("  rate %.1f: the reused past keeps %.1f%% of what the exact past keeps\n",
                  ri == 0 ? 0.5 : 0.2, kept > 0 ? 100.0 * both / kept : 0.0);
    }
  }

  // 3. Eight concurrent callers, batching on vs off.
  if (args.section == 0 || args.section == 3) {
    std::vector<Prompt> prompts(8);
    for (size_t i = 0; i < prompts.size(); ++i) {
      prompts[i].context.push_back(Prose(cl, 1000, 100 + static_cast<uint32_t>(i)));
    }
    double per_s[2] = {};
    for (int batching = 1; batching >= 0; --batching) {
      auto c = batching ? Load(args, 8, 0) : Load(args, 1, 0);
      CompressOptions o;
      o.rate = 0.3;
      const int rounds = args.quick ? 1 : 2;
      const auto t = Clock::now();
      std::vector<std::thread> threads;
      for (size_t i = 0; i < prompts.size(); ++i) {
        threads.emplace_back([&, i] {
          for (int k = 0; k < rounds; ++k) (void)c->Compress(prompts[i], o);
        });
      }
      for (auto& th : threads) th.join();
      per_s[batching] = prompts.size() * rounds / (MsSince(t) / 1000.0);
      std::printf("8 callers, batching %s: %.2f prompts/s\n", batching ? "on " : "off",
                  per_s[batching]);
    }
    std::printf("batching speed-up: %.2fx\n", per_s[1] / per_s[0]);
  }

  // 4. Cache hits for a repeated system prompt.
  if (args.section == 0 || args.section == 4) {
    const std::string system = Prose(cl, 2000, 33);
    CompressOptions o;
    o.rate = 0.4;
    const auto t = Clock::now();
    (void)compressor->CompressText(system, o);
    const double miss = MsSince(t);
    std::vector<double> hits;
    for (int i = 0; i < 200; ++i) {
      const auto h = Clock::now();
      auto r = compressor->CompressText(system, o);
      hits.push_back(MsSince(h));
      if (!r.ok() || !r->cache_hit) std::fprintf(stderr, "expected a cache hit\n");
    }
    std::printf("\ncache: miss %.1f ms, hit %.3f ms median (goal < 1 ms), %.0fx\n", miss,
                Median(hits), miss / Median(hits));
  }

  // 5. Achieved rate against the target.
  if (args.section == 0 || args.section == 5) {
    std::printf("\nachieved rate (target tokens), |error| relative to the rate:\n%-8s", "tokens");
    for (double rate : {0.5, 0.33, 0.2, 0.1}) std::printf("   rate %-14.2f", rate);
    std::printf("\n");
    const std::vector<size_t> lengths = args.quick
                                            ? std::vector<size_t>{50, 200, 1000}
                                            : std::vector<size_t>{50, 200, 1000, 5000, 20000};
    for (size_t n : lengths) {
      Prompt p;
      p.context.push_back(Prose(cl, n, static_cast<uint32_t>(n)));
      std::printf("%-8zu", n);
      for (double rate : {0.5, 0.33, 0.2, 0.1}) {
        CompressOptions o;
        o.rate = rate;
        CompressResult r;
        Time(*compressor, p, o, 1, &r);
        std::printf("   %.4f (%5.2f%%)     ", r.rate, 100.0 * std::fabs(r.rate - rate) / rate);
      }
      std::printf("\n");
    }
  }
  return 0;
}

}  // namespace
}  // namespace terse::compressor

int main(int argc, char** argv) {
  // OpenMP's spinning wait collapses throughput when the cores are shared (10x measured here);
  // the policy is read when the runtime loads, so set it and start again.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);
  }
  return terse::compressor::Main(argc, argv);
}
