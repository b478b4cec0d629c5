// hiredis connections in a pool, replies turned into RedisValue, errors into statuses.
#include "tenancy/redis_client.h"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <poll.h>

#include <charconv>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace terse::tenancy {
namespace {

bool ParseInt(std::string_view text, int& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Error replies that say "not now" rather than "wrong".
bool IsTransient(std::string_view error) {
  for (std::string_view prefix :
       {"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "OOM"}) {
    if (error.starts_with(prefix)) return true;
  }
  return false;
}

RedisValue Convert(const redisReply& reply) {
  RedisValue value;
  switch (reply.type) {
    case REDIS_REPLY_INTEGER:
      value.type = RedisValue::Type::kInteger;
      value.integer = reply.integer;
      break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      value.type = RedisValue::Type::kString;
      value.text.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_ARRAY:
      value.type = RedisValue::Type::kArray;
      for (size_t i = 0; i < reply.elements; ++i) {
        value.elements.push_back(Convert(*reply.element[i]));
      }
      break;
    default:
      break;  // nil
  }
  return value;
}

// Whether an idle connection is still open: a server that restarted or timed it out has closed
// it, which shows as readable (or hung up) without a round trip. Redis sends nothing unasked.
bool StillOpen(const redisContext& c) {
  pollfd p{c.fd, POLLIN | POLLRDHUP, 0};
  return poll(&p, 1, 0) == 0;
}

}  // namespace

RedisScript::RedisScript(std::string text) : source(std::move(text)) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(source.data()), source.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char byte : digest) {
    sha1.push_back(kHex[byte >> 4]);
    sha1.push_back(kHex[byte & 15]);
  }
}

absl::StatusOr<RedisEndpoint> ParseRedisUrl(std::string_view url) {
  if (url.starts_with("rediss://")) {
    return absl::UnimplementedError("rediss:// (TLS) is not available in this build");
  }
  if (!url.starts_with("redis://")) return absl::InvalidArgumentError("expected a redis:// URL");
  url.remove_prefix(8);
  RedisEndpoint endpoint;
  if (size_t at = url.rfind('@'); at != std::string_view::npos) {
    std::string_view auth = url.substr(0, at);
    url.remove_prefix(at + 1);
    if (size_t colon = auth.find(':'); colon != std::string_view::npos) {
      endpoint.user = std::string(auth.substr(0, colon));
      endpoint.password = std::string(auth.substr(colon + 1));
    } else {
      endpoint.password = std::string(auth);
    }
  }
  std::string_view host_port = url;
  if (size_t slash = url.find('/'); slash != std::string_view::npos) {
    host_port = url.substr(0, slash);
    std::string_view db = url.substr(slash + 1);
    if (!db.empty() && !ParseInt(db, endpoint.db)) {
      return absl::InvalidArgumentError("redis URL: bad database number");
    }
  }
  if (size_t colon = host_port.rfind(':'); colon != std::string_view::npos) {
    if (!ParseInt(host_port.substr(colon + 1), endpoint.port)) {
      return absl::InvalidArgumentError("redis URL: bad port");
    }
    host_port = host_port.substr(0, colon);
  }
  endpoint.host = std::string(host_port);
  if (endpoint.host.empty()) return absl::InvalidArgumentError("redis URL: no host");
  return endpoint;
}

void RedisClient::ContextFree::operator()(redisContext* c) const { redisFree(c); }

RedisClient::RedisClient(Options options) : options_(std::move(options)) {}

RedisClient::~RedisClient() = default;

absl::StatusOr<RedisClient::Context> RedisClient::Connect() {
  const RedisEndpoint& e = options_.endpoint;
  Context c(redisConnectWithTimeout(e.host.c_str(), e.port, absl::ToTimeval(options_.timeout)));
  if (c == nullptr) return absl::UnavailableError("redis: cannot allocate a connection");
  if (c->err != 0) {
    return absl::UnavailableError(absl::StrCat("redis: ", e.host, ":", e.port, ": ", c->errstr));
  }
  redisSetTimeout(c.get(), absl::ToTimeval(options_.timeout));
  std::vector<std::vector<std::string>> setup;
  if (!e.password.empty()) {
    setup.push_back(e.user.empty() ? std::vector<std::string>{"AUTH", e.password}
                                   : std::vector<std::string>{"AUTH", e.user, e.password});
  }
  if (e.db != 0) setup.push_back({"SELECT", absl::StrCat(e.db)});
  for (const std::vector<std::string>& argv : setup) {
    std::vector<const char*> args;
    std::vector<size_t> lens;
    for (const std::string& a : argv) {
      args.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(c.get(), static_cast<int>(args.size()), args.data(), lens.data()));
    if (reply == nullptr) return absl::UnavailableError(absl::StrCat("redis: ", c->errstr));
    const bool failed = reply->type == REDIS_REPLY_ERROR;
    const std::string error = failed ? std::string(reply->str, reply->len) : "";
    freeReplyObject(reply);
    // The password never goes into a message.
    if (failed) return absl::PermissionDeniedError("redis: " + argv[0] + " refused: " + error);
  }
  return c;
}

absl::StatusOr<RedisClient::Context> RedisClient::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &RedisClient::CanOpen));
    while (!idle_.empty()) {
      Context c = std::move(idle_.back());
      idle_.pop_back();
      if (StillOpen(*c)) return c;
      --open_;
    }
    if (absl::Now() < down_until_) return absl::UnavailableError("redis: unreachable");
    ++open_;
  }
  absl::StatusOr<Context> c = Connect();
  if (!c.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
    if (c.status().code() == absl::StatusCode::kUnavailable) {
      down_until_ = absl::Now() + options_.retry_interval;
    }
  }
  return c;
}

void RedisClient::Release(Context context) {
  absl::MutexLock lock(&mu_);
  if (context->err != 0) {
    --open_;
    return;  // closed as it goes
  }
  idle_.push_back(std::move(context));
}

absl::StatusOr<RedisValue> RedisClient::Command(const std::vector<std::string>& argv) {
  absl::StatusOr<Context> c = Acquire();
  if (!c.ok()) return c.status();
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const std::string& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* reply = static_cast<redisReply*>(
      redisCommandArgv(c->get(), static_cast<int>(args.size()), args.data(), lens.data()));
  if (reply == nullptr) {
    absl::Status status = absl::UnavailableError(absl::StrCat("redis: ", (*c)->errstr));
    Release(std::move(*c));
    return status;
  }
  absl::StatusOr<RedisValue> result;
  if (reply->type == REDIS_REPLY_ERROR) {
    std::string error(reply->str, reply->len);
    result = IsTransient(error) ? absl::UnavailableError("redis: " + error)
                                : absl::InternalError("redis: " + error);
  } else {
    result = Convert(*reply);
  }
  freeReplyObject(reply);
  Release(std::move(*c));
  return result;
}

absl::StatusOr<RedisValue> RedisClient::Eval(const RedisScript& script,
                                             const std::vector<std::string>& keys,
                                             const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"EVALSHA", script.sha1, absl::StrCat(keys.size())};
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<RedisValue> reply = Command(argv);
  if (reply.ok() || !absl::StrContains(reply.status().message(), "NOSCRIPT")) return reply;
  // Not cached by this server (a restart, a failover): EVAL sends the source and caches it.
  argv[0] = "EVAL";
  argv[1] = script.source;
  return Command(argv);
}

}  // namespace terse::tenancy
