// Shared by the compressor's tests: a deterministic fake LanguageModel with scores that behave
// like a real LM's in the ways the method relies on, the tiny test model, and generated text.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "compressor/compressor.h"
#include "compressor/language_model.h"
#include "compressor/lm_tokenizer.h"
#include "compressor/target_tokenizer.h"
#include "gtest/gtest.h"
#include "tests/support/prose.h"

namespace terse::compressor::testing {

// Self-information that depends on the token and on whether it was seen before (repeats are
// predictable), and question-conditioned scores that fall where the prefix quotes the target.
// Stateless apart from sessions, so thread-safe.
class FakeLanguageModel : public LanguageModel {
 public:
  static float Base(int32_t id) { return 1.0f + static_cast<float>((id * 7919) % 13) * 0.5f; }

  class FakeSession : public Session {
   public:
    absl::StatusOr<std::vector<float>> Score(std::span<const int32_t> tokens) override {
      std::vector<int32_t> seen = past_;
      std::vector<float> out;
      for (int32_t id : tokens) {
        const bool repeat = std::find(seen.begin(), seen.end(), id) != seen.end();
        out.push_back(repeat ? 0.2f * Base(id) : Base(id));
        seen.push_back(id);
      }
      last_scored_.assign(tokens.begin(), tokens.end());
      return out;
    }
    absl::Status Append(std::span<const int32_t> tokens) override {
      past_.insert(past_.end(), tokens.begin(), tokens.end());
      last_scored_.clear();
      return absl::OkStatus();
    }
    absl::Status AppendScored(const std::vector<bool>& keep) override {
      if (keep.size() != last_scored_.size()) {
        return absl::InvalidArgumentError("keep flags do not match the last Score");
      }
      std::vector<int32_t> kept;
      for (size_t j = 0; j < keep.size(); ++j) {
        if (keep[j]) kept.push_back(last_scored_[j]);
      }
      return Append(kept);
    }
    int past_length() const override { return static_cast<int>(past_.size()); }

   private:
    std::vector<int32_t> past_;
    std::vector<int32_t> last_scored_;
  };

  absl::StatusOr<std::vector<std::vector<float>>> ScoreSequences(
      const std::vector<std::vector<int32_t>>& sequences) override {
    std::vector<std::vector<float>> out;
    for (const auto& s : sequences) {
      FakeSession session;
      auto scores = session.Score(s);
      if (!scores.ok()) return scores.status();
      out.push_back(*scores);
    }
    return out;
  }

  absl::StatusOr<std::vector<std::vector<float>>> ScoreContinuations(
      const std::vector<std::vector<int32_t>>& prefixes,
      const std::vector<std::vector<int32_t>>& targets) override {
    std::vector<std::vector<float>> out;
    for (size_t i = 0; i < prefixes.size(); ++i) {
      // A target token is predictable when the prefix holds it right after the target's
      // previous token (a bigram match), as a real LM would find a quoted phrase.
      const std::vector<int32_t>& pre = prefixes[i];
      const std::vector<int32_t>& tgt = targets[i];
      std::vector<float> s;
      for (size_t j = 0; j < tgt.size(); ++j) {
        bool seen = false;
        for (size_t k = 0; k < pre.size() && !seen; ++k) {
          seen = pre[k] == tgt[j] && (j == 0 || (k > 0 && pre[k - 1] == tgt[j - 1]));
        }
        s.push_back(seen ? 0.5f : 5.0f);
      }
      out.push_back(std::move(s));
    }
    return out;
  }

  std::unique_ptr<Session> NewSession() override { return std::make_unique<FakeSession>(); }
  int max_context() const override { return 128; }
  int vocab_size() const override { return 512; }
  std::string device() const override { return "cpu"; }
  const std::string& digest() const override { return digest_; }

 private:
  std::string digest_ = "fake-lm";
};

// A model that breaks its contract: every scoring call throws what `raise` throws, as a runtime
// bug or an allocation failure would. The compressor's API must still answer with a status.
class ThrowingLanguageModel : public FakeLanguageModel {
 public:
  explicit ThrowingLanguageModel(std::function<void()> raise) : raise_(std::move(raise)) {}

  class ThrowingSession : public FakeSession {
   public:
    explicit ThrowingSession(std::function<void()> raise) : raise_(std::move(raise)) {}
    absl::StatusOr<std::vector<float>> Score(std::span<const int32_t> tokens) override {
      raise_();
      return FakeSession::Score(tokens);
    }

   private:
    std::function<void()> raise_;
  };

  absl::StatusOr<std::vector<std::vector<float>>> ScoreSequences(
      const std::vector<std::vector<int32_t>>& sequences) override {
    raise_();
    return FakeLanguageModel::ScoreSequences(sequences);
  }
  absl::StatusOr<std::vector<std::vector<float>>> ScoreContinuations(
      const std::vector<std::vector<int32_t>>& prefixes,
      const std::vector<std::vector<int32_t>>& targets) override {
    raise_();
    return FakeLanguageModel::ScoreContinuations(prefixes, targets);
  }
  std::unique_ptr<Session> NewSession() override {
    return std::make_unique<ThrowingSession>(raise_);
  }

 private:
  std::function<void()> raise_;
};

inline std::string TinyModelDir() { return "tests/fixtures/tiny-lm"; }
inline std::string ShippedModelDir() { return "models/terse-small-en"; }

inline std::shared_ptr<const LmTokenizer> TinyTokenizer() {
  static const std::shared_ptr<const LmTokenizer> tokenizer = [] {
    auto t = LmTokenizer::Load(TinyModelDir());
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::shared_ptr<const LmTokenizer>(std::move(*t)) : nullptr;
  }();
  return tokenizer;
}

inline std::shared_ptr<LanguageModel> TinyModel() {
  static const std::shared_ptr<LanguageModel> model = [] {
    LanguageModelOptions options;
    options.model_dir = TinyModelDir();
    options.device = "cpu";
    options.threads = 1;
    auto m = LanguageModel::Load(options);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? std::shared_ptr<LanguageModel>(std::move(*m)) : nullptr;
  }();
  return model;
}

inline std::unique_ptr<Compressor> TinyCompressor(size_t cache_entries = 0) {
  auto c = Compressor::Create(TinyModel(), TinyTokenizer(), cache_entries);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

inline std::unique_ptr<Compressor> FakeCompressor(size_t cache_entries = 0) {
  auto c =
      Compressor::Create(std::make_shared<FakeLanguageModel>(), TinyTokenizer(), cache_entries);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

inline const TargetTokenizer& Cl100k() {
  static const std::shared_ptr<const TargetTokenizer> t = [] {
    auto loaded = GetTargetTokenizer("cl100k_base");
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return *loaded;
  }();
  return *t;
}

// Prose of at least `tokens` cl100k tokens (tests/support/prose.h).
inline std::string Prose(size_t tokens, uint32_t seed = 1) {
  return terse::testing::Prose(Cl100k(), tokens, seed);
}

// `callers` threads at once compress texts[k % texts.size()] with `options`; each must get
// expected[k % texts.size()] byte for byte.
inline void ExpectSameFromManyThreads(Compressor& compressor, const std::vector<std::string>& texts,
                                      const CompressOptions& options,
                                      const std::vector<std::string>& expected, size_t callers) {
  std::vector<std::string> got(callers);
  std::vector<std::thread> threads;
  for (size_t k = 0; k < callers; ++k) {
    threads.emplace_back([&, k] {
      auto r = compressor.CompressText(texts[k % texts.size()], options);
      got[k] = r.ok() ? r->prompt : r.status().ToString();
    });
  }
  for (auto& t : threads) t.join();
  for (size_t k = 0; k < callers; ++k) EXPECT_EQ(got[k], expected[k % texts.size()]);
}

inline double Tolerance(double rate) { return std::max(0.05 * rate, 0.01); }

}  // namespace terse::compressor::testing
