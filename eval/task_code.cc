// code content: modules whose prose and code are templates; and every family's instructions.
#include <map>
#include <vector>

#include "eval/task_words.h"

namespace terse::eval::internal {

// ---------------------------------------------------------------------------------------------
// code: modules whose code is a <% %> template; every literal digit is written <%=N%> so it is
// recorded.

const std::vector<CodeModule>& CodeModules() {
  using K = AnswerKind;
  static const auto* modules = new std::vector<CodeModule>{
      {"python",
       {"svc={#uw:service}", "port={#num:8000:9999}", "timeout={#num:15:120}",
        "workers={#num:4:64}", "max_body={#num:65536:1048576}",
        "workers_env={!{svc}}_{WORKERS|THREADS|POOL_SIZE}", "start_fn={#uw:py_serve_fn}",
        "handler={#uw:py_handler}", "host={{=0.0.0.0}|{=127.0.0.1}|localhost}"},
       {"The {svc} service exposes a small HTTP API used by the nightly jobs. The module below "
        "starts a threaded server; the port and host can be overridden on the command line, and "
        "the defaults are kept at the top of the file so operators can find them quickly.",
        "This file is the entry point of the {svc} service. It reads its worker count from the "
        "environment, rejects request bodies above a fixed size, and answers the health check "
        "that the load balancer polls."},
       R"(import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_PORT = <%port%>
DEFAULT_HOST = "<%host%>"
REQUEST_TIMEOUT_S = <%timeout%>
MAX_BODY_BYTES = <%max_body%>
WORKERS = int(os.environ.get("<%workers_env%>", "<%workers%>"))


class <%handler%>(BaseHTTPRequestHandler):
    timeout = REQUEST_TIMEOUT_S

    def do_GET(self):
        if self.path == "/healthz":
            self.send_response(<%=200%>)
            self.end_headers()
            self.wfile.write(b"ok")
            return
        self.send_error(<%=404%>)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", <%=0%>))
        if length > MAX_BODY_BYTES:
            self.send_error(<%=413%>, "body too large")
            return
        self.server.queue.put(self.rfile.read(length))
        self.send_response(<%=202%>)
        self.end_headers()


def <%start_fn%>(port=DEFAULT_PORT, host=DEFAULT_HOST):
    server = ThreadingHTTPServer((host, port), <%handler%>)
    server.daemon_threads = True
    print(f"<%svc%> listening on {host}:{port} with {WORKERS} workers")
    server.serve_forever())",
       {{"port",
         K::kNumber,
         {"Which port does the {svc} service listen on when none is given?",
          "If nobody overrides it, what port number does the {svc} API bind to?"}},
        {"start_fn",
         K::kIdentifier,
         {"What is the name of the function that launches the {svc} HTTP server?",
          "Which function should I call to bring up the {svc} API?"}},
        {"workers_env",
         K::kIdentifier,
         {"Which environment variable sets how many workers the {svc} service runs?"}},
        {"max_body",
         K::kNumber,
         {"What is the largest request body, in bytes, that the {svc} API will take?"}}}},

      {"python",
       {"svc={#uw:service}", "retries_key={#uw:retry_key}", "retries={#num:3:9}",
        "backoff_key={#uw:backoff_key}", "backoff={#dec:1:3:1}", "timeout_key={#uw:timeout_key}",
        "timeout_ms={#num:250:9500}", "fetch_fn={#uw:py_fetch_fn}", "cls={#uw:py_client_cls}"},
       {"Calls from the {svc} workers to other services go through the small client below. "
        "Transient network errors are retried with exponential backoff, and every call has a "
        "timeout so that a slow upstream cannot block a worker forever.",
        "Upstream requests made by the {svc} workers share one client. It owns the retry policy, "
        "so "
        "individual call sites never loop on failures themselves; the limits live in a single "
        "dictionary that tests can replace."},
       R"(import time
import urllib.request

CONFIG = {
    "<%retries_key%>": <%retries%>,
    "<%backoff_key%>": <%backoff%>,
    "<%timeout_key%>": <%timeout_ms%>,
}


class <%cls%>:
    """Thin client for upstream APIs that retries transient failures."""

    def __init__(self, base_url, config=CONFIG):
        self.base_url = base_url.rstrip("/")
        self.config = config

    def <%fetch_fn%>(self, path):
        attempts = self.config["<%retries_key%>"]
        timeout_s = self.config["<%timeout_key%>"] / <%=1000%>
        for attempt in range(attempts):
            try:
                with urllib.request.urlopen(self.base_url + path, timeout=timeout_s) as resp:
                    return resp.read()
            except OSError:
                if attempt == attempts - <%=1%>:
                    raise
                time.sleep(self.config["<%backoff_key%>"] ** attempt))",
       {{"retries_key",
         K::kIdentifier,
         {"Which configuration key caps how many times a failed request is repeated?",
          "What is the setting that limits the number of attempts per call?"}},
        {"fetch_fn",
         K::kIdentifier,
         {"Which method should callers use for a request that is automatically repeated on "
          "failure?"}},
        {"timeout_ms",
         K::kNumber,
         {"How many milliseconds does the client wait for the upstream before giving up?"}},
        {"cls", K::kIdentifier, {"What is the name of the class that wraps calls to upstreams?"}}}},

      {"cpp",
       {"ns={#uw:service}", "cls={#uw:cpp_limiter}", "burst={#num:100:512}",
        "refill={#num:100:5000}", "acquire={#uw:cpp_acquire}", "refill_fn={#uw:cpp_refill}"},
       {"Outbound calls from the {ns} module are throttled with a token bucket, so a burst of "
        "retries cannot overwhelm the upstream. Each request takes one token; tokens trickle back "
        "at a fixed rate up to the bucket's capacity.",
        "The limiter below guards the {ns} module's connection to the payment provider, which "
        "bans clients that exceed its quota. It is header-only and safe to share between "
        "threads."},
       R"(#include <algorithm>
#include <chrono>
#include <mutex>

namespace <%ns%> {

// Requests allowed in a burst before callers are throttled.
inline constexpr int kDefaultBurst = <%burst%>;
// Tokens added back per second.
inline constexpr double kRefillPerSecond = <%refill%>;

class <%cls%> {
 public:
  explicit <%cls%>(int burst = kDefaultBurst) : capacity_(burst), tokens_(burst) {}

  // True when the caller may proceed; consumes one token.
  bool <%acquire%>() {
    std::lock_guard<std::mutex> lock(mu_);
    <%refill_fn%>();
    if (tokens_ < <%=1.0%>) return false;
    tokens_ -= <%=1.0%>;
    return true;
  }

 private:
  void <%refill_fn%>() {
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min<double>(capacity_, tokens_ + elapsed * kRefillPerSecond);
    last_ = now;
  }

  std::mutex mu_;
  const int capacity_;
  double tokens_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

}  // namespace <%ns%>)",
       {{"burst",
         K::kNumber,
         {"By default, how many requests can arrive at once before the limiter starts refusing "
          "them?"}},
        {"acquire",
         K::kIdentifier,
         {"Which member function do callers invoke to ask the limiter for permission?"}},
        {"refill", K::kNumber, {"How many tokens per second flow back into the bucket?"}},
        {"cls", K::kIdentifier, {"What is the throttling class in the {ns} code called?"}}}},

      {"yaml",
       {"svc={#uw:service}", "pool_key={#uw:pool_key}", "pool={#num:10:200}",
        "ttl_key={#uw:ttl_key}", "ttl={#num:120:86400}", "metrics_port={#num:9000:9999}",
        "stmt={#num:500:30000}", "flag={#uw:flag_key}", "replicas={#num:2:9}",
        "level={info|warn|debug}", "region={eu-west|us-east|ap-south}"},
       {"Deployment settings for the {svc} service live in a single YAML file next to the code. "
        "The platform team overrides some values per environment, but the connection limits and "
        "cache lifetimes below apply everywhere unless stated otherwise.",
        "Configuration for {svc} is shown below. Changes go through review like code, and the "
        "service reloads the file on a signal instead of restarting."},
       R"(service:
  name: <%svc%>
  region: <%region%>
  replicas: <%replicas%>
  log_level: <%level%>
database:
  host: db.<%svc%>.internal
  <%pool_key%>: <%pool%>
  statement_timeout_ms: <%stmt%>
cache:
  backend: redis
  <%ttl_key%>: <%ttl%>
metrics:
  enabled: true
  port: <%metrics_port%>
features:
  <%flag%>: <%true|false%>)",
       {{"pool_key",
         K::kIdentifier,
         {"Under which key is the size of the database connection pool set?"}},
        {"ttl", K::kNumber, {"For how many seconds does the cache keep an entry?"}},
        {"metrics_port", K::kNumber, {"On which port are the {svc} metrics exposed?"}},
        {"stmt", K::kNumber, {"After how many milliseconds is a database statement cut off?"}}}},

      {"bash",
       {"svc={#uw:service}", "health_fn={#uw:bash_health_fn}", "tries={#num:10:60}",
        "interval={#num:2:15}", "deploy_timeout={#num:120:1800}",
        "rollback_fn={#uw:bash_rollback_fn}", "env_default={staging|canary|preprod}"},
       {"Releases of the {svc} service are pushed by the script below, which the pipeline runs "
        "after the "
        "image is built. It waits for the rollout, polls the health endpoint a fixed number of "
        "times, and rolls back automatically if the service never reports healthy.",
        "Deploying the {svc} service by hand is discouraged; the script below is what the release "
        "job runs. "
        "Read it before changing the health endpoint, because a rollback is triggered whenever "
        "the endpoint stops answering."},
       R"(#!/usr/bin/env bash
set -euo pipefail

DEPLOY_ENV="${DEPLOY_ENV:-<%env_default%>}"
HEALTH_RETRIES=<%tries%>
HEALTH_INTERVAL_S=<%interval%>
DEPLOY_TIMEOUT_S=<%deploy_timeout%>

<%health_fn%>() {
  local url="https://<%svc%>.${DEPLOY_ENV}.internal/healthz"
  for ((i = <%=0%>; i < HEALTH_RETRIES; i++)); do
    if curl --fail --silent --max-time <%=5%> "$url" > /dev/null; then
      return <%=0%>
    fi
    sleep "$HEALTH_INTERVAL_S"
  done
  return <%=1%>
}

<%rollback_fn%>() {
  echo "health check failed, rolling back <%svc%> in ${DEPLOY_ENV}" >&<%=2%>
  kubectl rollout undo "deployment/<%svc%>" --namespace "$DEPLOY_ENV"
}

timeout "$DEPLOY_TIMEOUT_S" kubectl rollout status "deployment/<%svc%>" --namespace "$DEPLOY_ENV"
<%health_fn%> || { <%rollback_fn%>; exit <%=1%>; })",
       {{"health_fn",
         K::kIdentifier,
         {"What is the shell function that waits until the {svc} service reports healthy?"}},
        {"rollback_fn", K::kIdentifier, {"Which function undoes a bad rollout of {svc}?"}},
        {"deploy_timeout",
         K::kNumber,
         {"How many seconds does the script allow for the rollout to finish?"}}}},

      {"python",
       {"parse_fn={#uw:py_parse_fn}", "verify_fn={#uw:py_verify_fn}",
        "max_bytes={#num:65536:4194304}", "schema={#num:2:9}", "field={#uw:manifest_field}"},
       {"Packages are described by a JSON manifest. The loader below enforces a size limit before "
        "parsing, checks the schema version, and refuses manifests with missing fields, so that "
        "malformed uploads fail early with a clear message.",
        "Every upload is accompanied by a manifest. This module is the only place that reads "
        "manifests; other code receives the parsed dictionary and can assume it is complete."},
       R"(import json
import os

MAX_MANIFEST_BYTES = <%max_bytes%>
SUPPORTED_SCHEMA = <%schema%>
REQUIRED_FIELDS = ("name", "version", "<%field%>", "files")


class ManifestError(ValueError):
    pass


def <%verify_fn%>(path, expected_size):
    return os.path.getsize(path) == expected_size


def <%parse_fn%>(path):
    with open(path, "rb") as f:
        raw = f.read(MAX_MANIFEST_BYTES + <%=1%>)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError("manifest too large")
    data = json.loads(raw)
    if data.get("schema") != SUPPORTED_SCHEMA:
        raise ManifestError(f"unsupported schema {data.get('schema')}")
    missing = [k for k in REQUIRED_FIELDS if k not in data]
    if missing:
        raise ManifestError(f"missing fields: {missing}")
    return data)",
       {{"parse_fn",
         K::kIdentifier,
         {"Which function reads a manifest from disk and validates it?"}},
        {"max_bytes",
         K::kNumber,
         {"How large, in bytes, may a manifest be before it is rejected?"}},
        {"field",
         K::kIdentifier,
         {"Apart from the name, version and file list, which entry must every manifest "
          "contain?"}},
        {"verify_fn",
         K::kIdentifier,
         {"Which helper confirms that a file on disk has the size the manifest expects?"}}}},

      {"cpp",
       {"ns={#uw:service}", "cls={#uw:cpp_cache}", "max_entries={#num:256:65536}",
        "evict_fn={#uw:cpp_evict}", "lookup_fn={#uw:cpp_lookup}"},
       {"Rendered pages are cached in memory by the {ns} frontend. The cache is a plain "
        "least-recently-used list with a hash index; it is not thread-safe, so each worker thread "
        "owns its own instance.",
        "To keep tail latency low, the {ns} frontend keeps recently rendered pages in the cache "
        "below. Entries are evicted strictly by recency; there is no expiry by age."},
       R"(#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

namespace <%ns%> {

inline constexpr size_t kMaxEntries = <%max_entries%>;

// Least-recently-used cache of rendered pages, keyed by URL.
class <%cls%> {
 public:
  std::optional<std::string> <%lookup_fn%>(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    order_.splice(order_.begin(), order_, it->second);
    return it->second->second;
  }

  void Put(std::string key, std::string value) {
    if (auto it = index_.find(key); it != index_.end()) order_.erase(it->second);
    order_.emplace_front(key, std::move(value));
    index_[std::move(key)] = order_.begin();
    while (order_.size() > kMaxEntries) <%evict_fn%>();
  }

 private:
  void <%evict_fn%>() {
    index_.erase(order_.back().first);
    order_.pop_back();
  }

  std::list<std::pair<std::string, std::string>> order_;
  std::unordered_map<std::string, decltype(order_)::iterator> index_;
};

}  // namespace <%ns%>)",
       {{"max_entries",
         K::kNumber,
         {"How many pages can the cache hold before it starts dropping old ones?"}},
        {"evict_fn",
         K::kIdentifier,
         {"Which private method throws away the entry that was used longest ago?"}},
        {"lookup_fn", K::kIdentifier, {"What is the method for reading a cached page called?"}}}},

      {"yaml",
       {"test_job={#uw:ci_test_job}", "lint_job={#uw:ci_lint_job}", "timeout={#num:25:180}",
        "cache_key={#uw:ci_cache_key}", "parallel={#num:2:8}", "retry={#num:1:2}",
        "image={#uw:ci_image}"},
       {"Every merge request runs the pipeline below. Linting runs first and is cheap; the test "
        "job only starts once it passes, is split across several parallel runners, and reuses a "
        "build cache between pipelines.",
        "The CI definition is short on purpose. Most of the logic lives in the Makefile, so the "
        "same commands run locally and on the shared runners."},
       R"(stages:
  - lint
  - test

variables:
  BUILD_TYPE: Release

<%lint_job%>:
  stage: lint
  image: <%image%>
  script:
    - make lint

<%test_job%>:
  stage: test
  image: <%image%>
  needs: [<%lint_job%>]
  timeout: <%timeout%> minutes
  parallel: <%parallel%>
  retry: <%retry%>
  cache:
    key: <%cache_key%>
    paths:
      - build/
  script:
    - cmake -S . -B build -DCMAKE_BUILD_TYPE=$BUILD_TYPE
    - cmake --build build
    - ctest --test-dir build)",
       {{"test_job", K::kIdentifier, {"Which CI job runs the test suite?"}},
        {"lint_job",
         K::kIdentifier,
         {"What is the name of the job that has to pass before the tests start?"}},
        {"cache_key",
         K::kIdentifier,
         {"Under which key does the test job store its build cache?"}}}},
  };
  return *modules;
}

// ---------------------------------------------------------------------------------------------
// Instructions.

const Strings& Instructions(Family family) {
  static const auto* by_family = new std::map<Family, Strings>{
      {Family::kMultiDocQa,
       {"Answer the question using only the documents below. Reply with the answer alone.",
        "Read the search results and answer the question. Give only the answer, exactly as it "
        "appears in the documents.",
        "Some of the documents below are relevant and some are not. Use them to answer the "
        "question in as few words as possible.",
        "You are a careful research assistant. Using the numbered documents, answer the question "
        "with a short phrase copied from the text."}},
      {Family::kFewShotMath,
       {"Solve the math word problem. Follow the format of the examples and finish with "
        "\"The answer is\" followed by the number.",
        "Work through the problem step by step as in the examples, then state the final answer "
        "on its own line.",
        "You are a patient maths tutor. Reason step by step like the worked examples and end "
        "with \"The answer is\" and the result."}},
      {Family::kChat,
       {"You are a helpful assistant. Use the conversation so far to answer the user's last "
        "message briefly.",
        "Continue the conversation as the assistant. Keep answers short and rely on what was "
        "said earlier.",
        "You are a friendly support agent. Answer the latest question using details from the "
        "chat history."}},
      {Family::kRag,
       {"Use the reference articles below to answer. Give only the answer, copied exactly from "
        "the text.",
        "Answer the question from the retrieved passages. If several passages mention the same "
        "subject, use the one that states the fact. Reply briefly.",
        "You are a librarian answering a reader's question from the documents provided. Quote "
        "the answer exactly."}},
      {Family::kToolJson,
       {"You are an agent with tool access. The tool results are below. Answer the user's "
        "question from them, quoting the value exactly.",
        "Tool calls have already been made and their JSON results follow. Use them to answer; "
        "reply with the value only.",
        "Answer using the data returned by the tools. Do not invent values; copy the relevant "
        "field as it appears."}},
      {Family::kCode,
       {"You are a senior engineer. Answer the question using the code and notes below; reply "
        "with the exact identifier or value.",
        "Read the repository excerpts and answer precisely, quoting names and numbers as they "
        "appear in the code.",
        "You are reviewing this codebase. Answer the question with the identifier or literal "
        "from the code, nothing else."}},
      {Family::kMeeting,
       {"Below is a meeting transcript. Answer the question using only what was said. Reply "
        "with the answer alone.",
        "Read the transcript and answer the question about what the team decided. Keep the "
        "answer short.",
        "You are a meeting assistant. Using the transcript, answer the question exactly as "
        "stated by the participants."}},
  };
  return by_family->at(family);
}

}  // namespace terse::eval::internal
