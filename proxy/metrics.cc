// The gateway's metrics and their Prometheus text rendering.
#include "proxy/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace terse::proxy {
namespace {

// Latency buckets from 1 ms to 10 minutes: covers a cache hit and a long streamed answer.
std::vector<double> LatencyBounds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
          1,     2.5,    5,     10,   30,    60,   120, 300,  600};
}

std::unique_ptr<Histogram> NewLatencyHistogram() {
  return std::make_unique<Histogram>(LatencyBounds());
}

// Compression runs in milliseconds to a couple of seconds (its timeout).
std::vector<double> CompressionBounds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5};
}

std::vector<double> RateBounds() { return {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0}; }

// Label values may hold any text: escape backslash, double quote and newline.
void AppendEscaped(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

void AppendLabels(std::string& out, const std::vector<std::string_view>& names,
                  const LabelValues& values, std::string_view extra_name = {},
                  std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return;
  out += '{';
  bool first = true;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    if (!first) out += ',';
    first = false;
    out.append(names[i]);
    out += "=\"";
    AppendEscaped(out, values[i]);
    out += '"';
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out.append(extra_name);
    out += "=\"";
    out.append(extra_value);
    out += '"';
  }
  out += '}';
}

// Prometheus wants Go-style floats: "+Inf", and the shortest text that reads back exactly
// ("0.1", "10", not "0.10000000000000001" or "1e+01").
std::string FormatDouble(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, end);
}

void AppendHeader(std::string& out, std::string_view name, std::string_view type,
                  std::string_view help) {
  absl::StrAppend(&out, "# HELP ", absl::string_view(name.data(), name.size()), " ",
                  absl::string_view(help.data(), help.size()), "\n# TYPE ",
                  absl::string_view(name.data(), name.size()), " ",
                  absl::string_view(type.data(), type.size()), "\n");
}

void AppendHistogram(std::string& out, std::string_view name,
                     const std::vector<std::string_view>& label_names, const LabelValues& labels,
                     const Histogram& h) {
  uint64_t cumulative = 0;
  const auto& bounds = h.bounds();
  for (size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += h.BucketCount(i);
    out.append(name);
    out += "_bucket";
    AppendLabels(out, label_names, labels, "le",
                 i < bounds.size() ? FormatDouble(bounds[i]) : "+Inf");
    absl::StrAppend(&out, " ", cumulative, "\n");
  }
  out.append(name);
  out += "_sum";
  AppendLabels(out, label_names, labels);
  absl::StrAppend(&out, " ", FormatDouble(h.Sum()), "\n");
  out.append(name);
  out += "_count";
  AppendLabels(out, label_names, labels);
  absl::StrAppend(&out, " ", cumulative, "\n");
}

void RenderCounters(std::string& out, std::string_view name, std::string_view help,
                    const std::vector<std::string_view>& label_names,
                    const Family<std::atomic<uint64_t>>& family) {
  AppendHeader(out, name, "counter", help);
  family.ForEach([&](const LabelValues& labels, const std::atomic<uint64_t>& value) {
    out.append(name);
    AppendLabels(out, label_names, labels);
    absl::StrAppend(&out, " ", value.load(std::memory_order_relaxed), "\n");
  });
}

void RenderHistograms(std::string& out, std::string_view name, std::string_view help,
                      const std::vector<std::string_view>& label_names,
                      const Family<Histogram>& family) {
  AppendHeader(out, name, "histogram", help);
  family.ForEach([&](const LabelValues& labels, const Histogram& h) {
    AppendHistogram(out, name, label_names, labels, h);
  });
}

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

// Micro-dollars as USD.
template <typename Value>
void RenderUsd(std::string& out, std::string_view name, std::string_view type,
               std::string_view help, const std::vector<std::string_view>& label_names,
               const Family<std::atomic<Value>>& family) {
  AppendHeader(out, name, type, help);
  family.ForEach([&](const LabelValues& labels, const std::atomic<Value>& micros) {
    out.append(name);
    AppendLabels(out, label_names, labels);
    absl::StrAppend(&out, " ",
                    FormatDouble(static_cast<double>(micros.load(std::memory_order_relaxed)) / 1e6),
                    "\n");
  });
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  // Few buckets: a linear scan beats a binary search on branch prediction.
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

uint64_t Histogram::Count() const {
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) total += BucketCount(i);
  return total;
}

Metrics::Metrics() : compression_seconds_(CompressionBounds()), compression_rate_(RateBounds()) {}

void Metrics::RecordRequest(std::string_view route, std::string_view operation, int http_status,
                            absl::Duration total) {
  char status[16];
  const auto [end, ec] = std::to_chars(status, status + sizeof status, http_status);
  requests_.Get({route, operation, std::string_view(status, end - status)})
      .fetch_add(1, std::memory_order_relaxed);
  request_seconds_.GetOrMake({operation}, NewLatencyHistogram).Observe(Seconds(total));
}

void Metrics::RecordError(std::string_view route, std::string_view operation,
                          std::string_view type) {
  errors_.Get({route, operation, type}).fetch_add(1, std::memory_order_relaxed);
}

Metrics::RouteSeries::RouteSeries()
    : upstream_first_byte_seconds(LatencyBounds()), upstream_seconds(LatencyBounds()) {}

void Metrics::RecordUpstream(std::string_view route, absl::Duration first_byte,
                             absl::Duration total) {
  RouteSeries& series = routes_.Get({route});
  series.upstream_first_byte_seconds.Observe(Seconds(first_byte));
  series.upstream_seconds.Observe(Seconds(total));
}

void Metrics::RecordTokens(std::string_view route, uint64_t prompt_tokens,
                           uint64_t completion_tokens) {
  RouteSeries& series = routes_.Get({route});
  series.prompt_tokens.fetch_add(prompt_tokens, std::memory_order_relaxed);
  series.completion_tokens.fetch_add(completion_tokens, std::memory_order_relaxed);
  series.tokens_recorded.store(true, std::memory_order_relaxed);
}

void Metrics::RecordCompression(std::string_view route, uint64_t original_tokens,
                                uint64_t compressed_tokens, absl::Duration took, bool cache_hit) {
  const LabelView labels = {route};
  compression_tokens_in_.Get(labels).fetch_add(original_tokens, std::memory_order_relaxed);
  compression_tokens_out_.Get(labels).fetch_add(compressed_tokens, std::memory_order_relaxed);
  if (original_tokens > compressed_tokens) {
    compression_tokens_saved_.Get(labels).fetch_add(original_tokens - compressed_tokens,
                                                    std::memory_order_relaxed);
  }
  if (cache_hit) compression_cache_hits_.Get(labels).fetch_add(1, std::memory_order_relaxed);
  compression_seconds_.Observe(Seconds(took));
  if (original_tokens > 0) {
    compression_rate_.Observe(static_cast<double>(compressed_tokens) /
                              static_cast<double>(original_tokens));
  }
}

void Metrics::RecordCompressionFallback(std::string_view route) {
  compression_fallbacks_.Get({route}).fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordTenantSettled(std::string_view tenant, int64_t cost_micros,
                                  int64_t savings_micros, bool shed) {
  const LabelView labels = {tenant};
  tenant_spend_micros_.Get(labels).fetch_add(
      static_cast<uint64_t>(std::max<int64_t>(0, cost_micros)), std::memory_order_relaxed);
  tenant_savings_micros_.Get(labels).fetch_add(
      static_cast<uint64_t>(std::max<int64_t>(0, savings_micros)), std::memory_order_relaxed);
  if (shed) tenant_shed_.Get(labels).fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordTenantRefusal(std::string_view tenant, std::string_view reason) {
  tenant_refusals_.Get({tenant, reason}).fetch_add(1, std::memory_order_relaxed);
}

void Metrics::SetTenantBudgetRemaining(std::string_view tenant, std::string_view key,
                                       std::string_view period, int64_t micros) {
  tenant_budget_left_.Get({tenant, key, period}).store(micros, std::memory_order_relaxed);
}

std::string Metrics::RenderPrometheus() const {
  std::string out;
  out.reserve(8192);
  RenderCounters(out, "terse_requests_total",
                 "Requests handled, by route, operation and HTTP status.",
                 {"route", "operation", "status"}, requests_);
  RenderCounters(out, "terse_errors_total", "Failed requests, by route, operation and error type.",
                 {"route", "operation", "type"}, errors_);
  RenderHistograms(out, "terse_request_duration_seconds",
                   "Time from receiving a request to handing back its last byte.", {"operation"},
                   request_seconds_);
  // One histogram of each route that reached its upstream.
  auto render_upstream = [&](std::string_view name, std::string_view help,
                             Histogram RouteSeries::*histogram) {
    AppendHeader(out, name, "histogram", help);
    routes_.ForEach([&](const LabelValues& route, const RouteSeries& series) {
      if (series.upstream_seconds.Count() == 0) return;
      AppendHistogram(out, name, {"route"}, route, series.*histogram);
    });
  };
  render_upstream("terse_upstream_first_byte_seconds",
                  "Time from forwarding a request to the upstream's first response byte.",
                  &RouteSeries::upstream_first_byte_seconds);
  render_upstream("terse_upstream_duration_seconds",
                  "Time from forwarding a request to the end of the upstream's response.",
                  &RouteSeries::upstream_seconds);
  AppendHeader(out, "terse_in_flight_requests", "gauge", "Requests currently in the pipeline.");
  absl::StrAppend(&out, "terse_in_flight_requests ", InFlight(), "\n");
  AppendHeader(out, "terse_upstream_tokens_total", "counter",
               "Tokens the upstream reported in usage, by route and kind.");
  const std::vector<std::string_view> token_labels = {"route", "kind"};
  routes_.ForEach([&](const LabelValues& route, const RouteSeries& series) {
    if (!series.tokens_recorded.load(std::memory_order_relaxed)) return;
    for (const auto& [kind, counter] :
         {std::pair<std::string_view, const Counter*>{"completion", &series.completion_tokens},
          {"prompt", &series.prompt_tokens}}) {
      out.append("terse_upstream_tokens_total");
      AppendLabels(out, token_labels, {route[0], std::string(kind)});
      absl::StrAppend(&out, " ", counter->load(std::memory_order_relaxed), "\n");
    }
  });
  RenderCounters(out, "terse_compression_tokens_in_total",
                 "Prompt tokens before compression (target tokenizer).", {"route"},
                 compression_tokens_in_);
  RenderCounters(out, "terse_compression_tokens_out_total",
                 "Prompt tokens after compression (target tokenizer).", {"route"},
                 compression_tokens_out_);
  RenderCounters(out, "terse_compression_tokens_saved_total",
                 "Prompt tokens removed by compression.", {"route"}, compression_tokens_saved_);
  RenderCounters(out, "terse_compression_cache_hits_total",
                 "Compressions answered from the compression cache.", {"route"},
                 compression_cache_hits_);
  RenderCounters(out, "terse_compression_fallbacks_total",
                 "Requests forwarded uncompressed because compression failed or timed out.",
                 {"route"}, compression_fallbacks_);
  AppendHeader(out, "terse_compression_duration_seconds", "histogram",
               "Time spent compressing one prompt.");
  AppendHistogram(out, "terse_compression_duration_seconds", {}, {}, compression_seconds_);
  AppendHeader(out, "terse_compression_rate", "histogram",
               "Achieved rate: compressed tokens over original tokens.");
  AppendHistogram(out, "terse_compression_rate", {}, {}, compression_rate_);
  RenderUsd(out, "terse_tenant_spend_usd_total", "counter",
            "What the tenant's settled requests cost, at the price table's prices.", {"tenant"},
            tenant_spend_micros_);
  RenderUsd(out, "terse_tenant_savings_usd_total", "counter",
            "What compression saved the tenant's settled requests.", {"tenant"},
            tenant_savings_micros_);
  RenderUsd(out, "terse_tenant_budget_remaining_usd", "gauge",
            "What a budget of the tenant (key \"\": the whole tenant's) has left, as last seen.",
            {"tenant", "key", "period"}, tenant_budget_left_);
  RenderCounters(out, "terse_tenant_refusals_total", "Admissions refused, by tenant and reason.",
                 {"tenant", "reason"}, tenant_refusals_);
  RenderCounters(out, "terse_tenant_shed_total",
                 "Settled requests of the tenant whose compression was skipped.", {"tenant"},
                 tenant_shed_);
  return out;
}

}  // namespace terse::proxy
