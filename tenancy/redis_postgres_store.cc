// The replica store: scripts' arguments and replies, the settle path with its spool, counter
// installs from the ledger, and the degraded modes.
#include "tenancy/redis_postgres_store.h"

#include <openssl/rand.h>

#include <cstdio>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "tenancy/redis_scripts.h"

namespace terse::tenancy {
namespace {

// Rates' remainders add up in Lua's doubles: below 2^52 they stay exact (config allows 1e15).
constexpr int64_t kMaxRate = int64_t{1} << 52;
constexpr int kRounds = 4;  // installs that a concurrent prune can undo before Admit gives up

// Ids become parts of keys and of space- and '|'-separated values.
bool ValidId(const std::string& id) { return id.find_first_of(" |{}\n\r\t") == std::string::npos; }

std::string Member(const CounterKey& key) {
  return absl::StrCat(key.key_id, "|", key.window.start_us, "|", key.window.end_us);
}

// A scaled GCRA time as the scripts keep it: "seconds nanoseconds remainder", where the
// remainder counts 1/per_minute nanoseconds (floor division, so each part is normalized).
std::string Format3(ScaledTime x, int64_t per_minute) {
  ScaledTime ns = x / per_minute, rem = x % per_minute;
  if (rem < 0) {
    rem += per_minute;
    --ns;
  }
  ScaledTime s = ns / 1'000'000'000, n = ns % 1'000'000'000;
  if (n < 0) {
    n += 1'000'000'000;
    --s;
  }
  return absl::StrCat(static_cast<int64_t>(s), " ", static_cast<int64_t>(n), " ",
                      static_cast<int64_t>(rem));
}

absl::StatusOr<ScaledTime> Parse3(const std::string& text, int64_t per_minute) {
  std::vector<std::string> parts = absl::StrSplit(text, ' ');
  int64_t s, n, rem;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &s) || !absl::SimpleAtoi(parts[1], &n) ||
      !absl::SimpleAtoi(parts[2], &rem)) {
    return absl::InternalError("redis: malformed rate state \"" + text + "\"");
  }
  return (static_cast<ScaledTime>(s) * 1'000'000'000 + n) * per_minute + rem;
}

std::string NewToken() {
  unsigned char bytes[12];
  RAND_bytes(bytes, sizeof bytes);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  for (unsigned char b : bytes) {
    token.push_back(kHex[b >> 4]);
    token.push_back(kHex[b & 15]);
  }
  return token;
}

// Epoch keys get the time they were made: only their presence matters.
std::string Stamp() { return absl::StrCat(absl::ToUnixMicros(absl::Now())); }

// Failures that waiting fixes; a row meeting one goes to the spool. Others are returned: the
// spool would only replay them into the same error.
bool Transient(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable;
}

absl::Status Malformed(const char* script) {
  return absl::InternalError(absl::StrCat("redis: unexpected reply from the ", script, " script"));
}

int64_t Int(const RedisValue& v) {
  if (v.type == RedisValue::Type::kInteger) return v.integer;
  int64_t n = 0;
  (void)absl::SimpleAtoi(v.text, &n);
  return n;
}

}  // namespace

struct RedisPostgresStore::AdmitCall {
  std::vector<std::string> keys;
  std::vector<std::string> args;
  std::vector<CounterKey> budgets;  // distinct, in KEYS order
  std::vector<int64_t> rates;       // per distinct rate: its per-minute amount
  std::vector<int> index;           // per limit: its budget or rate
};

struct RedisPostgresStore::HoldInfo {
  std::string text;  // as Redis holds it; empty: no hold
  absl::Time time;
  std::vector<std::string> corrections;  // per tokens-per-minute rate, for the Book script
};

absl::StatusOr<std::unique_ptr<RedisPostgresStore>> RedisPostgresStore::Open(
    RedisPostgresOptions options) {
  RETURN_IF_ERROR(ParseRedisUrl(options.redis_url).status());
  if (options.postgres_url.empty()) {
    return absl::InvalidArgumentError("no PostgreSQL connection string");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Spool> spool, Spool::Open(options.spool_path));
  return std::unique_ptr<RedisPostgresStore>(
      new RedisPostgresStore(std::move(options), std::move(spool)));
}

RedisPostgresStore::RedisPostgresStore(RedisPostgresOptions options, std::unique_ptr<Spool> spool)
    : options_(std::move(options)), spool_(std::move(spool)) {
  redis_ = std::make_unique<RedisClient>(RedisClient::Options{
      .endpoint = *ParseRedisUrl(options_.redis_url),
      .timeout = options_.timeout,
      .retry_interval = options_.retry_interval,
  });
  ledger_ = std::make_unique<PostgresLedger>(PostgresLedger::Options{
      .conninfo = options_.postgres_url,
      .timeout = options_.timeout,
      .retry_interval = options_.retry_interval,
  });
  replayer_ = std::thread([this] { ReplayLoop(); });
}

RedisPostgresStore::~RedisPostgresStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  replayer_.join();
}

std::string RedisPostgresStore::Prefix(const std::string& tenant_id) const {
  return absl::StrCat(options_.key_prefix, ":{", tenant_id, "}:");
}

void RedisPostgresStore::Log(const std::string& message) const {
  if (options_.log) {
    options_.log(message);
    return;
  }
  const std::string line = Json{{"level", "warn"}, {"msg", message}}.dump(
      -1, ' ', false, Json::error_handler_t::replace);
  std::fprintf(stderr, "%s\n", line.c_str());
}

void RedisPostgresStore::Degraded(const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  if (degraded_) return;
  degraded_ = true;
  Log(absl::StrCat("tenancy store: ", why.message(), "; ",
                   options_.fail_open ? "admitting on this replica's own counters (fail_mode open)"
                                      : "refusing admissions (fail_mode closed)"));
}

void RedisPostgresStore::Recovered() {
  if (!degraded_.load()) return;
  absl::MutexLock lock(&mu_);
  if (!degraded_) return;
  degraded_ = false;
  local_ = Counters();
  Log("tenancy store: the shared store answers again; admissions use it");
}

void RedisPostgresStore::Register(const std::string& tenant_id, bool created) {
  {
    absl::MutexLock lock(&mu_);
    if (!created && registered_.contains(tenant_id)) return;
  }
  // ExpireHolds finds tenants in this set; it lives in another slot, so not in the scripts.
  if (redis_->Command({"SADD", options_.key_prefix + ":tenants", tenant_id}).ok()) {
    absl::MutexLock lock(&mu_);
    registered_.insert(tenant_id);
  }
}

absl::StatusOr<RedisPostgresStore::AdmitCall> RedisPostgresStore::Prepare(
    const Admission& a) const {
  if (a.tenant_id.empty() || !ValidId(a.tenant_id) || !ValidId(a.key_id)) {
    return absl::InvalidArgumentError("admission with a malformed tenant or key id");
  }
  const std::string prefix = Prefix(a.tenant_id);
  AdmitCall call;
  std::vector<std::string> rate_members;
  for (const Limit& limit : a.limits) {
    if (limit.tenant_id != a.tenant_id || !ValidId(limit.key_id)) {
      return absl::InvalidArgumentError("limit " + limit.name + " is not of tenant " + a.tenant_id);
    }
    if (limit.amount <= 0 || (limit.kind != Limit::Kind::kBudget && limit.amount >= kMaxRate)) {
      return absl::InvalidArgumentError("limit " + limit.name + " has an amount out of range");
    }
    if (limit.kind == Limit::Kind::kBudget) {
      const CounterKey key = BudgetCounterKey(limit, a.now);
      auto it = std::find(call.budgets.begin(), call.budgets.end(), key);
      call.index.push_back(static_cast<int>(it - call.budgets.begin()));
      if (it == call.budgets.end()) call.budgets.push_back(key);
    } else {
      const std::string member = absl::StrCat(limit.key_id, "|", static_cast<int>(limit.kind), "|",
                                              limit.amount, "|", limit.shadow ? 1 : 0);
      auto it = std::find(rate_members.begin(), rate_members.end(), member);
      call.index.push_back(static_cast<int>(it - rate_members.begin()));
      if (it == rate_members.end()) {
        rate_members.push_back(member);
        call.rates.push_back(limit.amount);
      }
    }
  }
  call.keys.push_back(prefix + "epoch");
  for (const CounterKey& key : call.budgets) call.keys.push_back(prefix + "b:" + Member(key));
  for (const std::string& member : rate_members) call.keys.push_back(prefix + "r:" + member);

  const int64_t now_ns = absl::ToUnixNanos(a.now);
  int64_t now_s = now_ns / 1'000'000'000, now_n = now_ns % 1'000'000'000;
  if (now_n < 0) {
    now_n += 1'000'000'000;
    --now_s;
  }
  call.args = {a.request_id,
               absl::StrCat(absl::ToUnixMicros(a.now)),
               absl::StrCat(now_s),
               absl::StrCat(now_n),
               absl::StrCat(absl::ToUnixMicros(a.now + a.lease)),
               absl::StrCat(a.estimate),
               absl::StrCat(a.tokens),
               absl::StrCat(call.budgets.size()),
               absl::StrCat(call.rates.size()),
               absl::StrCat(a.limits.size())};
  for (const CounterKey& key : call.budgets) call.args.push_back(Member(key));
  for (size_t i = 0; i < a.limits.size(); ++i) {
    const Limit& limit = a.limits[i];
    const bool budget = limit.kind == Limit::Kind::kBudget;
    const int64_t cost = limit.kind == Limit::Kind::kRequestsPerMinute ? 1 : a.tokens;
    const bool never = !budget && cost > limit.amount;
    call.args.insert(call.args.end(),
                     {budget ? "b" : "r", absl::StrCat(call.index[i] + 1),
                      absl::StrCat(limit.amount), limit.shadow ? "1" : "0",
                      budget || never ? "0 0 0" : Format3(GcraUnits(cost), limit.amount),
                      never ? "1" : "0", limit.kind == Limit::Kind::kTokensPerMinute ? "1" : "0"});
  }
  return call;
}

absl::StatusOr<Decision> RedisPostgresStore::Admit(const Admission& a) {
  ASSIGN_OR_RETURN(const AdmitCall call, Prepare(a));
  const size_t nb = call.budgets.size();
  for (int round = 0; round < kRounds; ++round) {
    absl::StatusOr<RedisValue> reply = redis_->Eval(redis_scripts::Admit(), call.keys, call.args);
    if (!reply.ok()) {
      if (reply.status().code() == absl::StatusCode::kUnavailable) {
        return AdmitLocally(a, reply.status());
      }
      return reply.status();
    }
    Recovered();
    const std::vector<RedisValue>& e = reply->elements;
    if (e.size() < 2) return Malformed("admit");
    Register(a.tenant_id, Int(e[1]) != 0);
    const std::string& what = e[0].text;
    if (what == "exists") {
      return absl::AlreadyExistsError("request " + a.request_id + " already holds an admission");
    }
    if (what == "missing") {
      std::vector<CounterKey> missing;
      for (size_t i = 2; i < e.size(); ++i) missing.push_back(call.budgets.at(Int(e[i])));
      absl::Status installed = Install(a.tenant_id, missing);
      if (installed.code() == absl::StatusCode::kUnavailable) return AdmitLocally(a, installed);
      RETURN_IF_ERROR(installed);
      continue;
    }
    if (e.size() != 2 + 2 * nb + call.rates.size()) return Malformed("admit");
    std::vector<LimitState> before(a.limits.size());
    for (size_t i = 0; i < a.limits.size(); ++i) {
      const int idx = call.index[i];
      if (a.limits[i].kind == Limit::Kind::kBudget) {
        before[i].used = Int(e[2 + 2 * idx]) + Int(e[3 + 2 * idx]);
      } else if (const std::string& tat = e[2 + 2 * nb + idx].text; !tat.empty()) {
        ASSIGN_OR_RETURN(before[i].tat, Parse3(tat, call.rates[idx]));
      }
    }
    Verdict verdict = Decide(a, before);
    if (verdict.decision.admitted() != (what == "admitted")) {
      return absl::InternalError("redis: the admission script and Decide disagree on " +
                                 a.request_id);
    }
    return std::move(verdict.decision);
  }
  return absl::AbortedError("budget counters kept being pruned during admission; retry");
}

absl::Status RedisPostgresStore::Install(const std::string& tenant_id,
                                         const std::vector<CounterKey>& keys) {
  const std::string prefix = Prefix(tenant_id);
  ASSIGN_OR_RETURN(PostgresLedger::Transaction tx,
                   ledger_->Begin(tenant_id, PostgresLedger::Lock::kExclusive));
  std::vector<std::string> args = {Stamp(), absl::StrCat(keys.size())};
  for (const CounterKey& key : keys) {
    ASSIGN_OR_RETURN(const Micros sum, tx.Sum(key));
    args.push_back(Member(key));
    args.push_back(absl::StrCat(sum));
  }
  // Rows counted in Redis that the ledger may hold already: the script must not add those twice.
  ASSIGN_OR_RETURN(const RedisValue pending, redis_->Command({"HKEYS", prefix + "pending"}));
  std::vector<std::string> ids;
  for (const RedisValue& id : pending.elements) ids.push_back(id.text);
  ASSIGN_OR_RETURN(const auto tokens, tx.Tokens(ids));
  args.push_back(absl::StrCat(tokens.size()));
  for (const auto& [id, token] : tokens) {
    args.push_back(id);
    args.push_back(token);
  }
  ASSIGN_OR_RETURN(const RedisValue created,
                   redis_->Eval(redis_scripts::Install(), {prefix + "epoch"}, args));
  Register(tenant_id, Int(created) != 0);
  return tx.Commit();
}

absl::StatusOr<RedisPostgresStore::HoldInfo> RedisPostgresStore::ReadHold(const UsageRow& row) {
  ASSIGN_OR_RETURN(const RedisValue hold,
                   redis_->Command({"HGET", Prefix(row.tenant_id) + "holds", row.request_id}));
  HoldInfo info;
  if (hold.nil()) return info;
  info.text = hold.text;
  std::vector<std::string> f = absl::StrSplit(info.text, ' ');
  int64_t time_us = 0, nb = 0, nt = 0;
  if (f.size() < 5 || !absl::SimpleAtoi(f[0], &time_us) || !absl::SimpleAtoi(f[3], &nb) || nb < 0 ||
      f.size() < static_cast<size_t>(5 + nb) || !absl::SimpleAtoi(f[4 + nb], &nt) ||
      f.size() != static_cast<size_t>(5 + nb + 3 * nt)) {
    return absl::InternalError("redis: malformed hold of " + row.request_id);
  }
  info.time = absl::FromUnixMicros(time_us);
  // The estimate counted toward tokens per minute becomes the actual count.
  const int64_t actual = row.sent_prompt_tokens + row.completion_tokens;
  for (int64_t i = 0; i < nt; ++i) {
    int64_t counted = 0, per_minute = 1;
    if (!absl::SimpleAtoi(f[6 + nb + 3 * i], &counted) ||
        !absl::SimpleAtoi(f[7 + nb + 3 * i], &per_minute) || per_minute <= 0) {
      return absl::InternalError("redis: malformed hold of " + row.request_id);
    }
    info.corrections.push_back(Format3(GcraUnits(actual - counted), per_minute));
  }
  return info;
}

absl::Status RedisPostgresStore::Book(const UsageRow& row, const std::string& token,
                                      const HoldInfo& hold) {
  const int64_t ns = absl::ToUnixNanos(row.time);
  int64_t s = ns / 1'000'000'000, n = ns % 1'000'000'000;
  if (n < 0) {
    n += 1'000'000'000;
    --s;
  }
  std::vector<std::string> args = {row.request_id, Stamp(),
                                   hold.text,      absl::StrCat(absl::ToUnixMicros(row.time)),
                                   row.key_id,     absl::StrCat(row.cost),
                                   token,          absl::StrCat(s),
                                   absl::StrCat(n)};
  args.insert(args.end(), hold.corrections.begin(), hold.corrections.end());
  ASSIGN_OR_RETURN(const RedisValue reply,
                   redis_->Eval(redis_scripts::Book(), {Prefix(row.tenant_id) + "epoch"}, args));
  if (reply.elements.size() != 2) return Malformed("book");
  Register(row.tenant_id, Int(reply.elements[0]) != 0);
  return absl::OkStatus();
}

absl::StatusOr<bool> RedisPostgresStore::Settle(const UsageRow& row) {
  RETURN_IF_ERROR(ValidateRow(row));
  if (!ValidId(row.tenant_id) || !ValidId(row.key_id)) {
    return absl::InvalidArgumentError("usage row " + row.request_id + " has a malformed id");
  }
  if (spool_->Contains(row.request_id)) return false;
  UsageRow r = row;
  {
    absl::MutexLock lock(&mu_);
    if (local_.HasHold(r.request_id)) local_.Book(r);  // admitted while degraded
  }
  const std::string token = NewToken();
  absl::StatusOr<HoldInfo> hold = ReadHold(r);
  if (!hold.ok()) {
    if (!Transient(hold.status())) return hold.status();
    return SpoolRow(r, token, nullptr, hold.status());
  }
  if (!hold->text.empty()) r.time = hold->time;  // the row takes its admission's time

  std::optional<PostgresLedger::Transaction> tx;
  {
    absl::StatusOr<PostgresLedger::Transaction> begun =
        ledger_->Begin(r.tenant_id, PostgresLedger::Lock::kShared);
    if (!begun.ok()) {
      if (!Transient(begun.status())) return begun.status();
      return SpoolRow(r, token, &*hold, begun.status());
    }
    tx.emplace(std::move(*begun));
  }
  absl::StatusOr<PostgresLedger::Transaction::Inserted> inserted = tx->Insert(r, token);
  if (!inserted.ok()) {
    if (!Transient(inserted.status())) return inserted.status();
    tx.reset();
    return SpoolRow(r, token, &*hold, inserted.status());
  }
  if (!inserted->inserted) return false;
  // Booked in Redis inside the transaction: no counter is installed between the two.
  if (absl::Status booked = Book(r, token, *hold); !booked.ok()) {
    tx.reset();  // rolled back; the script may have run, which the row's token will tell
    if (!Transient(booked)) return booked;
    return SpoolRow(r, token, nullptr, booked);
  }
  if (absl::Status committed = tx->Commit(); !committed.ok()) {
    // Transient or not, the commit may have happened: the spool's replay finds out.
    return SpoolRow(r, token, nullptr, committed);
  }
  // The ledger has it: no longer pending. A mark left behind is cleared by the next install.
  redis_->Command({"HDEL", Prefix(r.tenant_id) + "pending", r.request_id}).IgnoreError();
  return true;
}

absl::StatusOr<bool> RedisPostgresStore::SpoolRow(const UsageRow& row, const std::string& token,
                                                  const HoldInfo* hold, const absl::Status& why) {
  ASSIGN_OR_RETURN(const bool added, spool_->Add(row, token));
  if (!added) return false;
  if (spool_->size() == 1) {
    Log(absl::StrCat("tenancy store: ", why.message(), "; usage rows wait in ",
                     options_.spool_path));
  }
  // Counted now if Redis is there, so budgets hold while the ledger is away.
  if (hold != nullptr) Book(row, token, *hold).IgnoreError();
  return true;
}

absl::Status RedisPostgresStore::ReplayRow(const Spool::Entry& entry) {
  const UsageRow& row = entry.row;
  ASSIGN_OR_RETURN(PostgresLedger::Transaction tx,
                   ledger_->Begin(row.tenant_id, PostgresLedger::Lock::kShared));
  ASSIGN_OR_RETURN(const auto inserted, tx.Insert(row, entry.token, /*want_token=*/true));
  const bool ours = !inserted.inserted && inserted.existing_token == entry.token;
  ASSIGN_OR_RETURN(
      const RedisValue created,
      redis_->Eval(
          redis_scripts::Replay(), {Prefix(row.tenant_id) + "epoch"},
          {row.request_id, Stamp(), absl::StrCat(absl::ToUnixMicros(row.time)), row.key_id,
           absl::StrCat(row.cost), entry.token, inserted.inserted ? "1" : "0", ours ? "1" : "0"}));
  Register(row.tenant_id, Int(created) != 0);
  RETURN_IF_ERROR(tx.Commit());
  return spool_->Remove(row.request_id);
}

absl::StatusOr<int> RedisPostgresStore::ReplaySpool() {
  absl::MutexLock lock(&replay_mu_);
  int replayed = 0;
  for (const Spool::Entry& entry : spool_->Entries()) {
    absl::Status status = ReplayRow(entry);
    if (Transient(status)) return status;  // the rest waits for the next round
    if (!status.ok()) {
      // This row stays in the spool, and in the log; the others go on.
      Log(absl::StrCat("tenancy store: spooled row ", entry.row.request_id,
                       " cannot be written: ", status.message()));
      continue;
    }
    ++replayed;
  }
  if (replayed > 0 && spool_->size() == 0) {
    Log(absl::StrCat("tenancy store: ", replayed, " spooled usage rows written to PostgreSQL"));
  }
  return replayed;
}

void RedisPostgresStore::ReplayLoop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.retry_interval);
    if (stopping_ || spool_->size() == 0) continue;
    mu_.Unlock();
    ReplaySpool().IgnoreError();  // tried again after the next interval
    mu_.Lock();
  }
}

absl::StatusOr<int> RedisPostgresStore::ExpireHolds(absl::Time now) {
  int released = 0;
  {
    absl::MutexLock lock(&mu_);
    released += local_.ExpireHolds(now, /*prune=*/true);
  }
  absl::StatusOr<RedisValue> tenants =
      redis_->Command({"SMEMBERS", options_.key_prefix + ":tenants"});
  if (!tenants.ok()) {
    if (options_.fail_open && tenants.status().code() == absl::StatusCode::kUnavailable) {
      return released;
    }
    return tenants.status();
  }
  const std::string now_us = absl::StrCat(absl::ToUnixMicros(now));
  for (const RedisValue& tenant : tenants->elements) {
    ASSIGN_OR_RETURN(const RedisValue n, redis_->Eval(redis_scripts::Expire(),
                                                      {Prefix(tenant.text) + "epoch"}, {now_us}));
    released += static_cast<int>(Int(n));
  }
  return released;
}

absl::StatusOr<Spend> RedisPostgresStore::BudgetSpend(const Limit& budget, absl::Time now) {
  if (budget.tenant_id.empty() || !ValidId(budget.tenant_id) || !ValidId(budget.key_id)) {
    return absl::InvalidArgumentError("budget " + budget.name + " has a malformed id");
  }
  const CounterKey key = BudgetCounterKey(budget, now);
  for (int round = 0; round < kRounds; ++round) {
    absl::StatusOr<RedisValue> reply = redis_->Eval(
        redis_scripts::Spend(), {Prefix(budget.tenant_id) + "epoch"}, {Stamp(), Member(key)});
    if (reply.status().code() == absl::StatusCode::kUnavailable) {
      return SpendLocally(budget, now, reply.status());
    }
    RETURN_IF_ERROR(reply.status());
    const std::vector<RedisValue>& e = reply->elements;
    if (e.empty()) return Malformed("spend");
    Register(budget.tenant_id, Int(e[0]) != 0);
    if (e.size() == 3) return Spend{key.window, Int(e[1]), Int(e[2])};
    absl::Status installed = Install(budget.tenant_id, {key});
    if (installed.code() == absl::StatusCode::kUnavailable) {
      return SpendLocally(budget, now, installed);
    }
    RETURN_IF_ERROR(installed);
  }
  return absl::AbortedError("the budget counter kept being pruned; retry");
}

absl::StatusOr<std::vector<UsageBucket>> RedisPostgresStore::Usage(const UsageQuery& query) {
  return ledger_->Usage(query);
}

absl::Status RedisPostgresStore::InstallLocally(const std::vector<CounterKey>& keys) {
  const std::vector<Spool::Entry> spooled =
      keys.empty() ? std::vector<Spool::Entry>{} : spool_->Entries();
  for (const CounterKey& key : keys) {
    // The ledger's sum when it answers; this replica's spooled rows are not in it yet.
    absl::StatusOr<Micros> sum = ledger_->Sum(key);
    Micros settled = sum.ok() ? *sum : 0;
    for (const Spool::Entry& entry : spooled) {
      if (key.Counts(entry.row)) settled += entry.row.cost;
    }
    absl::MutexLock lock(&mu_);
    local_.Install(key, settled);
  }
  return absl::OkStatus();
}

absl::StatusOr<Decision> RedisPostgresStore::AdmitLocally(const Admission& a,
                                                          const absl::Status& why) {
  Degraded(why);
  if (!options_.fail_open) {
    return absl::UnavailableError(absl::StrCat("tenancy store unavailable: ", why.message()));
  }
  for (int round = 0; round < kRounds; ++round) {
    std::vector<CounterKey> missing;
    {
      absl::MutexLock lock(&mu_);
      missing = local_.Missing(a);
      if (missing.empty()) return local_.Admit(a);
    }
    RETURN_IF_ERROR(InstallLocally(missing));
  }
  return absl::AbortedError("local budget counters kept being pruned during admission; retry");
}

absl::StatusOr<Spend> RedisPostgresStore::SpendLocally(const Limit& budget, absl::Time now,
                                                       const absl::Status& why) {
  Degraded(why);
  if (!options_.fail_open) {
    return absl::UnavailableError(absl::StrCat("tenancy store unavailable: ", why.message()));
  }
  const CounterKey key = BudgetCounterKey(budget, now);
  RETURN_IF_ERROR(InstallLocally({key}));
  absl::MutexLock lock(&mu_);
  return local_.SpendOf(key);
}

}  // namespace terse::tenancy
