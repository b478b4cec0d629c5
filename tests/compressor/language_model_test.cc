// LanguageModel on the TorchScript backend, against the tiny random-weight fixture model
// (tests/fixtures/tiny-lm: vocab 512, context 128, 2 layers).
#include "compressor/language_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "base/json.h"
#include "compressor/language_model_probes.h"
#include "compressor/torch_language_model.h"
#include "tests/support/status_matchers.h"

namespace terse::compressor {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::HasSubstr;

// tiny-lm predates the copy component (keys and values in past only); tiny-lm-copy has it.
std::string FixtureDir(const std::string& name = "tiny-lm") {
  const char* root = std::getenv("TERSE_SOURCE_DIR");
  return std::string(root != nullptr ? root : ".") + "/tests/fixtures/" + name;
}

LanguageModelOptions TinyOptions(const std::string& name = "tiny-lm") {
  LanguageModelOptions options;
  options.model_dir = FixtureDir(name);
  options.threads = 1;
  return options;
}

// Token ids of the tiny vocabulary, avoiding the special ids 0..3.
std::vector<int32_t> RandomTokens(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(4, 511);
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = id(rng);
  return tokens;
}

std::vector<int32_t> Concat(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  std::vector<int32_t> out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

std::vector<float> Tail(const std::vector<float>& v, size_t n) {
  return std::vector<float>(v.end() - static_cast<ptrdiff_t>(n), v.end());
}

void ExpectNear(const std::vector<float>& actual, const std::vector<float>& expected,
                float tolerance) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], tolerance) << "at token " << i;
  }
}

void ExpectFiniteScores(const std::vector<float>& scores) {
  for (float s : scores) {
    EXPECT_TRUE(std::isfinite(s));
    EXPECT_GE(s, 0.0f);  // -log p of a probability
  }
}

// Every contract test runs on both fixtures: the copy component's ids must follow the keys
// and values through batching, sliding and AppendScored.
class LanguageModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto loaded = LanguageModel::Load(TinyOptions(GetParam()));
    ASSERT_THAT(loaded, IsOk());
    owned_ = std::move(loaded).value();
    model_ = owned_.get();
  }
  std::unique_ptr<LanguageModel> owned_;
  LanguageModel* model_ = nullptr;
};
INSTANTIATE_TEST_SUITE_P(Fixtures, LanguageModelTest, ::testing::Values("tiny-lm", "tiny-lm-copy"));

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::path(::testing::TempDir()) /
            ("terse_lm_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

TEST(LanguageModelLoadTest, MissingDirectoryIsNotFound) {
  LanguageModelOptions options = TinyOptions();
  options.model_dir = "tests/fixtures/no-such-model";
  EXPECT_THAT(LanguageModel::Load(options),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-model")));
}

TEST(LanguageModelLoadTest, DirectoryWithoutModelFileIsNotFound) {
  TempDir dir;
  LanguageModelOptions options = TinyOptions();
  options.model_dir = dir.path().string();
  EXPECT_THAT(LanguageModel::Load(options),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("model.pt")));
}

TEST(LanguageModelLoadTest, CorruptModelFileIsInvalidArgument) {
  TempDir dir;
  std::ofstream(dir.path() / "model.pt") << "this is not a TorchScript archive";
  LanguageModelOptions options = TinyOptions();
  options.model_dir = dir.path().string();
  EXPECT_THAT(LanguageModel::Load(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot load TorchScript")));
}

TEST(LanguageModelLoadTest, BadOptionsAreInvalidArgument) {
  LanguageModelOptions options = TinyOptions();
  options.device = "tpu";
  EXPECT_THAT(LanguageModel::Load(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tpu")));
  options = TinyOptions();
  options.max_batch_size = 0;
  EXPECT_THAT(LanguageModel::Load(options), StatusIs(absl::StatusCode::kInvalidArgument));
  options = TinyOptions();
  options.threads = -1;
  EXPECT_THAT(LanguageModel::Load(options), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(LanguageModelLoadTest, AutoDeviceFallsBackToCpuAndCudaIsAnErrorWithoutIt) {
  auto model = LanguageModel::Load(TinyOptions());
  ASSERT_THAT(model, IsOk());
  const std::string device = (*model)->device();
  if (device != "cpu") {
    EXPECT_EQ(device.rfind("cuda", 0), 0u) << device;
    GTEST_SKIP() << "CUDA present: the fallback is not exercised here";
  }
  LanguageModelOptions options = TinyOptions();
  options.device = "cuda";
  EXPECT_THAT(LanguageModel::Load(options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cuda")));
  options.device = "cpu";
  auto cpu = LanguageModel::Load(options);
  ASSERT_THAT(cpu, IsOk());
  EXPECT_EQ((*cpu)->device(), "cpu");
}

TEST_P(LanguageModelTest, ReportsArchitectureAndFileDigest) {
  EXPECT_EQ(model_->max_context(), 128);
  EXPECT_EQ(model_->vocab_size(), 512);
  std::ifstream card(FixtureDir(GetParam()) + "/model.json");
  const Json json = Json::parse(card);
  EXPECT_EQ(model_->digest(), json["files"]["model.pt"]["sha256"].get<std::string>());
}

TEST_P(LanguageModelTest, ScoreSequencesGivesOneFiniteScorePerToken) {
  const std::vector<std::vector<int32_t>> sequences = {
      RandomTokens(1, 1), RandomTokens(17, 2), {}, RandomTokens(127, 3)};
  auto scores = model_->ScoreSequences(sequences);
  ASSERT_THAT(scores, IsOk());
  ASSERT_EQ(scores->size(), sequences.size());
  for (size_t i = 0; i < sequences.size(); ++i) {
    EXPECT_EQ((*scores)[i].size(), sequences[i].size());
    ExpectFiniteScores((*scores)[i]);
  }
  auto none = model_->ScoreSequences({});
  ASSERT_THAT(none, IsOk());
  EXPECT_TRUE(none->empty());
}

TEST_P(LanguageModelTest, ScoresDoNotDependOnOtherSequencesInTheBatch) {
  const auto a = RandomTokens(30, 4);
  const auto b = RandomTokens(9, 5);
  auto alone = model_->ScoreSequences({a});
  auto together = model_->ScoreSequences({b, a, RandomTokens(22, 6)});
  ASSERT_THAT(alone, IsOk());
  ASSERT_THAT(together, IsOk());
  ExpectNear((*together)[1], (*alone)[0], 1e-5f);
}

TEST_P(LanguageModelTest, TokensOutsideTheVocabularyAreInvalidArgument) {
  EXPECT_THAT(model_->ScoreSequences({{5, 512}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(model_->ScoreSequences({{-1}}), StatusIs(absl::StatusCode::kInvalidArgument));
  auto session = model_->NewSession();
  const std::vector<int32_t> bad = {7, 600};
  EXPECT_THAT(session->Append(bad), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(session->past_length(), 0);
}

TEST_P(LanguageModelTest, LongSequencesUseASlidingWindow) {
  const auto tokens = RandomTokens(400, 7);
  auto scores = model_->ScoreSequences({tokens});
  ASSERT_THAT(scores, IsOk());
  ASSERT_EQ((*scores)[0].size(), tokens.size());
  ExpectFiniteScores((*scores)[0]);
  // The first window is the sequence's start as it would be scored alone.
  auto head = model_->ScoreSequences({std::vector<int32_t>(tokens.begin(), tokens.begin() + 127)});
  ASSERT_THAT(head, IsOk());
  ExpectNear(std::vector<float>((*scores)[0].begin(), (*scores)[0].begin() + 127), (*head)[0],
             1e-5f);
}

TEST_P(LanguageModelTest, ScoreContinuationsIsTheTailOfScoreSequences) {
  for (size_t prefix_length : {0, 1, 40, 300}) {
    const auto prefix = RandomTokens(prefix_length, 10 + prefix_length);
    const auto target = RandomTokens(25, 11);
    auto full = model_->ScoreSequences({Concat(prefix, target)});
    auto tail = model_->ScoreContinuations({prefix}, {target});
    ASSERT_THAT(full, IsOk());
    ASSERT_THAT(tail, IsOk());
    ExpectNear((*tail)[0], Tail((*full)[0], target.size()), 1e-5f);
  }
  EXPECT_THAT(model_->ScoreContinuations({{5}}, {}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(LanguageModelTest, SessionMatchesScoringTheConcatenation) {
  const auto a = RandomTokens(23, 20);
  const auto b = RandomTokens(31, 21);
  const auto c = RandomTokens(12, 22);
  auto session = model_->NewSession();
  EXPECT_EQ(session->past_length(), 0);

  auto first = session->Score(a);  // conditioned on BOS only
  auto full_a = model_->ScoreSequences({a});
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(full_a, IsOk());
  ExpectNear(*first, (*full_a)[0], 1e-4f);

  ASSERT_THAT(session->Append(a), IsOk());
  ASSERT_THAT(session->Append(b), IsOk());
  EXPECT_EQ(session->past_length(), 54);
  auto scored = session->Score(c);
  auto again = session->Score(c);  // Score leaves the past unchanged
  auto full = model_->ScoreSequences({Concat(Concat(a, b), c)});
  ASSERT_THAT(scored, IsOk());
  ASSERT_THAT(again, IsOk());
  ASSERT_THAT(full, IsOk());
  ExpectNear(*scored, Tail((*full)[0], c.size()), 1e-4f);
  EXPECT_EQ(*again, *scored);
  EXPECT_EQ(session->past_length(), 54);

  auto empty = session->Score({});
  ASSERT_THAT(empty, IsOk());
  EXPECT_TRUE(empty->empty());
}

TEST_P(LanguageModelTest, SessionSlidesPastTheContextKeepingTheSinkTokens) {
  // 219 = 127 (fills the window after BOS) + 92: the window slides once to the sink tokens plus
  // the 16 newest tokens (an eighth of the context), then takes the other 92 (112 in all).
  // Scoring c's 20 tokens would overflow it, so it slides again first.
  const auto a = RandomTokens(219, 30);
  const auto c = RandomTokens(20, 31);
  auto session = model_->NewSession();
  ASSERT_THAT(session->Append(a), IsOk());
  EXPECT_EQ(session->past_length(), 219);
  auto scored = session->Score(c);
  ASSERT_THAT(scored, IsOk());
  ExpectFiniteScores(*scored);

  // What the window holds then: BOS, a[0..3), a[203..219): scored afresh, positions included.
  std::vector<int32_t> window(a.begin(), a.begin() + 3);
  window.insert(window.end(), a.begin() + 203, a.end());
  auto expected = model_->ScoreContinuations({window}, {c});
  ASSERT_THAT(expected, IsOk());
  ExpectNear(*scored, (*expected)[0], 1e-4f);

  // Far past the context, in one call and in many, scores stay finite.
  const auto long_tokens = RandomTokens(700, 32);
  auto long_scores = session->Score(long_tokens);
  ASSERT_THAT(long_scores, IsOk());
  EXPECT_EQ(long_scores->size(), long_tokens.size());
  ExpectFiniteScores(*long_scores);
  for (int i = 0; i < 20; ++i) {
    ASSERT_THAT(session->Append(RandomTokens(37, 40 + i)), IsOk());
  }
  EXPECT_EQ(session->past_length(), 219 + 20 * 37);
  auto late = session->Score(c);
  ASSERT_THAT(late, IsOk());
  ExpectFiniteScores(*late);
}

TEST_P(LanguageModelTest, AppendScoredKeepingEverythingIsAppend) {
  const auto a = RandomTokens(40, 50);
  const auto c = RandomTokens(15, 51);
  auto reused = model_->NewSession();
  ASSERT_THAT(reused->Score(a), IsOk());
  ASSERT_THAT(reused->AppendScored(std::vector<bool>(a.size(), true)), IsOk());
  EXPECT_EQ(reused->past_length(), 40);
  auto exact = model_->NewSession();
  ASSERT_THAT(exact->Append(a), IsOk());
  auto from_reused = reused->Score(c);
  auto from_exact = exact->Score(c);
  ASSERT_THAT(from_reused, IsOk());
  ASSERT_THAT(from_exact, IsOk());
  ExpectNear(*from_reused, *from_exact, 1e-4f);
}

TEST_P(LanguageModelTest, AppendScoredRunsNoForwardPass) {
  const auto a = RandomTokens(30, 52);
  const auto c = RandomTokens(12, 53);
  std::vector<bool> keep(a.size());
  for (size_t j = 0; j < keep.size(); ++j) keep[j] = j % 3 != 1;
  auto session = model_->NewSession();
  ASSERT_THAT(session->Score(a), IsOk());
  const InferenceStats before = StatsOf(*model_);
  ASSERT_THAT(session->AppendScored(keep), IsOk());
  EXPECT_EQ(StatsOf(*model_).batches, before.batches);
  EXPECT_EQ(session->past_length(), 20);
  // The next pass runs the last kept token (left pending) and the new tokens.
  auto next = session->Score(c);
  ASSERT_THAT(next, IsOk());
  EXPECT_EQ(next->size(), c.size());
  ExpectFiniteScores(*next);
  const InferenceStats after = StatsOf(*model_);
  EXPECT_EQ(after.batches, before.batches + 1);
  EXPECT_EQ(after.tokens, before.tokens + 1 + static_cast<int64_t>(c.size()));
  // It differs from the exact past: the kept entries saw the dropped tokens.
  std::vector<int32_t> kept;
  for (size_t j = 0; j < a.size(); ++j) {
    if (keep[j]) kept.push_back(a[j]);
  }
  auto exact = model_->ScoreContinuations({kept}, {c});
  ASSERT_THAT(exact, IsOk());
  EXPECT_NE(*next, (*exact)[0]);
}

TEST_P(LanguageModelTest, AppendScoredKeepingNothingLeavesThePast) {
  const auto a = RandomTokens(20, 54);
  const auto c = RandomTokens(9, 55);
  auto session = model_->NewSession();
  ASSERT_THAT(session->Append(RandomTokens(11, 56)), IsOk());
  auto before = session->Score(c);
  ASSERT_THAT(session->Score(a), IsOk());
  ASSERT_THAT(session->AppendScored(std::vector<bool>(a.size(), false)), IsOk());
  EXPECT_EQ(session->past_length(), 11);
  auto after = session->Score(c);
  ASSERT_THAT(before, IsOk());
  ASSERT_THAT(after, IsOk());
  ExpectNear(*after, *before, 1e-5f);
}

TEST_P(LanguageModelTest, AppendScoredNeedsTheLastScoreOfThisPast) {
  const auto a = RandomTokens(10, 57);
  auto session = model_->NewSession();
  EXPECT_THAT(session->AppendScored({true}), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_THAT(session->Score(a), IsOk());
  EXPECT_THAT(session->AppendScored({true, false}), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(session->Append(a), IsOk());  // the past changed: the scored cache is stale
  EXPECT_THAT(session->AppendScored(std::vector<bool>(a.size(), true)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(session->past_length(), 10);
}

TEST_P(LanguageModelTest, AppendScoredSlidesPastTheContext) {
  // Segments of 37 tokens keeping two in three, far past the 128-token context: the window
  // slides with a pending token in it, and segments that straddle a slide are run again.
  auto session = model_->NewSession();
  int kept = 0;
  for (int i = 0; i < 25; ++i) {
    const auto segment = RandomTokens(37, 60 + i);
    auto scores = session->Score(segment);
    ASSERT_THAT(scores, IsOk());
    ASSERT_EQ(scores->size(), segment.size());
    ExpectFiniteScores(*scores);
    std::vector<bool> keep(segment.size());
    for (size_t j = 0; j < keep.size(); ++j) {
      keep[j] = (j + i) % 3 != 0;
      kept += keep[j] ? 1 : 0;
    }
    ASSERT_THAT(session->AppendScored(keep), IsOk());
    EXPECT_EQ(session->past_length(), kept);
  }
}

TEST_P(LanguageModelTest, SessionOutlivesItsModelHandle) {
  auto model = LanguageModel::Load(TinyOptions(GetParam()));
  ASSERT_THAT(model, IsOk());
  auto session = (*model)->NewSession();
  model->reset();
  ASSERT_THAT(session->Append(RandomTokens(5, 50)), IsOk());
  auto scores = session->Score(RandomTokens(5, 51));
  ASSERT_THAT(scores, IsOk());
  ExpectFiniteScores(*scores);
}

TEST_P(LanguageModelTest, IsDeterministic) {
  const auto tokens = RandomTokens(150, 60);
  auto first = model_->ScoreSequences({tokens, RandomTokens(8, 61)});
  auto second = model_->ScoreSequences({tokens, RandomTokens(8, 61)});
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(*first, *second);
}

// The copy fixture scores a passage's second occurrence far below its first, on every path;
// the network alone (random weights) barely notices the repeat.
TEST(LanguageModelCopyTest, ARepeatedPassageIsCheapTheSecondTime) {
  const auto passage = RandomTokens(40, 70);
  const auto text = Concat(Concat(passage, RandomTokens(10, 71)), passage);
  auto mean = [](const std::vector<float>& v, size_t from, size_t n) {
    double sum = 0;
    for (size_t i = from; i < from + n; ++i) sum += v[i];
    return sum / static_cast<double>(n);
  };
  for (const char* name : {"tiny-lm", "tiny-lm-copy"}) {
    SCOPED_TRACE(name);
    auto model = LanguageModel::Load(TinyOptions(name));
    ASSERT_THAT(model, IsOk());
    auto scores = (*model)->ScoreSequences({text});
    ASSERT_THAT(scores, IsOk());
    const double ratio = mean((*scores)[0], 50, 40) / mean((*scores)[0], 0, 40);
    if (std::string(name) == "tiny-lm") {
      EXPECT_GT(ratio, 0.8);
    } else {
      EXPECT_LT(ratio, 0.3);
    }
    // The session path: the first occurrence in the past, the second scored against it.
    auto session = (*model)->NewSession();
    ASSERT_THAT(session->Append(Concat(passage, RandomTokens(10, 71))), IsOk());
    auto second = session->Score(passage);
    ASSERT_THAT(second, IsOk());
    ExpectNear(*second, Tail((*scores)[0], 40), 1e-4f);
  }
}

TEST(LanguageModelBatchingTest, QueuedSequencesRunAsOneBatch) {
  LanguageModelOptions options = TinyOptions();
  options.max_batch_size = 8;
  auto model = LanguageModel::Load(options);
  ASSERT_THAT(model, IsOk());
  std::vector<std::vector<int32_t>> sequences;
  // Short enough that all 8 fit the worker's token budget (the context: 128 tokens).
  for (int i = 0; i < 8; ++i) sequences.push_back(RandomTokens(8 + i, 70 + i));
  std::vector<std::vector<float>> one_by_one;
  for (const auto& s : sequences) {
    auto scores = (*model)->ScoreSequences({s});
    ASSERT_THAT(scores, IsOk());
    one_by_one.push_back((*scores)[0]);
  }
  const InferenceStats before = StatsOf(**model);
  auto batched = (*model)->ScoreSequences(sequences);
  ASSERT_THAT(batched, IsOk());
  const InferenceStats after = StatsOf(**model);
  EXPECT_EQ(after.batches - before.batches, 1);
  EXPECT_EQ(after.max_batch_steps, 8);
  for (size_t i = 0; i < sequences.size(); ++i) ExpectNear((*batched)[i], one_by_one[i], 1e-5f);
}

TEST(LanguageModelBatchingTest, BatchingOffRunsOneSequenceAtATime) {
  LanguageModelOptions options = TinyOptions();
  options.max_batch_size = 1;
  auto model = LanguageModel::Load(options);
  ASSERT_THAT(model, IsOk());
  std::vector<std::vector<int32_t>> sequences(5, RandomTokens(10, 80));
  ASSERT_THAT((*model)->ScoreSequences(sequences), IsOk());
  EXPECT_EQ(StatsOf(**model).max_batch_steps, 1);
}

// Sessions with caches of different lengths, stalled behind a task on the worker, then released
// together: they run as one padded batch and score as they do one by one.
class LanguageModelPaddedBatchTest : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Fixtures, LanguageModelPaddedBatchTest,
                         ::testing::Values("tiny-lm", "tiny-lm-copy"));

TEST_P(LanguageModelPaddedBatchTest, SessionStepsWithDifferentPastsBatchTogether) {
  constexpr int kSessions = 8;
  LanguageModelOptions options = TinyOptions(GetParam());
  options.max_batch_size = kSessions;
  auto loaded = LanguageModel::Load(options);
  ASSERT_THAT(loaded, IsOk());
  LanguageModel& model = **loaded;

  std::vector<std::unique_ptr<LanguageModel::Session>> sessions;
  std::vector<std::vector<int32_t>> nexts;
  std::vector<std::vector<float>> one_by_one;
  for (int i = 0; i < kSessions; ++i) {
    sessions.push_back(model.NewSession());
    const auto past = RandomTokens(20 + 5 * i, 90 + i);
    ASSERT_THAT(sessions.back()->Append(past), IsOk());
    // A stretch of the past again, so a copy component has matches to read through padding.
    nexts.push_back(Concat(RandomTokens(4, 100 + i), {past.begin() + i, past.begin() + 4 + 2 * i}));
    auto scores = sessions.back()->Score(nexts.back());
    ASSERT_THAT(scores, IsOk());
    one_by_one.push_back(*scores);
  }

  absl::Notification stalled;
  absl::Notification release;
  std::thread gate([&] {
    EXPECT_THAT(RunOnWorker(model,
                            [&] {
                              stalled.Notify();
                              release.WaitForNotification();
                            }),
                IsOk());
  });
  stalled.WaitForNotification();
  std::vector<absl::StatusOr<std::vector<float>>> batched(kSessions);
  std::vector<std::thread> callers;
  for (int i = 0; i < kSessions; ++i) {
    callers.emplace_back([&, i] { batched[i] = sessions[i]->Score(nexts[i]); });
  }
  for (int wait = 0; wait < 3000 && StatsOf(model).queued < kSessions; ++wait) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const InferenceStats before = StatsOf(model);
  EXPECT_EQ(before.queued, kSessions);
  release.Notify();
  for (auto& t : callers) t.join();
  gate.join();
  const InferenceStats after = StatsOf(model);
  EXPECT_EQ(after.batches - before.batches, 1);
  EXPECT_EQ(after.max_batch_steps, kSessions);
  for (int i = 0; i < kSessions; ++i) {
    ASSERT_THAT(batched[i], IsOk());
    ExpectNear(*batched[i], one_by_one[i], 1e-5f);
  }
}

TEST(LanguageModelBatchingTest, ConcurrentCallersGetTheirOwnResults) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 6;
  LanguageModelOptions options = TinyOptions();
  options.max_batch_size = 8;
  options.max_batch_wait_us = 20000;
  auto loaded = LanguageModel::Load(options);
  ASSERT_THAT(loaded, IsOk());
  LanguageModel& model = **loaded;

  // Reference results, one call at a time.
  std::vector<std::vector<int32_t>> items;
  std::vector<std::vector<float>> item_scores;
  std::vector<std::vector<std::vector<float>>> session_scores(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    items.push_back(RandomTokens(15 + 3 * t, 200 + t));
    auto scores = model.ScoreSequences({items.back()});
    ASSERT_THAT(scores, IsOk());
    item_scores.push_back((*scores)[0]);
    auto session = model.NewSession();
    for (int r = 0; r < kRounds; ++r) {
      const auto segment = RandomTokens(12 + t, 300 + 10 * t + r);
      auto scored = session->Score(segment);
      ASSERT_THAT(scored, IsOk());
      session_scores[t].push_back(*scored);
      ASSERT_THAT(session->Append(segment), IsOk());
    }
  }

  const InferenceStats before = StatsOf(model);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto session = model.NewSession();
      for (int r = 0; r < kRounds; ++r) {
        auto scores = model.ScoreSequences({items[t]});
        const auto segment = RandomTokens(12 + t, 300 + 10 * t + r);
        auto scored = session->Score(segment);
        if (!scores.ok() || !scored.ok() || !session->Append(segment).ok()) {
          ++mismatches;
          continue;
        }
        for (size_t k = 0; k < items[t].size(); ++k) {
          if (std::abs((*scores)[0][k] - item_scores[t][k]) > 1e-5f) ++mismatches;
        }
        for (size_t k = 0; k < segment.size(); ++k) {
          if (std::abs((*scored)[k] - session_scores[t][r][k]) > 1e-5f) ++mismatches;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
  const InferenceStats after = StatsOf(model);
  EXPECT_EQ(after.steps - before.steps, kThreads * kRounds * 3);
}

TEST_P(LanguageModelTest, ShapeAndMatmulCeilingOfTheModel) {
  absl::StatusOr<ModelShape> shape = ShapeOf(*model_);
  ASSERT_THAT(shape, IsOk());
  EXPECT_EQ(shape->vocab_size, 512);
  EXPECT_EQ(shape->max_context, 128);
  EXPECT_EQ(shape->n_layer, 2);
  // Keys and values per layer, plus the window's ids where the copy component needs them.
  EXPECT_EQ(shape->past_tensors, GetParam() == "tiny-lm-copy" ? 5 : 4);
  absl::StatusOr<double> flops = MeasureMatmulFlops(*model_, 16, /*repeats=*/1, /*bf16=*/false);
  ASSERT_THAT(flops, IsOk());
  EXPECT_GT(*flops, 0);
}

TEST(LanguageModelProbesTest, WhatATaskThrowsComesBackAsAStatus) {
  auto model = LanguageModel::Load(TinyOptions());
  ASSERT_THAT(model, IsOk());
  EXPECT_THAT(RunOnWorker(**model, [] { throw std::runtime_error("the task broke"); }),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("the task broke")));
  // The worker lives on.
  EXPECT_THAT((*model)->ScoreSequences({RandomTokens(5, 90)}), IsOk());
}

TEST(LanguageModelPlanTest, WindowsScoreEveryTokenOnceWithinTheContext) {
  for (size_t n : {0, 1, 15, 16, 17, 40, 41, 100}) {
    for (size_t from : {size_t{0}, n / 2, n}) {
      std::vector<int32_t> tokens(n);
      for (size_t i = 0; i < n; ++i) tokens[i] = static_cast<int32_t>(100 + i);
      std::vector<int64_t> scored;
      for (const ScoringWindow& w : PlanWindows(tokens, from, /*bos_id=*/1, /*max_context=*/16)) {
        ASSERT_LE(w.ids.size(), 16u);
        ASSERT_EQ(w.ids.size(), w.targets.size());
        EXPECT_EQ(w.ids[0], 1);
        for (size_t j = 0; j < w.targets.size(); ++j) {
          if (w.targets[j] < 0) continue;
          scored.push_back(w.targets[j]);
          // The scored token directly follows its context: a sequence of the input.
          if (w.ids[j] != 1) EXPECT_EQ(w.targets[j], w.ids[j] + 1);
          // Later windows give every scored token at least half the non-sink width of context.
          if (n + 1 > 16) EXPECT_GE(j + 1, std::min<size_t>(w.targets[j] - 100 + 1, 10));
        }
      }
      std::vector<int64_t> expected;
      for (size_t i = from; i < n; ++i) expected.push_back(tokens[i]);
      EXPECT_EQ(scored, expected) << "n=" << n << " from=" << from;
    }
  }
}

}  // namespace
}  // namespace terse::compressor
