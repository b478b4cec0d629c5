// The hot state of admission: budget counters per scope and window, rate states, and holds.
// Every store that decides in process keeps one (the in-memory store, and the SQLite store in
// front of its ledger); a Redis store keeps the same state in Redis instead.
//
// Budget counters are a cache of the ledger: a counter's `settled` is the sum of the cost of the
// rows it counts, so a store installs it from its rows (Missing, then Install) before admitting
// against it. Rate states and holds live only here: after a restart rates start afresh and the
// holds of requests that died with the process are gone, which is what their expiry would do.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tenancy/limits.h"
#include "tenancy/store.h"

namespace terse::tenancy {

// The spend of one scope (a tenant, or one of its keys) over one window.
struct CounterKey {
  std::string tenant_id;
  std::string key_id;  // empty: every key of the tenant
  Window window;

  // Whether `row` belongs to this counter (its time in the window, its tenant and key).
  bool Counts(const UsageRow& row) const;
  auto operator<=>(const CounterKey& o) const {
    return std::tie(tenant_id, key_id, window.start_us, window.end_us) <=>
           std::tie(o.tenant_id, o.key_id, o.window.start_us, o.window.end_us);
  }
  bool operator==(const CounterKey&) const = default;
};

// The counter a budget is checked against at `now`.
CounterKey BudgetCounterKey(const Limit& budget, absl::Time now);

// A limit's state just before an admission, as a store read it.
struct LimitState {
  Micros used = 0;     // budgets: settled + held in the window's counter
  ScaledTime tat = 0;  // rates: the theoretical arrival time; 0 for a fresh rate
};

struct Verdict {
  Decision decision;            // complete: outcome, refusal, shadows, remaining, hold deadline
  std::vector<GcraStep> steps;  // per limit; rates only: the step to store when admitted
};

// Store::Admit's decision on states read before it (`before[i]` for `admission.limits[i]`), so
// every store decides alike. Budgets sharing a counter must share its state.
Verdict Decide(const Admission& admission, const std::vector<LimitState>& before);

// Not thread-safe: the owning store serializes every call.
class Counters {
 public:
  // The counters `admission` needs that are not installed yet, each once.
  std::vector<CounterKey> Missing(const Admission& admission) const;
  bool Has(const CounterKey& key) const { return counters_.count(key) > 0; }
  // Installs a counter with the cost of the rows it counts; no-op when installed already.
  void Install(const CounterKey& key, Micros settled);

  // Store::Admit on installed counters (kInternal if one is missing).
  absl::StatusOr<Decision> Admit(const Admission& admission);

  bool HasHold(const std::string& request_id) const { return holds_.contains(request_id); }
  // Books a row the store has checked is new: releases its hold, if any (setting `row.time` to
  // the hold's admission time), corrects tokens-per-minute states from the estimate to the
  // actual tokens, and adds the cost to every installed counter that counts the row.
  void Book(UsageRow& row);
  // Takes a booked row's cost back out of the counters (its write failed).
  void Unbook(const UsageRow& row);

  // Releases holds whose deadline is at or before `now`; with `prune`, also forgets counters of
  // windows that ended and rate states that are full again. Returns the holds released.
  int ExpireHolds(absl::Time now, bool prune);

  // The counter's window, settled and held amounts (zeros if not installed).
  Spend SpendOf(const CounterKey& key) const;

 private:
  struct Counter {
    Micros settled = 0;
    Micros held = 0;
  };
  // A rate state: per scope, kind and amount (a shadow rate has its own).
  struct RateKey {
    std::string tenant_id;
    std::string key_id;
    Limit::Kind kind;
    int64_t per_minute;
    bool shadow;
    auto operator<=>(const RateKey&) const = default;
  };
  struct Hold {
    int64_t time_us = 0;
    int64_t deadline_us = 0;
    Micros estimate = 0;
    std::vector<CounterKey> budgets;                  // each once
    std::vector<std::pair<RateKey, int64_t>> tokens;  // tokens-per-minute states and tokens counted
  };

  static RateKey RateKeyOf(const Limit& limit);
  // The first counter of a tenant in counters_ (its scopes follow in order).
  std::map<CounterKey, Counter>::iterator FirstOfTenant(const std::string& tenant_id);
  void Release(const Hold& hold);

  std::map<CounterKey, Counter> counters_;  // ordered by tenant first: Book scans one tenant
  std::map<RateKey, ScaledTime> rates_;     // theoretical arrival times
  absl::flat_hash_map<std::string, Hold> holds_;
  std::set<std::pair<int64_t, std::string>> deadlines_;  // (deadline_us, request id)
};

}  // namespace terse::tenancy
