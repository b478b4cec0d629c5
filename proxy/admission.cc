// Tenancy between the pipeline's steps: keys, the tenant's compression, admission with its
// response headers, and settlement on threads of its own.
#include "proxy/admission.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/errors.h"
#include "compressor/target_tokenizer.h"
#include "proxy/log.h"
#include "proxy/metrics.h"

namespace terse::proxy {
namespace {

using tenancy::Limit;
using tenancy::Micros;

// Threads for settlements that block on the store (Redis and PostgreSQL round trips); this many
// wait at once. The other stores need threads only for usage reads.
constexpr int kSettleThreads = 16;
constexpr int kUsageThreads = 2;

// Each message's framing in OpenAI's chat format, and the reply's priming (the tokens OpenAI
// bills beyond the text).
constexpr int64_t kTokensPerMessage = 3;
constexpr int64_t kTokensPerReply = 3;

// Constant-time comparison: the admin key must not leak through timing.
bool SameSecret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= a[i] ^ (i < b.size() ? b[i] : 0);
  return diff == 0;
}

// A ledger id shaped like NewRequestId's (`req_` and 32 hex digits) that sorts by time: 13 digits
// of microseconds, then 76 random bits. Rows then land at the end of the ledger's primary key
// instead of on a random page each, which is most of what a row costs SQLite to write.
std::string NewLedgerId(absl::Time now) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  char id[4 + 32] = {'r', 'e', 'q', '_'};
  uint64_t micros = static_cast<uint64_t>(absl::ToUnixMicros(now));
  for (int i = 16; i >= 4; --i, micros >>= 4) id[i] = kHex[micros & 0xf];
  uint64_t bits = rng();
  for (int i = 17; i < 36; ++i) {
    if (i == 33) bits = rng();
    id[i] = kHex[bits & 0xf];
    bits >>= 4;
  }
  return std::string(id, sizeof id);
}

int64_t IntMember(const Json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || !it->is_number_integer()) return -1;
  return std::max<int64_t>(0, it->get<int64_t>());
}

}  // namespace

// ---- Tenants

struct Tenants::State {
  // How a call's settlement reaches the store.
  enum class SettleWay {
    kInline,  // Settle never waits (in memory): on the caller's thread, no hop
    kStore,   // SettleAsync: the store calls back once the row is durable (SQLite)
    kThread,  // Settle blocks on the network: on a settlement thread
  };

  State(Metrics& metrics, std::unique_ptr<tenancy::Store> store, SettleWay settle_way,
        std::string admin_key)
      : metrics(metrics),
        store(std::move(store)),
        settle_way(settle_way),
        admin_key(std::move(admin_key)) {}

  // Counts `text` in the tokens `model` is billed in; about 4 bytes a token when no rank file
  // can be loaded (logged once).
  int64_t CountTokens(std::string_view model, std::string_view text) {
    const bool o200k = compressor::TargetTokenizer::EncodingForModel(model) == "o200k_base";
    Encoding& encoding = o200k ? o200k_base : cl100k_base;
    std::call_once(encoding.once, [&] {
      auto loaded = compressor::TargetTokenizer::Load(o200k ? "o200k_base" : "cl100k_base");
      if (loaded.ok()) {
        encoding.tokenizer = *std::move(loaded);
      } else {
        LogJson(LogLevel::kWarn, Json{{"msg", "admission estimates prompt tokens from bytes"},
                                      {"error", std::string(loaded.status().message())}});
      }
    });
    if (encoding.tokenizer == nullptr) return static_cast<int64_t>(text.size() + 3) / 4;
    return static_cast<int64_t>(encoding.tokenizer->Count(text));
  }

  // The prompt of a request body as the upstream will bill it, in `model`'s tokens.
  int64_t PromptTokens(Operation operation, const Json& body, std::string_view model) {
    int64_t tokens = 0;
    auto count_strings = [&](const Json& value) {
      if (value.is_string()) tokens += CountTokens(model, value.get_ref<const std::string&>());
      if (!value.is_array()) return;
      for (const Json& item : value) {
        if (item.is_string()) tokens += CountTokens(model, item.get_ref<const std::string&>());
      }
    };
    switch (operation) {
      case Operation::kChatCompletions: {
        auto messages = body.find("messages");
        if (messages == body.end() || !messages->is_array()) return 0;
        for (const Json& message : *messages) {
          tokens += kTokensPerMessage;
          if (!message.is_object()) continue;
          auto content = message.find("content");
          if (content != message.end() && content->is_string()) {
            tokens += CountTokens(model, content->get_ref<const std::string&>());
          } else if (content != message.end() && content->is_array()) {
            for (const Json& part : *content) {
              auto text = part.is_object() ? part.find("text") : part.end();
              if (text != part.end() && text->is_string()) {
                tokens += CountTokens(model, text->get_ref<const std::string&>());
              }
            }
          }
          auto calls = message.find("tool_calls");
          if (calls != message.end()) tokens += CountTokens(model, calls->dump());
        }
        return tokens + kTokensPerReply;
      }
      case Operation::kCompletions:
        if (auto prompt = body.find("prompt"); prompt != body.end()) count_strings(*prompt);
        return tokens;
      case Operation::kEmbeddings:
        if (auto input = body.find("input"); input != body.end()) count_strings(*input);
        return tokens;
      default:
        return 0;
    }
  }

  std::shared_ptr<const tenancy::Tenancy> Current() const {
    absl::ReaderMutexLock lock(&policy_mu);
    return current;
  }

  // Runs `job` on a settlement thread.
  void Enqueue(absl::AnyInvocable<void() &&> job) {
    absl::MutexLock lock(&mu);
    queue.push_back(std::move(job));
  }

  void SettleLoop() {
    for (;;) {
      absl::AnyInvocable<void() &&> job;
      {
        absl::MutexLock lock(&mu);
        mu.Await(absl::Condition(
            +[](State* s)
                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->stopping || !s->queue.empty(); },
            this));
        if (queue.empty()) return;  // stopping, and nothing is left to settle
        job = std::move(queue.front());
        queue.pop_front();
      }
      std::move(job)();
    }
  }

  // Releases expired holds every `period` until stopped.
  void ExpireLoop(absl::Duration period) {
    absl::MutexLock lock(&mu);
    while (!mu.AwaitWithTimeout(absl::Condition(&stopping), period)) {
      mu.Unlock();
      absl::StatusOr<int> released = store->ExpireHolds(absl::Now());
      if (!released.ok()) {
        LogJson(LogLevel::kError, Json{{"msg", "expiring holds failed"},
                                       {"error", std::string(released.status().message())}});
      } else if (*released > 0) {
        LogJson(LogLevel::kWarn,
                Json{{"msg", "holds of unsettled requests expired"}, {"holds", *released}});
      }
      mu.Lock();
    }
  }

  struct Encoding {
    std::once_flag once;
    std::shared_ptr<const compressor::TargetTokenizer> tokenizer;  // null: not loadable
  };

  // Constant after construction.
  Metrics& metrics;
  const std::unique_ptr<tenancy::Store> store;
  const SettleWay settle_way;
  const std::string admin_key;  // empty: none
  Encoding cl100k_base;
  Encoding o200k_base;

  mutable absl::Mutex policy_mu;
  std::shared_ptr<const tenancy::Tenancy> current ABSL_GUARDED_BY(policy_mu);

  absl::Mutex mu;
  std::deque<absl::AnyInvocable<void() &&>> queue ABSL_GUARDED_BY(mu);
  bool stopping ABSL_GUARDED_BY(mu) = false;
  std::vector<std::thread> threads;  // settlers and the expiry timer; started last
};

absl::StatusOr<std::unique_ptr<Tenants>> Tenants::Open(const v1::Config& config, Metrics& metrics) {
  if (!config.has_tenancy()) return std::unique_ptr<Tenants>();
  const v1::Tenancy& section = config.tenancy();
  absl::StatusOr<std::unique_ptr<tenancy::Store>> store = tenancy::OpenStore(section);
  if (!store.ok()) return store.status();
  std::string admin_key;
  if (!section.admin_key_env().empty()) {
    if (const char* value = std::getenv(section.admin_key_env().c_str())) admin_key = value;
  }
  using SettleWay = State::SettleWay;
  const SettleWay settle_way =
      section.store().kind() == v1::TenancyStore::MEMORY           ? SettleWay::kInline
      : section.store().kind() == v1::TenancyStore::REDIS_POSTGRES ? SettleWay::kThread
                                                                   : SettleWay::kStore;
  auto state =
      std::make_unique<State>(metrics, *std::move(store), settle_way, std::move(admin_key));
  absl::StatusOr<std::unique_ptr<tenancy::Tenancy>> policy =
      tenancy::Tenancy::Create(section, *state->store);
  if (!policy.ok()) return policy.status();
  {
    absl::MutexLock lock(&state->policy_mu);
    state->current = *std::move(policy);
  }
  // Often enough that a crashed request's hold is gone soon after its lease ends.
  const absl::Duration lease = absl::Milliseconds(section.hold_lease_ms());
  const absl::Duration period = std::clamp(lease / 4, absl::Milliseconds(50), absl::Seconds(30));
  State* raw = state.get();
  const int threads = settle_way == SettleWay::kThread ? kSettleThreads : kUsageThreads;
  for (int i = 0; i < threads; ++i) raw->threads.emplace_back([raw] { raw->SettleLoop(); });
  raw->threads.emplace_back([raw, period] { raw->ExpireLoop(period); });
  return std::unique_ptr<Tenants>(new Tenants(std::move(state)));
}

Tenants::Tenants(std::unique_ptr<State> state) : state_(std::move(state)) {}

Tenants::~Tenants() {
  {
    absl::MutexLock lock(&state_->mu);
    state_->stopping = true;
  }
  for (std::thread& t : state_->threads) t.join();
}

absl::Status Tenants::Reload(const v1::Config& config) {
  if (!config.has_tenancy()) {
    return absl::FailedPreconditionError("a reload cannot turn tenancy off; restart terse");
  }
  absl::StatusOr<std::unique_ptr<tenancy::Tenancy>> policy =
      tenancy::Tenancy::Create(config.tenancy(), *state_->store);
  if (!policy.ok()) return policy.status();
  absl::MutexLock lock(&state_->policy_mu);
  state_->current = *std::move(policy);
  return absl::OkStatus();
}

absl::Status Tenants::CheckKey(std::string_view api_key) const {
  if (!state_->admin_key.empty() && SameSecret(api_key, state_->admin_key)) {
    return absl::OkStatus();
  }
  absl::StatusOr<tenancy::Principal> who = state_->Current()->Authenticate(api_key);
  return who.status();
}

void Tenants::Usage(UsageRequest request,
                    absl::AnyInvocable<void(absl::StatusOr<Json>) &&> done) const {
  std::shared_ptr<const tenancy::Tenancy> policy = state_->Current();
  std::optional<tenancy::Principal> who;
  if (state_->admin_key.empty() || !SameSecret(request.api_key, state_->admin_key)) {
    absl::StatusOr<tenancy::Principal> tenant = policy->Authenticate(request.api_key);
    if (!tenant.ok()) return std::move(done)(tenant.status());
    if (!request.tenant.empty() && request.tenant != tenant->tenant_id()) {
      return std::move(done)(MakeError(absl::StatusCode::kPermissionDenied,
                                       "A tenant's key reads its own tenant's usage only.",
                                       {.http_status = 403}));
    }
    request.tenant = tenant->tenant_id();
    who = *tenant;
  } else if (request.tenant.empty()) {
    return std::move(done)(
        InvalidRequest("The admin key reads a tenant's usage: add ?tenant=ID.", "tenant"));
  }
  state_->Enqueue([state = state_.get(), policy = std::move(policy), who,
                   request = std::move(request), done = std::move(done)]() mutable {
    tenancy::UsageQuery query{.tenant_id = request.tenant,
                              .from = request.from,
                              .to = request.to,
                              .group_by = request.group_by};
    absl::StatusOr<std::vector<tenancy::UsageBucket>> buckets = state->store->Usage(query);
    if (!buckets.ok()) return std::move(done)(buckets.status());
    Json data = Json::array();
    for (const tenancy::UsageBucket& b : *buckets) {
      data.push_back({{"group", b.group},
                      {"requests", b.requests},
                      {"original_prompt_tokens", b.original_prompt_tokens},
                      {"sent_prompt_tokens", b.sent_prompt_tokens},
                      {"completion_tokens", b.completion_tokens},
                      {"cached_tokens", b.cached_tokens},
                      {"cost_usd", FormatUsd(b.cost)},
                      {"savings_usd", FormatUsd(b.savings)}});
    }
    Json body = {{"object", "terse.usage"}, {"tenant", request.tenant}, {"data", std::move(data)}};
    if (who.has_value()) {
      Json budgets = Json::array();
      const absl::Time now = absl::Now();
      for (const Limit& limit : policy->LimitsOf(*who)) {
        if (limit.kind != Limit::Kind::kBudget) continue;
        absl::StatusOr<tenancy::Spend> spend = state->store->BudgetSpend(limit, now);
        if (!spend.ok()) return std::move(done)(spend.status());
        budgets.push_back(
            {{"name", limit.name},
             {"period", tenancy::PeriodName(limit.period)},
             {"shadow", limit.shadow},
             {"limit_usd", FormatUsd(limit.amount)},
             {"spent_usd", FormatUsd(spend->settled)},
             {"held_usd", FormatUsd(spend->held)},
             {"remaining_usd", FormatUsd(limit.amount - spend->settled - spend->held)}});
      }
      body["budgets"] = std::move(budgets);
    }
    std::move(done)(std::move(body));
  });
}

tenancy::Store& Tenants::store() const { return *state_->store; }

// ---- TenantCall

TenantCall::TenantCall(Tenants* tenants)
    : state_(tenants != nullptr ? tenants->state_.get() : nullptr) {
  if (state_ != nullptr) tenancy_ = state_->Current();
}

absl::Status TenantCall::Authenticate(std::string_view api_key) {
  if (state_ == nullptr) return absl::OkStatus();
  if (api_key.empty()) {
    return MakeError(absl::StatusCode::kUnauthenticated,
                     "You didn't provide an API key. Send it as `Authorization: Bearer "
                     "sk-terse-...`.",
                     {.http_status = 401, .code = "invalid_api_key"});
  }
  absl::StatusOr<tenancy::Principal> who = tenancy_->Authenticate(api_key);
  if (!who.ok()) return who.status();
  principal_ = *who;
  return absl::OkStatus();
}

absl::Status TenantCall::Authorize(std::string_view route, std::string_view model) {
  if (!principal_.has_value()) return absl::OkStatus();
  absl::Status allowed = tenancy_->Authorize(*principal_, route, model);
  if (!allowed.ok()) state_->metrics.RecordTenantRefusal(principal_->tenant_id(), "forbidden");
  return allowed;
}

const v1::Route& TenantCall::CompressionRoute(const config::Config& config,
                                              const v1::Route& route) {
  if (!principal_.has_value()) return route;
  const v1::TenantCompression& own = principal_->tenant->compression();
  if (own.policy().empty() && !own.has_rate() && !own.has_enabled()) return route;
  v1::Route& copy = compression_route_.emplace(route);
  v1::Compression& compression = *copy.mutable_compression();
  if (!own.policy().empty()) {
    for (const v1::Route& named : config.proto().routes()) {
      if (named.name() == own.policy()) compression = named.compression();
    }
  }
  if (own.has_rate()) {
    compression.set_rate(own.rate());
    compression.clear_target_tokens();
    compression.clear_rate_bands();
  }
  if (own.has_enabled()) compression.set_enabled(own.enabled());
  return copy;
}

absl::Status TenantCall::Admit(Operation operation, const Json& body,
                               const v1::CompressionReport& compression,
                               tenancy::RequestInfo request, bool stream, HeaderFields& headers) {
  if (!principal_.has_value()) return absl::OkStatus();
  const absl::Time now = absl::Now();
  request.request_id = NewLedgerId(now);
  if (compression.applied()) {
    request.prompt_tokens = compression.compressed_tokens();
    removed_prompt_tokens_ =
        std::max<int64_t>(0, int64_t{compression.original_tokens()} - request.prompt_tokens);
  } else {
    request.prompt_tokens = state_->PromptTokens(operation, body, request.model);
  }
  if (operation == Operation::kEmbeddings) {
    request.max_output_tokens = 0;
  } else if (int64_t n = IntMember(body, "max_completion_tokens"); n >= 0) {
    request.max_output_tokens = n;
  } else if (int64_t m = IntMember(body, "max_tokens"); m >= 0) {
    request.max_output_tokens = m;
  }
  const std::string& tenant = principal_->tenant_id();
  absl::StatusOr<tenancy::Admitted> admitted = tenancy_->Admit(*principal_, request, now);
  if (!admitted.ok()) {
    state_->metrics.RecordTenantRefusal(
        tenant, admitted.status().code() == absl::StatusCode::kFailedPrecondition ? "unpriced"
                                                                                  : "store_error");
    return admitted.status();
  }
  const tenancy::Decision& decision = admitted->decision;
  const std::vector<Limit>& limits = tenancy_->LimitsOf(*principal_);
  // Per-minute limits: the tightest of each kind; budgets: every one, and the tightest.
  const Limit* requests = nullptr;
  const Limit* tokens = nullptr;
  int64_t requests_left = 0, tokens_left = 0;
  for (size_t i = 0; i < limits.size() && i < decision.remaining.size(); ++i) {
    const Limit& limit = limits[i];
    const int64_t left = decision.remaining[i];
    if (limit.kind == Limit::Kind::kBudget) {
      state_->metrics.SetTenantBudgetRemaining(tenant, limit.key_id,
                                               tenancy::PeriodName(limit.period), left);
      if (!limit.shadow) budget_remaining_ = std::min(budget_remaining_.value_or(left), left);
    } else if (!limit.shadow) {
      const Limit*& tightest = limit.kind == Limit::Kind::kRequestsPerMinute ? requests : tokens;
      int64_t& tightest_left =
          limit.kind == Limit::Kind::kRequestsPerMinute ? requests_left : tokens_left;
      if (tightest == nullptr || left < tightest_left) {
        tightest = &limit;
        tightest_left = left;
      }
    }
  }
  // Sent with the answer, and with a refusal as OpenAI does, so clients can pace themselves.
  HeaderFields rate_fields;
  auto add_rate = [&](const Limit* limit, int64_t left, const char* kind) {
    if (limit == nullptr) return;
    // A GCRA limit is whole again once what it lacks has dripped back, at amount per minute.
    const absl::Duration reset = absl::Minutes(1) * (limit->amount - left) / limit->amount;
    rate_fields.emplace_back(absl::StrCat("x-ratelimit-limit-", kind), absl::StrCat(limit->amount));
    rate_fields.emplace_back(absl::StrCat("x-ratelimit-remaining-", kind), absl::StrCat(left));
    rate_fields.emplace_back(absl::StrCat("x-ratelimit-reset-", kind), FormatReset(reset));
  };
  add_rate(requests, requests_left, "requests");
  add_rate(tokens, tokens_left, "tokens");
  if (!decision.admitted()) {
    using Outcome = tenancy::Decision::Outcome;
    state_->metrics.RecordTenantRefusal(
        tenant, decision.outcome == Outcome::kRateLimited       ? "rate_limited"
                : decision.outcome == Outcome::kBudgetExhausted ? "budget_exhausted"
                                                                : "too_large");
    absl::Status refusal = tenancy::RefusalStatus(*admitted);
    if (decision.outcome == Outcome::kRateLimited) {
      refusal = WithRetryAfter(std::move(refusal), decision.retry_after);
    }
    return WithResponseFields(std::move(refusal), rate_fields);
  }
  headers.insert(headers.end(), rate_fields.begin(), rate_fields.end());
  if (stream && budget_remaining_.has_value()) {
    headers.emplace_back("x-terse-budget-remaining-usd", FormatUsd(*budget_remaining_));
  }
  request_ = std::move(request);
  admitted_ = *std::move(admitted);
  admitted_at_ = now;
  return absl::OkStatus();
}

void TenantCall::Settle(const CallEnd& end, absl::AnyInvocable<void() &&> then) {
  if (!admitted_.has_value()) return std::move(then)();
  tenancy::RequestOutcome outcome;
  if (end.usage.has_value()) {
    outcome.sent_prompt_tokens = static_cast<int64_t>(end.usage->prompt_tokens);
    outcome.completion_tokens = static_cast<int64_t>(end.usage->completion_tokens);
    outcome.cached_tokens =
        std::min(outcome.sent_prompt_tokens, static_cast<int64_t>(end.usage->cached_tokens));
  } else if (end.maybe_billed) {
    outcome.sent_prompt_tokens = request_.prompt_tokens;
  }
  // Compression's saving counted in the upstream's own numbers when it reported them.
  if (outcome.sent_prompt_tokens > 0) {
    outcome.original_prompt_tokens = outcome.sent_prompt_tokens + removed_prompt_tokens_;
  }
  outcome.latency = end.latency;
  outcome.http_status = end.http_status;
  outcome.compressed = removed_prompt_tokens_ > 0;
  outcome.shed = end.shed;
  if (const tenancy::Price* price = tenancy_->prices().Find(request_.provider, request_.model)) {
    cost_ = tenancy::Cost(*price, outcome.sent_prompt_tokens, outcome.cached_tokens,
                          outcome.completion_tokens);
    savings_ = tenancy::Savings(*price, outcome.original_prompt_tokens, outcome.sent_prompt_tokens,
                                outcome.cache_lost_tokens);
  }
  auto booked = [this, shed = outcome.shed,
                 then = std::move(then)](absl::StatusOr<bool> booked) mutable {
    const std::string& tenant = principal_->tenant_id();
    if (!booked.ok()) {
      LogJson(LogLevel::kError, Json{{"msg", "settling a request failed"},
                                     {"ledger_id", request_.request_id},
                                     {"tenant", tenant},
                                     {"error", std::string(booked.status().message())}});
    } else if (*booked) {
      state_->metrics.RecordTenantSettled(tenant, cost_, savings_, shed);
      // The booking replaced this call's estimate with its cost in every budget.
      const Micros change = admitted_->estimate - cost_;
      const std::vector<Limit>& limits = tenancy_->LimitsOf(*principal_);
      const tenancy::Decision& decision = admitted_->decision;
      for (size_t i = 0; i < limits.size() && i < decision.remaining.size(); ++i) {
        if (limits[i].kind != Limit::Kind::kBudget) continue;
        state_->metrics.SetTenantBudgetRemaining(tenant, limits[i].key_id,
                                                 tenancy::PeriodName(limits[i].period),
                                                 decision.remaining[i] + change);
      }
      if (budget_remaining_.has_value()) *budget_remaining_ += change;
    }
    std::move(then)();
  };
  switch (state_->settle_way) {
    case Tenants::State::SettleWay::kInline:
      return booked(tenancy_->Settle(*principal_, request_, admitted_at_, outcome));
    case Tenants::State::SettleWay::kStore:
      return tenancy_->SettleAsync(*principal_, request_, admitted_at_, outcome, std::move(booked));
    case Tenants::State::SettleWay::kThread:
      return state_->Enqueue([this, outcome, booked = std::move(booked)]() mutable {
        std::move(booked)(tenancy_->Settle(*principal_, request_, admitted_at_, outcome));
      });
  }
}

HeaderFields TenantCall::SettledFields() const {
  if (!admitted_.has_value()) return {};
  HeaderFields fields = {{"x-terse-cost-usd", FormatUsd(cost_)},
                         {"x-terse-savings-usd", FormatUsd(savings_)}};
  if (budget_remaining_.has_value()) {
    fields.emplace_back("x-terse-budget-remaining-usd", FormatUsd(*budget_remaining_));
  }
  return fields;
}

Json TenantCall::SettledJson() const {
  Json out = Json::object();
  if (!admitted_.has_value()) return out;
  out["cost_usd"] = FormatUsd(cost_);
  out["savings_usd"] = FormatUsd(savings_);
  if (budget_remaining_.has_value()) out["budget_remaining_usd"] = FormatUsd(*budget_remaining_);
  return out;
}

std::string_view TenantCall::tenant_id() const {
  return principal_.has_value() ? std::string_view(principal_->tenant_id()) : std::string_view();
}

std::string_view TenantCall::key_id() const {
  return principal_.has_value() ? std::string_view(principal_->key_id()) : std::string_view();
}

std::string FormatUsd(Micros micros) {
  const Micros magnitude = micros < 0 ? -micros : micros;
  return absl::StrFormat("%s%d.%06d", micros < 0 ? "-" : "", magnitude / tenancy::kMicrosPerUsd,
                         magnitude % tenancy::kMicrosPerUsd);
}

std::string FormatReset(absl::Duration wait) {
  const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(wait, absl::Milliseconds(1)));
  if (ms < 1000) return absl::StrCat(ms, "ms");
  const int64_t minutes = ms / 60000;
  const double seconds = static_cast<double>(ms % 60000) / 1000.0;
  if (minutes == 0) return absl::StrFormat("%gs", seconds);
  return absl::StrFormat("%dm%gs", minutes, seconds);
}

}  // namespace terse::proxy
