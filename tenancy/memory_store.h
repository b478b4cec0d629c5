// A store wholly in memory: for tests and trials (`store: {kind: memory}`). Nothing survives the
// process.
#pragma once

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "tenancy/counters.h"
#include "tenancy/store.h"

namespace terse::tenancy {

// Thread-safe; every operation holds one mutex, so each is atomic.
class InMemoryStore final : public Store {
 public:
  absl::StatusOr<Decision> Admit(const Admission& admission) override;
  absl::StatusOr<bool> Settle(const UsageRow& row) override;
  absl::StatusOr<int> ExpireHolds(absl::Time now) override;
  absl::StatusOr<Spend> BudgetSpend(const Limit& budget, absl::Time now) override;
  absl::StatusOr<std::vector<UsageBucket>> Usage(const UsageQuery& query) override;

  // Every booked row, in booking order.
  std::vector<UsageRow> Rows() const;

 private:
  // Installs counters from the rows booked so far.
  void Install(const std::vector<CounterKey>& keys) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  Counters counters_ ABSL_GUARDED_BY(mu_);
  std::vector<UsageRow> rows_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> booked_ ABSL_GUARDED_BY(mu_);  // request ids of rows_
};

}  // namespace terse::tenancy
