#include "proxy/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace terse::proxy {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(HistogramTest, BucketsAreUpperBoundsInclusive) {
  Histogram h({1, 2, 5});
  h.Observe(0.5);
  h.Observe(1);  // le="1" includes 1
  h.Observe(1.5);
  h.Observe(7);  // +Inf
  EXPECT_EQ(h.BucketCount(0), 2u);
  EXPECT_EQ(h.BucketCount(1), 1u);
  EXPECT_EQ(h.BucketCount(2), 0u);
  EXPECT_EQ(h.BucketCount(3), 1u);
  EXPECT_EQ(h.Count(), 4u);
  EXPECT_DOUBLE_EQ(h.Sum(), 10);
}

TEST(MetricsTest, RendersCountersWithHelpTypeAndLabels) {
  Metrics m;
  m.RecordRequest("chat", "chat_completions", 200, absl::Milliseconds(30));
  m.RecordRequest("chat", "chat_completions", 200, absl::Milliseconds(3));
  m.RecordRequest("", "chat_completions", 400, absl::Milliseconds(1));
  m.RecordError("", "chat_completions", "invalid_request_error");
  std::string text = m.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("# HELP terse_requests_total "));
  EXPECT_THAT(text, HasSubstr("# TYPE terse_requests_total counter\n"));
  EXPECT_THAT(text, HasSubstr("terse_requests_total{route=\"chat\",operation=\"chat_completions\","
                              "status=\"200\"} 2\n"));
  EXPECT_THAT(
      text,
      HasSubstr(
          "terse_requests_total{route=\"\",operation=\"chat_completions\",status=\"400\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("terse_errors_total{route=\"\",operation=\"chat_completions\","
                              "type=\"invalid_request_error\"} 1\n"));
}

TEST(MetricsTest, RendersCumulativeHistogramBuckets) {
  Metrics m;
  m.RecordRequest("r", "embeddings", 200, absl::Milliseconds(3));    // <= 0.005
  m.RecordRequest("r", "embeddings", 200, absl::Milliseconds(200));  // <= 0.25
  std::string text = m.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("# TYPE terse_request_duration_seconds histogram\n"));
  EXPECT_THAT(
      text,
      HasSubstr(
          "terse_request_duration_seconds_bucket{operation=\"embeddings\",le=\"0.0025\"} 0\n"));
  EXPECT_THAT(
      text,
      HasSubstr(
          "terse_request_duration_seconds_bucket{operation=\"embeddings\",le=\"0.005\"} 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr("terse_request_duration_seconds_bucket{operation=\"embeddings\",le=\"0.25\"} 2\n"));
  EXPECT_THAT(
      text,
      HasSubstr("terse_request_duration_seconds_bucket{operation=\"embeddings\",le=\"+Inf\"} 2\n"));
  EXPECT_THAT(text,
              HasSubstr("terse_request_duration_seconds_sum{operation=\"embeddings\"} 0.203\n"));
  EXPECT_THAT(text,
              HasSubstr("terse_request_duration_seconds_count{operation=\"embeddings\"} 2\n"));
}

TEST(MetricsTest, InFlightGaugeAndUpstreamAndTokens) {
  Metrics m;
  m.AddInFlight(3);
  m.AddInFlight(-1);
  m.RecordUpstream("r", absl::Milliseconds(10), absl::Milliseconds(50));
  m.RecordTokens("r", 120, 30);
  std::string text = m.RenderPrometheus();
  EXPECT_THAT(text,
              HasSubstr("# TYPE terse_in_flight_requests gauge\nterse_in_flight_requests 2\n"));
  EXPECT_THAT(text, HasSubstr("terse_upstream_first_byte_seconds_count{route=\"r\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("terse_upstream_duration_seconds_bucket{route=\"r\",le=\"0.05\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("terse_upstream_tokens_total{route=\"r\",kind=\"prompt\"} 120\n"));
  EXPECT_THAT(text, HasSubstr("terse_upstream_tokens_total{route=\"r\",kind=\"completion\"} 30\n"));
}

// A route's upstream latencies and tokens are kept together but shown only once recorded: a
// route whose upstream sent no usage has no token series, and one that only booked tokens (an
// answer from the compression cache's route, say) no latency series.
TEST(MetricsTest, EachKindOfARouteSeriesIsShownOnceRecorded) {
  Metrics m;
  m.RecordUpstream("latency-only", absl::Milliseconds(10), absl::Milliseconds(20));
  m.RecordTokens("tokens-only", 5, 6);
  m.RecordTokens("tokens-only", 1, 1);
  const std::string text = m.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("terse_upstream_duration_seconds_count{route=\"latency-only\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("route=\"latency-only\",kind=")));
  EXPECT_THAT(
      text, HasSubstr("terse_upstream_tokens_total{route=\"tokens-only\",kind=\"completion\"} "
                      "7\nterse_upstream_tokens_total{route=\"tokens-only\",kind=\"prompt\"} 6\n"));
  EXPECT_THAT(text, Not(HasSubstr("seconds_count{route=\"tokens-only\"}")));
  EXPECT_THAT(text, HasSubstr("# TYPE terse_upstream_tokens_total counter\n"));
}

TEST(MetricsTest, CompressionCounters) {
  Metrics m;
  m.RecordCompression("r", 1000, 400, absl::Milliseconds(80), /*cache_hit=*/false);
  m.RecordCompression("r", 1000, 400, absl::Milliseconds(1), /*cache_hit=*/true);
  m.RecordCompressionFallback("r");
  std::string text = m.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("terse_compression_tokens_in_total{route=\"r\"} 2000\n"));
  EXPECT_THAT(text, HasSubstr("terse_compression_tokens_out_total{route=\"r\"} 800\n"));
  EXPECT_THAT(text, HasSubstr("terse_compression_tokens_saved_total{route=\"r\"} 1200\n"));
  EXPECT_THAT(text, HasSubstr("terse_compression_cache_hits_total{route=\"r\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("terse_compression_fallbacks_total{route=\"r\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("terse_compression_rate_bucket{le=\"0.4\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("terse_compression_rate_bucket{le=\"0.3\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("terse_compression_duration_seconds_count 2\n"));
}

TEST(MetricsTest, EscapesLabelValues) {
  Metrics m;
  m.RecordRequest("a\"b\\c\nd", "chat_completions", 200, absl::ZeroDuration());
  EXPECT_THAT(m.RenderPrometheus(), HasSubstr("route=\"a\\\"b\\\\c\\nd\""));
  EXPECT_THAT(m.RenderPrometheus(), Not(HasSubstr("c\nd")));
}

TEST(MetricsTest, ConcurrentRecordingLosesNothing) {
  Metrics m;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < kPerThread; ++i) {
        m.RecordRequest(t % 2 ? "odd" : "even", "chat_completions", 200, absl::Milliseconds(1));
      }
    });
  }
  for (auto& t : threads) t.join();
  std::string text = m.RenderPrometheus();
  EXPECT_THAT(text,
              HasSubstr("route=\"odd\",operation=\"chat_completions\",status=\"200\"} 10000\n"));
  EXPECT_THAT(text,
              HasSubstr("route=\"even\",operation=\"chat_completions\",status=\"200\"} 10000\n"));
  EXPECT_THAT(
      text,
      HasSubstr("terse_request_duration_seconds_count{operation=\"chat_completions\"} 20000\n"));
}

}  // namespace
}  // namespace terse::proxy
