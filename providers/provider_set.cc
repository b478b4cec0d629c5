// Retries and fallbacks. Attempt callbacks and backoff timers run on the engine's loop thread;
// Cancel comes from any thread, so the call's state sits behind a mutex that is never held while
// the client's sink runs.
#include "providers/provider_set.h"

#include <algorithm>
#include <mutex>
#include <optional>
#include <random>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "base/errors.h"
#include "providers/adapters.h"
#include "providers/http_client.h"
#include "providers/upstream_errors.h"

namespace terse::providers {
namespace {

// Full backoff for `attempt` (1 = after the first failure), with jitter: a uniform pick in
// [backoff/2, backoff], so that many clients failing together do not retry in lockstep.
absl::Duration Backoff(int attempt, absl::Duration initial, absl::Duration max) {
  absl::Duration backoff = initial;
  for (int i = 1; i < attempt && backoff < max; ++i) backoff *= 2;
  backoff = std::min(backoff, max);
  thread_local std::mt19937_64 rng(std::random_device{}());
  double f = std::uniform_real_distribution<double>(0.5, 1.0)(rng);
  return backoff * f;
}

class NoopCall : public Call {
 public:
  void Cancel() override {}
};

}  // namespace

class ProviderSet::FallbackCall : public Call, public std::enable_shared_from_this<FallbackCall> {
 public:
  struct Target {
    Provider* provider;
    Retry retry;
  };

  FallbackCall(HttpClient& client, std::vector<Target> targets, Request request,
               std::shared_ptr<ResponseSink> sink)
      : client_(client),
        targets_(std::move(targets)),
        request_(std::move(request)),
        sink_(std::move(sink)) {}

  void Start() { StartAttempt(); }

  void Cancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_ || cancelled_) return;
    cancelled_ = true;
    if (current_) {
      current_->Cancel();  // its OnDone(kCancelled) ends this call
    } else {
      // Between attempts (backing off): end now rather than when the timer fires.
      client_.Schedule(absl::ZeroDuration(), [self = shared_from_this()](bool) {
        self->Finish(absl::CancelledError("upstream call cancelled"));
      });
    }
  }

 private:
  // The sink of one attempt; forwards to the call while that attempt is the current one.
  class AttemptSink : public ResponseSink {
   public:
    AttemptSink(std::shared_ptr<FallbackCall> call, uint64_t attempt)
        : call_(std::move(call)), attempt_(attempt) {}
    void OnResponse(json::WireJson body) override {
      if (call_->Forwarding(attempt_)) call_->sink_->OnResponse(std::move(body));
    }
    void OnChunks(std::span<json::WireJson> chunks) override {
      if (call_->Forwarding(attempt_)) call_->sink_->OnChunks(chunks);
    }
    void OnDone(absl::Status status) override { call_->AttemptDone(attempt_, std::move(status)); }

   private:
    std::shared_ptr<FallbackCall> call_;
    const uint64_t attempt_;
  };

  bool Forwarding(uint64_t attempt) {
    std::lock_guard<std::mutex> lock(mu_);
    if (attempt != attempt_id_ || finished_) return false;
    forwarded_ = true;  // from here on the call is committed to this attempt
    return true;
  }

  void StartAttempt() {
    Provider* provider = nullptr;
    uint64_t attempt = 0;
    bool cancelled = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      cancelled = cancelled_;
      if (cancelled) {
        finished_ = true;
      } else {
        attempt = ++attempt_id_;
        ++attempts_on_target_;
        provider = targets_[target_].provider;
      }
    }
    if (cancelled) {
      sink_->OnDone(absl::CancelledError("upstream call cancelled"));
      return;
    }
    std::unique_ptr<Call> call =
        provider->Send(request_, std::make_shared<AttemptSink>(shared_from_this(), attempt));
    std::lock_guard<std::mutex> lock(mu_);
    if (attempt != attempt_id_ || finished_ || cancelled_) {
      // Cancelled while Send ran: stop the attempt; its OnDone is ignored or ends the call.
      call->Cancel();
      if (attempt == attempt_id_ && !finished_) current_ = std::move(call);
      return;
    }
    current_ = std::move(call);
  }

  void AttemptDone(uint64_t attempt, absl::Status status) {
    std::unique_ptr<Call> ended;  // destroyed outside the lock
    enum class Next { kFinish, kRetry, kFallBack } next = Next::kFinish;
    absl::Duration backoff;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (attempt != attempt_id_ || finished_) return;
      ended = std::move(current_);
      if (cancelled_ && !status.ok()) status = absl::CancelledError("upstream call cancelled");
      Recovery recovery = RecoveryOf(status);
      bool may_recover = !status.ok() && !forwarded_ && !cancelled_ &&
                         recovery != Recovery::kNone && absl::Now() < request_.deadline;
      const Retry& retry = targets_[target_].retry;
      if (may_recover && recovery == Recovery::kRetry && attempts_on_target_ < retry.max_attempts) {
        // The upstream's own delay is waited as asked, no jitter; one beyond max_backoff means
        // this target is out for longer than a client should be held: fall back instead.
        std::optional<absl::Duration> asked = RetryAfterOf(status);
        backoff =
            asked ? *asked : Backoff(attempts_on_target_, retry.initial_backoff, retry.max_backoff);
        if (backoff <= retry.max_backoff && absl::Now() + backoff < request_.deadline) {
          next = Next::kRetry;
        }
      }
      if (next == Next::kFinish && may_recover && target_ + 1 < targets_.size()) {
        ++target_;
        attempts_on_target_ = 0;
        next = Next::kFallBack;
      }
      if (next == Next::kFinish) finished_ = true;
    }
    switch (next) {
      case Next::kFinish:
        sink_->OnDone(std::move(status));
        return;
      case Next::kRetry:
        client_.Schedule(backoff, [self = shared_from_this()](bool stopping) {
          if (stopping) return self->Finish(absl::CancelledError("HTTP client shut down"));
          self->StartAttempt();
        });
        return;
      case Next::kFallBack:
        StartAttempt();
        return;
    }
  }

  void Finish(absl::Status status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      finished_ = true;
    }
    sink_->OnDone(std::move(status));
  }

  // Constant after construction.
  HttpClient& client_;
  const std::vector<Target> targets_;
  const Request request_;
  const std::shared_ptr<ResponseSink> sink_;

  std::mutex mu_;  // std::mutex: pthread-based, so ThreadSanitizer understands it
  size_t target_ ABSL_GUARDED_BY(mu_) = 0;
  int attempts_on_target_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t attempt_id_ ABSL_GUARDED_BY(mu_) = 0;        // callbacks of older attempts are ignored
  std::unique_ptr<Call> current_ ABSL_GUARDED_BY(mu_);  // the attempt in flight, if any
  bool forwarded_ ABSL_GUARDED_BY(mu_) = false;         // the sink got data: no retry, no fallback
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // OnDone was (or is being) delivered
};

absl::StatusOr<std::unique_ptr<ProviderSet>> ProviderSet::Create(const v1::Config& config,
                                                                 int lanes) {
  std::unique_ptr<ProviderSet> set(new ProviderSet());
  HttpClientOptions options;
  options.lanes = lanes;
  std::vector<ProviderSettings> all;
  for (const v1::Provider& p : config.providers()) {
    absl::StatusOr<ProviderSettings> settings = ResolveSettings(p);
    if (!settings.ok()) return settings.status();
    options.max_connections_per_host =
        std::max(options.max_connections_per_host, static_cast<int>(p.max_connections()));
    all.push_back(*std::move(settings));
  }
  absl::StatusOr<std::unique_ptr<HttpClient>> client = HttpClient::Create(options);
  if (!client.ok()) return client.status();
  set->client_ = *std::move(client);

  for (int i = 0; i < config.providers_size(); ++i) {
    const v1::Provider& p = config.providers(i);
    std::string name = all[i].name;
    if (set->by_name_.contains(name)) {
      return absl::InvalidArgumentError("two providers are named \"" + name + "\"");
    }
    absl::StatusOr<std::unique_ptr<Provider>> provider =
        NewProvider(std::move(all[i]), *set->client_);
    if (!provider.ok()) return provider.status();
    Retry retry;
    if (p.retry().max_attempts() > 0) {
      retry.max_attempts = static_cast<int>(p.retry().max_attempts());
    }
    if (p.retry().initial_backoff_ms() > 0) {
      retry.initial_backoff = absl::Milliseconds(p.retry().initial_backoff_ms());
    }
    if (p.retry().max_backoff_ms() > 0) {
      retry.max_backoff = absl::Milliseconds(p.retry().max_backoff_ms());
    }
    set->by_name_[name] = provider->get();
    set->retry_[provider->get()] = retry;
    set->providers_.push_back(*std::move(provider));
  }
  return set;
}

ProviderSet::~ProviderSet() {
  // Stop the engine first: pending calls end (kCancelled) while the providers still exist.
  client_.reset();
}

Provider* ProviderSet::Find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : it->second;
}

std::unique_ptr<Call> ProviderSet::Send(std::vector<Provider*> targets, Request request,
                                        std::shared_ptr<ResponseSink> sink) {
  std::vector<FallbackCall::Target> resolved;
  for (Provider* p : targets) {
    if (p == nullptr) continue;
    auto it = retry_.find(p);
    resolved.push_back({p, it == retry_.end() ? Retry() : it->second});
  }
  if (resolved.empty()) {
    client_->Schedule(absl::ZeroDuration(), [sink = std::move(sink)](bool) {
      sink->OnDone(UpstreamFailed("no provider to send the request to"));
    });
    return std::make_unique<NoopCall>();
  }
  auto call = std::make_shared<FallbackCall>(*client_, std::move(resolved), std::move(request),
                                             std::move(sink));
  call->Start();
  // The handle shares the call with its attempts, so it stays valid after the call ended.
  struct Handle : Call {
    explicit Handle(std::shared_ptr<FallbackCall> c) : call(std::move(c)) {}
    void Cancel() override { call->Cancel(); }
    std::shared_ptr<FallbackCall> call;
  };
  return std::make_unique<Handle>(std::move(call));
}

}  // namespace terse::providers
