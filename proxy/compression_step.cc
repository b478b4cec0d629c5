// Route policy -> compressor::ChatPolicy, overrides, a bounded work queue with worker threads, and
// a watchdog that answers for compressions that outlive their route's timeout.
#include "proxy/compression_step.h"

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/errors.h"
#include "base/status_macros.h"
#include "compressor/chat_compression.h"
#include "compressor/compressor.h"
#include "compressor/target_tokenizer.h"

namespace terse::proxy {
namespace {

using Clock = std::chrono::steady_clock;

// One compression waiting for or on a worker. Answered exactly once: by the worker, the
// watchdog (timeout) or the destructor (shutdown), whichever comes first.
struct Job {
  Operation operation = Operation::kChatCompletions;
  compressor::ChatPolicy policy;
  std::optional<Json> prompt;
  Clock::time_point enqueued;
  Clock::time_point deadline;
  CompressionStep::Done done;
  std::atomic<bool> answered{false};

  void Answer(absl::StatusOr<CompressionStep::Result> result) {
    if (answered.exchange(true)) return;
    std::move(done)(std::move(result));
  }
};

std::string_view Header(const CallInfo& info, std::string_view name) {
  for (const auto& [key, value] : info.headers) {
    if (key == name) return value;
  }
  return {};
}

absl::StatusOr<double> ParseRate(std::string_view text, std::string_view param) {
  double rate = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), rate);
  if (ec != std::errc() || end != text.data() + text.size() || !(rate > 0 && rate <= 1)) {
    return InvalidRequest(std::string(param) + " must be a number in (0, 1], got \"" +
                              std::string(text) + "\"",
                          param);
  }
  return rate;
}

// What the request asks for, before the route decides whether it may.
struct Override {
  std::optional<bool> enabled;
  std::optional<double> rate;
  std::optional<size_t> target_tokens;
  bool any() const { return enabled || rate || target_tokens; }
};

absl::StatusOr<Override> ReadOverride(const CallInfo& info, std::optional<Json> terse) {
  Override o;
  if (std::string_view v = Header(info, "x-terse-compress"); !v.empty()) {
    const std::string value = absl::AsciiStrToLower(std::string(v));
    if (value == "off" || value == "false" || value == "0") {
      o.enabled = false;
    } else if (value == "on" || value == "true" || value == "1") {
      o.enabled = true;
    } else {
      return InvalidRequest("x-terse-compress must be on or off", "x-terse-compress");
    }
  }
  if (std::string_view v = Header(info, "x-terse-rate"); !v.empty()) {
    ASSIGN_OR_RETURN(o.rate, ParseRate(v, "x-terse-rate"));
  }
  if (!terse.has_value()) return o;
  if (!terse->is_object()) return InvalidRequest("terse must be an object", "terse");
  for (auto& [key, value] : terse->items()) {
    if (key == "compress" && value.is_boolean()) {
      o.enabled = value.get<bool>();
    } else if (key == "rate" && value.is_number()) {
      ASSIGN_OR_RETURN(o.rate, ParseRate(value.dump(), "terse.rate"));
    } else if (key == "target_tokens" && value.is_number_integer() && value.get<int64_t>() > 0) {
      o.target_tokens = static_cast<size_t>(value.get<int64_t>());
    } else {
      return InvalidRequest(absl::StrCat("terse.", key, " is not a valid override"),
                            absl::StrCat("terse.", key));
    }
  }
  return o;
}

absl::StatusOr<compressor::ChatPolicy> PolicyFor(const v1::Route& route, const Override& o,
                                                 const std::string& model) {
  const v1::Compression& c = route.compression();
  compressor::ChatPolicy p;
  compressor::CompressOptions& options = p.options;
  if (c.has_rate()) options.rate = c.rate();
  if (c.has_target_tokens()) options.target_tokens = c.target_tokens();
  for (const v1::RateBand& band : c.rate_bands()) {
    p.rate_bands.push_back({band.min_prompt_tokens(), band.rate()});
  }
  if (o.rate || o.target_tokens) {
    options.rate = o.rate;
    options.target_tokens = o.target_tokens;
    p.rate_bands.clear();
  }
  p.min_prompt_tokens = c.min_prompt_tokens();
  if (c.roles_size() > 0) p.roles.assign(c.roles().begin(), c.roles().end());
  p.keep_last_turns = c.keep_last_turns();
  p.question_aware = c.question_aware();
  p.compress_tool_json = c.tool_messages() == "compress_json";
  p.document_delimiter = c.document_delimiter();
  options.contrastive = c.contrastive();
  if (!c.reorder().empty()) {
    ASSIGN_OR_RETURN(options.reorder, compressor::ParseReorder(c.reorder()));
  }
  options.dynamic_ratio = c.dynamic_ratio();
  if (c.segment_tokens() > 0) options.segment_tokens = static_cast<int>(c.segment_tokens());
  options.force_tokens.assign(c.force_tokens().begin(), c.force_tokens().end());
  options.keep_digits = c.keep_digits();
  if (c.has_context_budget_k()) options.context_budget_k = c.context_budget_k();
  options.sentence_filter = c.sentence_filter();
  options.exact_past = c.exact_past();
  if (!c.target_tokenizer().empty()) {
    options.target_tokenizer = c.target_tokenizer();
  } else {
    options.target_tokenizer = std::string(compressor::TargetTokenizer::EncodingForModel(model));
  }
  return p;
}

v1::CompressionReport ToReport(const compressor::ChatReport& r, double wall_ms) {
  v1::CompressionReport report;
  report.set_applied(r.applied);
  report.set_reason(r.reason);
  report.set_original_tokens(static_cast<uint32_t>(r.original_tokens));
  report.set_compressed_tokens(static_cast<uint32_t>(r.compressed_tokens));
  report.set_rate(r.rate);
  report.set_compress_ms(wall_ms);
  report.set_cache_hit(r.cache_hit);
  return report;
}

}  // namespace

struct CompressorStep::State {
  // Constant after construction.
  std::shared_ptr<compressor::Compressor> compressor;
  size_t capacity = 256;

  std::mutex mu;
  std::condition_variable work_ready;      // workers wait here
  std::condition_variable watchdog_wake;   // the watchdog waits here
  std::deque<std::shared_ptr<Job>> queue;  // guarded by mu
  std::multimap<Clock::time_point, std::weak_ptr<Job>> deadlines;  // guarded by mu
  bool stopping = false;                   // guarded by mu
  std::vector<std::thread> workers;
  std::thread watchdog;

  void Work() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock lock(mu);
        work_ready.wait(lock, [&] { return stopping || !queue.empty(); });
        if (stopping) return;
        job = std::move(queue.front());
        queue.pop_front();
      }
      if (job->answered) continue;  // timed out while queued
      job->Answer(Run(*job));
    }
  }

  // The compressor reports every failure as a status: nothing here throws.
  absl::StatusOr<Result> Run(Job& job) {
    absl::StatusOr<compressor::ChatReport> report;
    std::optional<Json>& prompt = job.prompt;
    if (job.operation == Operation::kCompletions) {
      if (!prompt.has_value()) return InvalidRequest("prompt is required", "prompt");
      report = compressor::CompressCompletionPrompt(*compressor, *prompt, job.policy);
    } else {
      if (!prompt.has_value()) prompt.emplace();  // no messages: CompressChat says so
      report = compressor::CompressChat(*compressor, *prompt, job.policy);
    }
    if (!report.ok()) return report.status();
    const double wall_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - job.enqueued).count();
    return Result{std::move(prompt), ToReport(*report, wall_ms)};
  }

  void Watch() {
    std::unique_lock lock(mu);
    while (!stopping) {
      if (deadlines.empty()) {
        watchdog_wake.wait(lock);
        continue;
      }
      auto first = deadlines.begin();
      if (Clock::now() < first->first) {
        watchdog_wake.wait_until(lock, first->first);
        continue;
      }
      std::shared_ptr<Job> job = first->second.lock();
      deadlines.erase(first);
      if (!job) continue;
      lock.unlock();
      job->Answer(absl::DeadlineExceededError("compression took longer than the route's timeout"));
      lock.lock();
    }
  }
};

absl::StatusOr<std::unique_ptr<CompressorStep>> CompressorStep::Create(
    std::shared_ptr<compressor::Compressor> compressor, const v1::CompressorSettings& settings) {
  if (!compressor) return absl::InvalidArgumentError("CompressorStep needs a compressor");
  auto state = std::make_unique<State>();
  state->compressor = std::move(compressor);
  state->capacity = settings.queue_capacity() > 0 ? settings.queue_capacity() : 256;
  const uint32_t workers = settings.workers() > 0 ? settings.workers() : 2;
  for (uint32_t i = 0; i < workers; ++i) {
    state->workers.emplace_back([s = state.get()] { s->Work(); });
  }
  state->watchdog = std::thread([s = state.get()] { s->Watch(); });
  return std::unique_ptr<CompressorStep>(new CompressorStep(std::move(state)));
}

CompressorStep::CompressorStep(std::unique_ptr<State> state) : state_(std::move(state)) {}

CompressorStep::~CompressorStep() {
  std::deque<std::shared_ptr<Job>> pending;
  {
    std::lock_guard lock(state_->mu);
    state_->stopping = true;
    pending.swap(state_->queue);
  }
  state_->work_ready.notify_all();
  state_->watchdog_wake.notify_all();
  for (std::thread& t : state_->workers) t.join();
  state_->watchdog.join();
  for (auto& job : pending) job->Answer(absl::CancelledError("terse is shutting down"));
}

void CompressorStep::Compress(const v1::Route& route, const CallInfo& info, Input input,
                              Done done) {
  absl::StatusOr<Override> requested = ReadOverride(info, std::move(input.overrides));
  if (!requested.ok()) return std::move(done)(requested.status());
  const Override o = route.allow_overrides() ? *requested : Override{};
  const bool enabled = o.enabled.value_or(route.compression().enabled());
  const bool compress_op = info.operation == Operation::kCompress;
  if ((!enabled && !compress_op) || info.operation == Operation::kEmbeddings) {
    Result result{std::move(input.prompt), {}};
    result.report.set_applied(false);
    result.report.set_reason(info.operation == Operation::kEmbeddings
                                 ? "embeddings are not compressed"
                                 : (o.enabled ? "compression turned off by the request"
                                              : "compression is off for this route"));
    return std::move(done)(std::move(result));
  }
  absl::StatusOr<compressor::ChatPolicy> policy = PolicyFor(route, o, input.model);
  if (!policy.ok()) return std::move(done)(policy.status());

  auto job = std::make_shared<Job>();
  job->operation = info.operation;
  job->policy = *std::move(policy);
  job->prompt = std::move(input.prompt);
  job->enqueued = Clock::now();
  const uint32_t timeout_ms =
      route.compression().timeout_ms() > 0 ? route.compression().timeout_ms() : 2000;
  job->deadline = job->enqueued + std::chrono::milliseconds(timeout_ms);
  job->done = std::move(done);
  absl::Status refused;
  {
    std::lock_guard lock(state_->mu);
    if (state_->stopping) {
      refused = absl::CancelledError("terse is shutting down");
    } else if (state_->queue.size() >= state_->capacity) {
      refused = Overloaded("The compression queue is full; try again shortly.");
    } else {
      state_->queue.push_back(job);
      state_->deadlines.emplace(job->deadline, job);
    }
  }
  if (!refused.ok()) return job->Answer(std::move(refused));  // outside the lock: it may re-enter
  state_->work_ready.notify_one();
  state_->watchdog_wake.notify_one();
}

}  // namespace terse::proxy
