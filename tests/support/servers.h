// Real Redis and PostgreSQL servers for tests: Debian's binaries, started on 127.0.0.1 at a free
// port with their files (and unix sockets) in a temporary directory that goes with the object.
// Each can be stopped and started again on the same port, to stand for an outage or a restart.
// Under root, PostgreSQL runs as the unprivileged user `nobody` (initdb refuses root). Every wait
// is bounded; a child dies with the test process (PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace terse::testing {

class RedisServer {
 public:
  // A new empty server without persistence: a restart starts it empty again.
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start();
  ~RedisServer();

  // Stops it (SIGTERM, then SIGKILL after a bounded wait).
  absl::Status Stop();
  // Starts it again on the same port, empty.
  absl::Status Restart();
  bool running() const { return pid_ > 0; }

  int port() const { return port_; }
  std::string url() const;  // redis://127.0.0.1:<port>/0
  // Sends one command (RESP over TCP) and returns the reply as text: a status or bulk string,
  // an integer, "(nil)", or the elements of an array joined by '\n'.
  absl::StatusOr<std::string> Command(const std::vector<std::string>& argv) const;

 private:
  RedisServer(std::string dir, int port) : dir_(std::move(dir)), port_(port) {}
  absl::Status Launch();

  const std::string dir_;
  const int port_;
  pid_t pid_ = -1;
};

class PostgresServer {
 public:
  struct Options {
    bool durable = false;  // fsync on; off by default, as tests do not survive power cuts
    int max_connections = 200;
  };
  // initdb in a new directory, then the server; the superuser is `postgres`, trusted on loopback.
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start(Options options);
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start() { return Start(Options{}); }
  ~PostgresServer();

  // Stops it (fast shutdown: clients are disconnected), keeping its data.
  absl::Status Stop();
  // Starts it again on the same port and data.
  absl::Status Resume();
  bool running() const { return pid_ > 0; }

  int port() const { return port_; }
  // A libpq connection string for the `postgres` database.
  std::string dsn() const;
  // Runs SQL through psql; the rows unaligned, fields separated by '|', one per line.
  absl::StatusOr<std::string> Sql(const std::string& sql) const;

 private:
  PostgresServer(std::string dir, int port, std::string bin, Options options)
      : dir_(std::move(dir)), port_(port), bin_(std::move(bin)), options_(options) {}
  absl::Status Launch();

  const std::string dir_;
  const int port_;
  const std::string bin_;  // the directory of initdb, postgres, pg_isready and psql
  const Options options_;
  pid_t pid_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
absl::StatusOr<int> FreeLoopbackPort();

}  // namespace terse::testing
