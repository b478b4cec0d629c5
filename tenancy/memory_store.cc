// The in-memory store: counters in front of a vector of rows.
#include "tenancy/memory_store.h"

#include <map>

namespace terse::tenancy {

void InMemoryStore::Install(const std::vector<CounterKey>& keys) {
  for (const CounterKey& key : keys) {
    Micros settled = 0;
    for (const UsageRow& row : rows_) {
      if (key.Counts(row)) settled += row.cost;
    }
    counters_.Install(key, settled);
  }
}

absl::StatusOr<Decision> InMemoryStore::Admit(const Admission& admission) {
  absl::MutexLock lock(&mu_);
  Install(counters_.Missing(admission));
  return counters_.Admit(admission);
}

absl::StatusOr<bool> InMemoryStore::Settle(const UsageRow& row) {
  if (absl::Status s = ValidateRow(row); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (!booked_.insert(row.request_id).second) return false;
  UsageRow booked = row;
  counters_.Book(booked);
  rows_.push_back(std::move(booked));
  return true;
}

absl::StatusOr<int> InMemoryStore::ExpireHolds(absl::Time now) {
  absl::MutexLock lock(&mu_);
  return counters_.ExpireHolds(now, /*prune=*/true);
}

absl::StatusOr<Spend> InMemoryStore::BudgetSpend(const Limit& budget, absl::Time now) {
  absl::MutexLock lock(&mu_);
  const CounterKey key = BudgetCounterKey(budget, now);
  if (!counters_.Has(key)) Install({key});
  return counters_.SpendOf(key);
}

absl::StatusOr<std::vector<UsageBucket>> InMemoryStore::Usage(const UsageQuery& query) {
  std::map<std::string, UsageBucket> groups;
  {
    absl::MutexLock lock(&mu_);
    for (const UsageRow& row : rows_) {
      if (row.tenant_id != query.tenant_id || row.time < query.from || row.time >= query.to) {
        continue;
      }
      std::string group = GroupOf(row, query);
      UsageBucket& bucket = groups[group];
      bucket.group = std::move(group);
      AddToBucket(row, bucket);
    }
  }
  std::vector<UsageBucket> buckets;
  for (auto& [group, bucket] : groups) buckets.push_back(std::move(bucket));
  return buckets;
}

std::vector<UsageRow> InMemoryStore::Rows() const {
  absl::MutexLock lock(&mu_);
  return rows_;
}

}  // namespace terse::tenancy
