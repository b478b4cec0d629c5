// Process-wide counters, gauges and histograms of the gateway, rendered in the Prometheus text
// format for GET /metrics. Both faces and the pipeline record into one instance.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/node_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace terse::proxy {

// A fixed-bucket histogram. Observe is lock-free; readers may see a sum that is one observation
// ahead of the counts, which Prometheus tolerates.
class Histogram {
 public:
  // `bounds` are the upper bounds of the buckets, strictly increasing; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);

  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Non-cumulative count of bucket `i` (i == bounds().size() is the +Inf bucket).
  uint64_t BucketCount(size_t i) const { return counts_[i].load(std::memory_order_relaxed); }
  uint64_t Count() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1 entries
  std::atomic<double> sum_{0};
};

// Label values of one time series, in the order of the family's label names.
using LabelValues = std::vector<std::string>;
// The same, to look a series up with: nothing is copied.
using LabelView = std::initializer_list<std::string_view>;

// Hashes and compares LabelValues and LabelViews alike, so a lookup allocates nothing.
struct LabelsHash {
  using is_transparent = void;
  template <typename Labels>
  size_t operator()(const Labels& labels) const {
    size_t h = labels.size();
    for (std::string_view value : labels) {
      h = h * 1000003u ^ std::hash<std::string_view>()(value);
    }
    return h;
  }
};
struct LabelsEq {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                      [](std::string_view x, std::string_view y) { return x == y; });
  }
};

// Series of one metric family keyed by their label values. Finding a series takes a shared lock
// and copies nothing; creating one (the first time a label combination is seen) takes the
// exclusive lock. Series are never removed, so references stay valid.
template <typename T>
class Family {
 public:
  // `make` builds the series the first time its labels are seen.
  template <typename Make>
  T& GetOrMake(LabelView labels, Make make) {
    {
      absl::ReaderMutexLock lock(&mu_);
      auto it = series_.find(labels);
      if (it != series_.end()) return *it->second;
    }
    absl::MutexLock lock(&mu_);
    auto& slot = series_[LabelValues(labels.begin(), labels.end())];
    if (!slot) slot = make();
    return *slot;
  }
  T& Get(LabelView labels) {
    return GetOrMake(labels, [] { return std::make_unique<T>(); });
  }

  // Calls fn(labels, series) for each series, sorted by label values for a stable output.
  template <typename Fn>
  void ForEach(Fn fn) const {
    std::vector<std::pair<const LabelValues*, const T*>> all;
    {
      absl::ReaderMutexLock lock(&mu_);
      for (const auto& [labels, series] : series_) all.emplace_back(&labels, series.get());
    }
    std::sort(all.begin(), all.end(),
              [](const auto& a, const auto& b) { return *a.first < *b.first; });
    for (const auto& [labels, series] : all) fn(*labels, *series);
  }

 private:
  mutable absl::Mutex mu_;
  absl::node_hash_map<LabelValues, std::unique_ptr<T>, LabelsHash, LabelsEq> series_
      ABSL_GUARDED_BY(mu_);
};

// The gateway's metrics. Thread-safe; every Record* is cheap enough for the request path (one
// shared-lock lookup plus relaxed atomic adds). Route "" means "no route matched".
class Metrics {
 public:
  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // One finished request: its HTTP status (gRPC calls use the HTTP status of their error too) and
  // the wall time from the face receiving it to the last byte handed back.
  void RecordRequest(std::string_view route, std::string_view operation, int http_status,
                     absl::Duration total);
  // One failed request, by OpenAI error type (`invalid_request_error`, `upstream_error`, ...).
  void RecordError(std::string_view route, std::string_view operation, std::string_view type);
  // The upstream part of a request: time to the first byte (or chunk) and to the end.
  void RecordUpstream(std::string_view route, absl::Duration first_byte, absl::Duration total);
  // Tokens reported by the upstream's `usage`.
  void RecordTokens(std::string_view route, uint64_t prompt_tokens, uint64_t completion_tokens);

  // Requests currently inside the pipeline.
  void AddInFlight(int64_t delta) { in_flight_.fetch_add(delta, std::memory_order_relaxed); }
  int64_t InFlight() const { return in_flight_.load(std::memory_order_relaxed); }

  // One applied compression: prompt tokens before and after (target tokens), how long it took,
  // and whether the result came from the compression cache.
  void RecordCompression(std::string_view route, uint64_t original_tokens,
                         uint64_t compressed_tokens, absl::Duration took, bool cache_hit);
  // A compression that failed or timed out, after which the request went out uncompressed.
  void RecordCompressionFallback(std::string_view route);

  // Tenancy, by the tenant's public id. A settled request: its cost and compression's savings in
  // micro-dollars (a negative saving counts as 0), and whether its compression was shed.
  void RecordTenantSettled(std::string_view tenant, int64_t cost_micros, int64_t savings_micros,
                           bool shed);
  // A refused admission, by reason: forbidden, rate_limited, budget_exhausted, too_large,
  // unpriced, store_error.
  void RecordTenantRefusal(std::string_view tenant, std::string_view reason);
  // What a budget (of the tenant, or of one key: `key` non-empty) has left as last seen, in
  // micro-dollars; negative when a shadow budget is overspent.
  void SetTenantBudgetRemaining(std::string_view tenant, std::string_view key,
                                std::string_view period, int64_t micros);

  // The whole registry in the Prometheus text exposition format (version 0.0.4).
  std::string RenderPrometheus() const;

 private:
  using Counter = std::atomic<uint64_t>;

  // The series of one route that most calls record into, found with one look-up per Record*
  // call: the upstream's latencies and the tokens of its usage. Each kind is rendered once
  // something was recorded (for the latencies: once they hold an observation).
  struct RouteSeries {
    RouteSeries();
    Histogram upstream_first_byte_seconds;
    Histogram upstream_seconds;
    Counter prompt_tokens{0};
    Counter completion_tokens{0};
    std::atomic<bool> tokens_recorded{false};  // usage of 0 tokens is still usage
  };

  Family<Counter> requests_;           // route, operation, status
  Family<Counter> errors_;             // route, operation, type
  Family<Histogram> request_seconds_;  // operation
  Family<RouteSeries> routes_;         // route
  std::atomic<int64_t> in_flight_{0};

  Family<Counter> compression_tokens_in_;     // route
  Family<Counter> compression_tokens_out_;    // route
  Family<Counter> compression_tokens_saved_;  // route
  Family<Counter> compression_cache_hits_;    // route
  Family<Counter> compression_fallbacks_;     // route
  Histogram compression_seconds_;
  Histogram compression_rate_;  // compressed / original tokens

  Family<Counter> tenant_spend_micros_;              // tenant
  Family<Counter> tenant_savings_micros_;            // tenant
  Family<Counter> tenant_shed_;                      // tenant
  Family<Counter> tenant_refusals_;                  // tenant, reason
  Family<std::atomic<int64_t>> tenant_budget_left_;  // tenant, key, period
};

}  // namespace terse::proxy
