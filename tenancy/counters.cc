// Admission on budget counters and GCRA states: every limit checked, then all of them counted,
// or none.
#include "tenancy/counters.h"

#include <algorithm>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace terse::tenancy {

bool CounterKey::Counts(const UsageRow& row) const {
  return row.tenant_id == tenant_id && (key_id.empty() || row.key_id == key_id) &&
         window.Contains(absl::ToUnixMicros(row.time));
}

CounterKey BudgetCounterKey(const Limit& budget, absl::Time now) {
  return CounterKey{budget.tenant_id, budget.key_id,
                    WindowAt(budget.period, budget.time_zone, now)};
}

std::vector<CounterKey> Counters::Missing(const Admission& admission) const {
  std::vector<CounterKey> missing;
  for (const Limit& limit : admission.limits) {
    if (limit.kind != Limit::Kind::kBudget) continue;
    CounterKey key = BudgetCounterKey(limit, admission.now);
    if (!Has(key) && std::find(missing.begin(), missing.end(), key) == missing.end()) {
      missing.push_back(std::move(key));
    }
  }
  return missing;
}

void Counters::Install(const CounterKey& key, Micros settled) {
  counters_.try_emplace(key, Counter{settled, 0});
}

Counters::RateKey Counters::RateKeyOf(const Limit& limit) {
  return RateKey{limit.tenant_id, limit.key_id, limit.kind, limit.amount, limit.shadow};
}

Verdict Decide(const Admission& a, const std::vector<LimitState>& before) {
  const size_t n = a.limits.size();
  Verdict verdict;
  Decision& decision = verdict.decision;
  std::vector<GcraStep>& steps = verdict.steps;
  steps.resize(n);
  int budget_refusal = -1, too_large = -1, rate_refusal = -1;
  for (size_t i = 0; i < n; ++i) {
    const Limit& limit = a.limits[i];
    const int index = static_cast<int>(i);
    if (limit.kind == Limit::Kind::kBudget) {
      if (before[i].used + a.estimate <= limit.amount) continue;
      if (limit.shadow) {
        decision.shadow_exceeded.push_back(index);
      } else if (budget_refusal < 0) {
        budget_refusal = index;
      }
      continue;
    }
    const int64_t cost = limit.kind == Limit::Kind::kRequestsPerMinute ? 1 : a.tokens;
    steps[i] = GcraTry(before[i].tat, limit.amount, cost, a.now);
    if (steps[i].allowed) continue;
    if (limit.shadow) {
      decision.shadow_exceeded.push_back(index);
    } else if (steps[i].never) {
      if (too_large < 0) too_large = index;
    } else {
      if (rate_refusal < 0) rate_refusal = index;
      decision.retry_after = std::max(decision.retry_after, steps[i].retry_after);
    }
  }
  // A budget refusal wins: it tells the client not to retry, which is true whatever the rates say.
  if (budget_refusal >= 0) {
    decision.outcome = Decision::Outcome::kBudgetExhausted;
    decision.refused_by = budget_refusal;
  } else if (too_large >= 0) {
    decision.outcome = Decision::Outcome::kTooLarge;
    decision.refused_by = too_large;
  } else if (rate_refusal >= 0) {
    decision.outcome = Decision::Outcome::kRateLimited;
    decision.refused_by = rate_refusal;
  }
  if (decision.outcome != Decision::Outcome::kRateLimited) {
    decision.retry_after = absl::ZeroDuration();
  }
  const bool admitted = decision.admitted();
  if (admitted) decision.hold_deadline = a.now + a.lease;
  // What is left after this decision: an admission holds its estimate once per counter and moves
  // every rate that let it through (a shadow rate counts only what a real one would have).
  decision.remaining.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const Limit& limit = a.limits[i];
    if (limit.kind == Limit::Kind::kBudget) {
      decision.remaining[i] = limit.amount - before[i].used - (admitted ? a.estimate : 0);
    } else {
      const ScaledTime tat = admitted && steps[i].allowed ? steps[i].new_tat : before[i].tat;
      decision.remaining[i] = GcraRemaining(tat, limit.amount, a.now);
    }
  }
  return verdict;
}

absl::StatusOr<Decision> Counters::Admit(const Admission& a) {
  ExpireHolds(a.now, /*prune=*/false);
  if (holds_.contains(a.request_id)) {
    return absl::AlreadyExistsError("request " + a.request_id + " already holds an admission");
  }
  const size_t n = a.limits.size();
  std::vector<CounterKey> budget_keys(n);
  std::vector<LimitState> before(n);
  for (size_t i = 0; i < n; ++i) {
    const Limit& limit = a.limits[i];
    if (limit.kind == Limit::Kind::kBudget) {
      budget_keys[i] = BudgetCounterKey(limit, a.now);
      auto it = counters_.find(budget_keys[i]);
      if (it == counters_.end()) {
        return absl::InternalError("budget counter not installed for " + limit.name);
      }
      before[i].used = it->second.settled + it->second.held;
    } else if (auto it = rates_.find(RateKeyOf(limit)); it != rates_.end()) {
      before[i].tat = it->second;
    }
  }
  Verdict verdict = Decide(a, before);
  if (!verdict.decision.admitted()) return std::move(verdict.decision);

  Hold hold;
  hold.time_us = absl::ToUnixMicros(a.now);
  hold.deadline_us = absl::ToUnixMicros(a.now + a.lease);
  hold.estimate = a.estimate;
  for (size_t i = 0; i < n; ++i) {
    const Limit& limit = a.limits[i];
    if (limit.kind == Limit::Kind::kBudget) {
      if (std::find(hold.budgets.begin(), hold.budgets.end(), budget_keys[i]) !=
          hold.budgets.end()) {
        continue;  // two budgets on one window share its counter: hold once
      }
      counters_[budget_keys[i]].held += a.estimate;
      hold.budgets.push_back(budget_keys[i]);
    } else if (verdict.steps[i].allowed) {
      RateKey key = RateKeyOf(limit);
      rates_[key] = verdict.steps[i].new_tat;
      if (limit.kind == Limit::Kind::kTokensPerMinute && a.tokens > 0) {
        hold.tokens.emplace_back(std::move(key), a.tokens);
      }
    }
  }
  deadlines_.emplace(hold.deadline_us, a.request_id);
  holds_.emplace(a.request_id, std::move(hold));
  return std::move(verdict.decision);
}

std::map<CounterKey, Counters::Counter>::iterator Counters::FirstOfTenant(
    const std::string& tenant_id) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  return counters_.lower_bound(CounterKey{tenant_id, "", {kMin, kMin}});
}

void Counters::Release(const Hold& hold) {
  for (const CounterKey& key : hold.budgets) {
    if (auto it = counters_.find(key); it != counters_.end()) it->second.held -= hold.estimate;
  }
}

void Counters::Book(UsageRow& row) {
  if (auto it = holds_.find(row.request_id); it != holds_.end()) {
    const Hold& hold = it->second;
    Release(hold);
    row.time = absl::FromUnixMicros(hold.time_us);
    // The estimate counted toward tokens per minute becomes the actual count; a refund never
    // moves the state before the admission itself.
    const int64_t actual = row.sent_prompt_tokens + row.completion_tokens;
    for (const auto& [key, counted] : hold.tokens) {
      auto rate = rates_.find(key);
      if (rate == rates_.end()) continue;
      rate->second = std::max(rate->second + GcraUnits(actual - counted),
                              GcraScaledNow(key.per_minute, row.time));
    }
    deadlines_.erase({hold.deadline_us, row.request_id});
    holds_.erase(it);
  }
  for (auto it = FirstOfTenant(row.tenant_id);
       it != counters_.end() && it->first.tenant_id == row.tenant_id; ++it) {
    if (it->first.Counts(row)) it->second.settled += row.cost;
  }
}

void Counters::Unbook(const UsageRow& row) {
  for (auto it = FirstOfTenant(row.tenant_id);
       it != counters_.end() && it->first.tenant_id == row.tenant_id; ++it) {
    if (it->first.Counts(row)) it->second.settled -= row.cost;
  }
}

int Counters::ExpireHolds(absl::Time now, bool prune) {
  const int64_t now_us = absl::ToUnixMicros(now);
  int released = 0;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now_us) {
    auto hold = holds_.find(deadlines_.begin()->second);
    if (hold != holds_.end()) {
      Release(hold->second);
      holds_.erase(hold);
      ++released;
    }
    deadlines_.erase(deadlines_.begin());
  }
  if (prune) {
    std::erase_if(counters_, [&](const auto& entry) {
      return entry.first.window.end_us <= now_us && entry.second.held == 0;
    });
    std::erase_if(rates_, [&](const auto& entry) {
      return entry.second <= GcraScaledNow(entry.first.per_minute, now);
    });
  }
  return released;
}

Spend Counters::SpendOf(const CounterKey& key) const {
  Spend spend{key.window};
  if (auto it = counters_.find(key); it != counters_.end()) {
    spend.settled = it->second.settled;
    spend.held = it->second.held;
  }
  return spend;
}

}  // namespace terse::tenancy
