// A small Redis client over hiredis (kept in the .cc): a pool of blocking connections, each
// command with a timeout, and Lua scripts run by EVALSHA with a fallback to EVAL on NOSCRIPT.
// One Redis server (or a proxy in front of a cluster): hiredis 0.14 follows no MOVED redirects and
// has no TLS.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

struct redisContext;  // <hiredis/hiredis.h> stays in the .cc

namespace terse::tenancy {

// A reply, errors excepted (they are statuses).
struct RedisValue {
  enum class Type { kNil, kInteger, kString, kArray };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string text;  // kString (bulk and status replies)
  std::vector<RedisValue> elements;

  bool nil() const { return type == Type::kNil; }
};

// A Lua script and its SHA-1, computed once.
struct RedisScript {
  explicit RedisScript(std::string source);
  std::string source;
  std::string sha1;  // hex
};

struct RedisEndpoint {
  std::string host;
  int port = 6379;
  int db = 0;
  std::string user;      // ACL user; empty: the default user
  std::string password;  // empty: no AUTH
};

// redis://[[user]:password@]host[:port][/db]. kInvalidArgument otherwise, kUnimplemented for
// rediss:// (no TLS in this build).
absl::StatusOr<RedisEndpoint> ParseRedisUrl(std::string_view url);

// Thread-safe. Errors: kUnavailable when Redis cannot be reached, a reply does not come within the
// timeout (the command may have run), or Redis answers that it cannot serve now (LOADING, BUSY,
// ...); kInternal for any other error reply.
class RedisClient {
 public:
  struct Options {
    RedisEndpoint endpoint;
    absl::Duration timeout = absl::Seconds(2);  // connect, and each reply
    // After a failed connection, calls fail at once for this long instead of connecting again.
    absl::Duration retry_interval = absl::Seconds(1);
    int max_connections = 64;  // callers beyond it wait for a free connection
  };
  explicit RedisClient(Options options);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  absl::StatusOr<RedisValue> Command(const std::vector<std::string>& argv);
  absl::StatusOr<RedisValue> Eval(const RedisScript& script, const std::vector<std::string>& keys,
                                  const std::vector<std::string>& args);

 private:
  struct ContextFree {
    void operator()(redisContext* c) const;
  };
  using Context = std::unique_ptr<redisContext, ContextFree>;

  absl::StatusOr<Context> Acquire();
  void Release(Context context);  // a context that failed is closed instead
  absl::StatusOr<Context> Connect();
  bool CanOpen() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !idle_.empty() || open_ < options_.max_connections;
  }

  const Options options_;
  absl::Mutex mu_;
  std::vector<Context> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // idle and in use
  absl::Time down_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace terse::tenancy
