// Shared pieces of the tenancy tests: instants and zones by name, a fresh directory per test,
// and small builders for limits, admissions and rows.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "absl/time/time.h"
#include "tenancy/limits.h"
#include "tenancy/store.h"

namespace terse::tenancy::testing {

// An RFC 3339 instant, e.g. "2026-03-08T01:59:59-05:00".
inline absl::Time At(const std::string& rfc3339) {
  absl::Time t;
  std::string error;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &error)) << rfc3339 << ": " << error;
  return t;
}

// A zone from the system's tzdata (fails the test when it is missing).
inline absl::TimeZone Zone(const std::string& name) {
  absl::TimeZone zone;
  EXPECT_TRUE(absl::LoadTimeZone(name, &zone)) << "no tzdata for " << name;
  return zone;
}

// A new empty directory under the test's temporary directory, removed with the object.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "/tenancy-XXXXXX";
    path_ = mkdtemp(pattern.data()) ? pattern : "";
    EXPECT_FALSE(path_.empty());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline Limit Budget(std::string tenant, std::string key, Micros amount, Period period,
                    absl::TimeZone zone = absl::UTCTimeZone(), bool shadow = false) {
  Limit limit;
  limit.kind = Limit::Kind::kBudget;
  limit.tenant_id = std::move(tenant);
  limit.key_id = std::move(key);
  limit.amount = amount;
  limit.period = period;
  limit.time_zone = zone;
  limit.shadow = shadow;
  limit.name = "budget " + limit.tenant_id + "/" + limit.key_id;
  return limit;
}

inline Limit Rate(std::string tenant, std::string key, Limit::Kind kind, int64_t per_minute,
                  bool shadow = false) {
  Limit limit;
  limit.kind = kind;
  limit.tenant_id = std::move(tenant);
  limit.key_id = std::move(key);
  limit.amount = per_minute;
  limit.shadow = shadow;
  limit.name = "rate " + limit.tenant_id + "/" + limit.key_id;
  return limit;
}

inline Admission Admit(std::string request_id, std::vector<Limit> limits, Micros estimate,
                       absl::Time now, int64_t tokens = 0,
                       absl::Duration lease = absl::Minutes(10)) {
  Admission a;
  a.request_id = std::move(request_id);
  a.tenant_id = limits.empty() ? "acme" : limits[0].tenant_id;
  a.key_id = "key000000001";
  a.limits = std::move(limits);
  a.estimate = estimate;
  a.tokens = tokens;
  a.now = now;
  a.lease = lease;
  return a;
}

inline UsageRow Row(std::string request_id, std::string tenant, std::string key, absl::Time time,
                    Micros cost) {
  UsageRow row;
  row.request_id = std::move(request_id);
  row.tenant_id = std::move(tenant);
  row.key_id = std::move(key);
  row.time = time;
  row.route = "default";
  row.provider = "openai";
  row.model = "gpt-4o";
  row.cost = cost;
  row.http_status = 200;
  return row;
}

}  // namespace terse::tenancy::testing
