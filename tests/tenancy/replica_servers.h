// Redis and PostgreSQL for the replica store's tests: one pair shared by the whole binary, started
// on first use and emptied before each test that uses it; tests that stop or restart a server
// start a pair of their own.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tenancy/redis_postgres_store.h"
#include "tests/support/servers.h"

namespace terse::tenancy::testing {

struct ReplicaServers {
  std::unique_ptr<terse::testing::RedisServer> redis;
  std::unique_ptr<terse::testing::PostgresServer> postgres;
};

inline absl::StatusOr<ReplicaServers> StartReplicaServers() {
  ReplicaServers servers;
  absl::StatusOr<std::unique_ptr<terse::testing::RedisServer>> redis =
      terse::testing::RedisServer::Start();
  if (!redis.ok()) return redis.status();
  absl::StatusOr<std::unique_ptr<terse::testing::PostgresServer>> postgres =
      terse::testing::PostgresServer::Start();
  if (!postgres.ok()) return postgres.status();
  servers.redis = std::move(*redis);
  servers.postgres = std::move(*postgres);
  return servers;
}

// The shared pair, emptied; null (with a test failure) when the servers cannot start.
inline ReplicaServers* SharedReplicaServers() {
  // Stopped, and their directories removed, when the binary exits.
  static absl::StatusOr<ReplicaServers> servers = StartReplicaServers();
  if (!servers.ok()) {
    ADD_FAILURE() << "cannot start Redis and PostgreSQL: " << servers.status();
    return nullptr;
  }
  ReplicaServers& s = *servers;
  absl::StatusOr<std::string> flushed = s.redis->Command({"FLUSHALL"});
  EXPECT_TRUE(flushed.ok()) << flushed.status();
  absl::StatusOr<std::string> dropped = s.postgres->Sql("DROP TABLE IF EXISTS terse_usage");
  EXPECT_TRUE(dropped.ok()) << dropped.status();
  return &s;
}

// Options for a store on `servers` with its spool at `spool_path`; fast retries for tests, and
// the store's warnings counted in `*warnings` when given.
inline RedisPostgresOptions ReplicaOptions(const ReplicaServers& servers,
                                           const std::string& spool_path,
                                           std::atomic<int>* warnings = nullptr) {
  RedisPostgresOptions options;
  options.redis_url = servers.redis->url();
  options.postgres_url = servers.postgres->dsn();
  options.spool_path = spool_path;
  options.timeout = absl::Seconds(5);
  options.retry_interval = absl::Milliseconds(50);
  options.log = [warnings](std::string_view) {
    if (warnings != nullptr) ++*warnings;
  };
  return options;
}

}  // namespace terse::tenancy::testing
