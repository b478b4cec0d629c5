// Launching, probing and stopping Redis and PostgreSQL for tests, with fork/exec and bounded waits.
#include "tests/support/servers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace terse::testing {
namespace {

constexpr absl::Duration kStartTimeout = absl::Seconds(30);
constexpr absl::Duration kStopTimeout = absl::Seconds(20);
constexpr absl::Duration kPoll = absl::Milliseconds(20);

struct Credentials {
  uid_t uid;
  gid_t gid;
};

// Who runs PostgreSQL: ourselves, or `nobody` when we are root.
absl::StatusOr<std::optional<Credentials>> PostgresUser() {
  if (geteuid() != 0) return std::nullopt;
  const passwd* pw = getpwnam("nobody");
  if (pw == nullptr) return absl::FailedPreconditionError("running as root and no user `nobody`");
  return Credentials{pw->pw_uid, pw->pw_gid};
}

std::string Tail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string all = text.str();
  return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

absl::StatusOr<std::string> MakeDir(const std::string& name) {
  std::string pattern = "/tmp/terse-" + name + "-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", strerror(errno)));
  }
  return pattern;
}

// Forks and executes argv[0] with stdout and stderr to `log` (or a pipe when `out_fd` is given),
// as `user` when set. The child dies with this process.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log,
                            std::optional<Credentials> user, int out_fd = -1) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  if (pid > 0) return pid;
  // The child: only async-signal-safe calls until exec.
  const int in = open("/dev/null", O_RDONLY);
  const int out = out_fd >= 0 ? out_fd : open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (in < 0 || out < 0) _exit(126);
  dup2(in, 0);
  dup2(out, 1);
  dup2(out, 2);
  if (user.has_value()) {
    if (setgroups(0, nullptr) != 0 || setgid(user->gid) != 0 || setuid(user->uid) != 0) _exit(126);
  }
  // After setuid, which clears it.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(126);
  execv(args[0], args.data());
  _exit(127);
}

// Waits for `pid` to exit, at most `timeout`; its exit code, or nullopt if it is still running.
std::optional<int> WaitExit(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return -1;
    if (absl::Now() >= deadline) return std::nullopt;
    absl::SleepFor(kPoll);
  }
}

// Sends `signal`, waits a bounded time, then kills.
void Terminate(pid_t pid, int signal) {
  kill(pid, signal);
  if (WaitExit(pid, kStopTimeout).has_value()) return;
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

struct RunResult {
  int exit_code = -1;
  std::string output;
};

// Runs a command to its end (bounded), collecting stdout and stderr.
absl::StatusOr<RunResult> Run(const std::vector<std::string>& argv, std::optional<Credentials> user,
                              absl::Duration timeout) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe");
  absl::StatusOr<pid_t> pid = Spawn(argv, "", user, fds[1]);
  close(fds[1]);
  if (!pid.ok()) {
    close(fds[0]);
    return pid.status();
  }
  RunResult result;
  const absl::Time deadline = absl::Now() + timeout;
  char buf[4096];
  for (;;) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) break;
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    result.output.append(buf, n);
  }
  close(fds[0]);
  std::optional<int> code = WaitExit(*pid, deadline - absl::Now());
  if (!code.has_value()) {
    kill(*pid, SIGKILL);
    waitpid(*pid, nullptr, 0);
    return absl::DeadlineExceededError(absl::StrCat(argv[0], " did not finish in time"));
  }
  result.exit_code = *code;
  return result;
}

absl::StatusOr<int> ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket");
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("connect: ", strerror(errno)));
  }
  return fd;
}

// Reads one RESP reply from `fd` (strings, integers, errors, arrays of those).
class RespReader {
 public:
  explicit RespReader(int fd) : fd_(fd) {}
  absl::StatusOr<std::string> Reply() {
    std::string line;
    if (!ReadLine(line) || line.empty()) return absl::UnavailableError("redis: connection lost");
    const char type = line[0];
    std::string rest = line.substr(1);
    switch (type) {
      case '+':
      case ':':
        return rest;
      case '-':
        return absl::InternalError("redis: " + rest);
      case '$': {
        const long n = std::stol(rest);
        if (n < 0) return std::string("(nil)");
        std::string data;
        if (!ReadN(static_cast<size_t>(n) + 2, data)) return absl::UnavailableError("redis: short");
        return data.substr(0, n);
      }
      case '*': {
        const long n = std::stol(rest);
        std::vector<std::string> items;
        for (long i = 0; i < n; ++i) {
          absl::StatusOr<std::string> item = Reply();
          if (!item.ok()) return item.status();
          items.push_back(*item);
        }
        return absl::StrJoin(items, "\n");
      }
    }
    return absl::InternalError("redis: unknown reply " + line);
  }

 private:
  bool Fill() {
    char buf[4096];
    const ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) return false;
    data_.append(buf, n);
    return true;
  }
  bool ReadLine(std::string& line) {
    size_t end;
    while ((end = data_.find("\r\n")) == std::string::npos) {
      if (!Fill()) return false;
    }
    line = data_.substr(0, end);
    data_.erase(0, end + 2);
    return true;
  }
  bool ReadN(size_t n, std::string& out) {
    while (data_.size() < n) {
      if (!Fill()) return false;
    }
    out = data_.substr(0, n);
    data_.erase(0, n);
    return true;
  }

  int fd_;
  std::string data_;
};

absl::StatusOr<std::string> RespCommand(int port, const std::vector<std::string>& argv) {
  absl::StatusOr<int> fd = ConnectLoopback(port);
  if (!fd.ok()) return fd.status();
  std::string request = absl::StrCat("*", argv.size(), "\r\n");
  for (const std::string& a : argv) absl::StrAppend(&request, "$", a.size(), "\r\n", a, "\r\n");
  absl::StatusOr<std::string> reply = absl::UnavailableError("redis: write failed");
  if (write(*fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    reply = RespReader(*fd).Reply();
  }
  close(*fd);
  return reply;
}

std::string PostgresBinDir() {
  for (int version = 17; version >= 12; --version) {
    const std::string dir = absl::StrCat("/usr/lib/postgresql/", version, "/bin");
    if (std::filesystem::exists(dir + "/initdb")) return dir;
  }
  return "";
}

}  // namespace

absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("bind: ", strerror(errno)));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// ---- Redis ----

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start() {
  if (!std::filesystem::exists("/usr/bin/redis-server")) {
    return absl::FailedPreconditionError(
        "no /usr/bin/redis-server (tools/bootstrap.sh installs it)");
  }
  absl::StatusOr<std::string> dir = MakeDir("redis");
  if (!dir.ok()) return dir.status();
  absl::StatusOr<int> port = FreeLoopbackPort();
  if (!port.ok()) return port.status();
  std::unique_ptr<RedisServer> server(new RedisServer(*dir, *port));
  if (absl::Status s = server->Launch(); !s.ok()) return s;
  return server;
}

RedisServer::~RedisServer() {
  Stop().IgnoreError();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

absl::Status RedisServer::Launch() {
  const std::string log = dir_ + "/redis.log";
  absl::StatusOr<pid_t> pid =
      Spawn({"/usr/bin/redis-server", "--port", absl::StrCat(port_), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", dir_, "--unixsocket",
             dir_ + "/redis.sock", "--unixsocketperm", "700", "--daemonize", "no", "--logfile", ""},
            log, std::nullopt);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (absl::Now() < deadline) {
    if (WaitExit(pid_, absl::ZeroDuration()).has_value()) {
      pid_ = -1;
      return absl::InternalError("redis-server exited:\n" + Tail(log));
    }
    absl::StatusOr<std::string> pong = RespCommand(port_, {"PING"});
    if (pong.ok() && *pong == "PONG") return absl::OkStatus();
    absl::SleepFor(kPoll);
  }
  Stop().IgnoreError();
  return absl::DeadlineExceededError("redis-server did not answer in time:\n" + Tail(log));
}

absl::Status RedisServer::Stop() {
  if (pid_ > 0) Terminate(pid_, SIGTERM);
  pid_ = -1;
  return absl::OkStatus();
}

absl::Status RedisServer::Restart() {
  if (absl::Status s = Stop(); !s.ok()) return s;
  return Launch();
}

std::string RedisServer::url() const { return absl::StrCat("redis://127.0.0.1:", port_, "/0"); }

absl::StatusOr<std::string> RedisServer::Command(const std::vector<std::string>& argv) const {
  return RespCommand(port_, argv);
}

// ---- PostgreSQL ----

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start(Options options) {
  const std::string bin = PostgresBinDir();
  if (bin.empty()) {
    return absl::FailedPreconditionError(
        "no /usr/lib/postgresql/*/bin/initdb (tools/bootstrap.sh installs postgresql-15)");
  }
  absl::StatusOr<std::optional<Credentials>> user = PostgresUser();
  if (!user.ok()) return user.status();
  absl::StatusOr<std::string> dir = MakeDir("postgres");
  if (!dir.ok()) return dir.status();
  if (user->has_value() && chown(dir->c_str(), (*user)->uid, (*user)->gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", *dir, ": ", strerror(errno)));
  }
  absl::StatusOr<RunResult> init = Run({bin + "/initdb", "-D", *dir + "/data", "-U", "postgres",
                                        "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"},
                                       *user, absl::Seconds(120));
  if (!init.ok()) return init.status();
  if (init->exit_code != 0) return absl::InternalError("initdb failed:\n" + init->output);
  absl::StatusOr<int> port = FreeLoopbackPort();
  if (!port.ok()) return port.status();
  std::unique_ptr<PostgresServer> server(new PostgresServer(*dir, *port, bin, options));
  if (absl::Status s = server->Launch(); !s.ok()) return s;
  return server;
}

PostgresServer::~PostgresServer() {
  Stop().IgnoreError();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

absl::Status PostgresServer::Launch() {
  absl::StatusOr<std::optional<Credentials>> user = PostgresUser();
  if (!user.ok()) return user.status();
  const std::string log = dir_ + "/postgres.log";
  const char* sync = options_.durable ? "on" : "off";
  absl::StatusOr<pid_t> pid =
      Spawn({bin_ + "/postgres", "-D", dir_ + "/data", "-p", absl::StrCat(port_), "-k", dir_, "-c",
             "listen_addresses=127.0.0.1", "-c", absl::StrCat("fsync=", sync), "-c",
             absl::StrCat("full_page_writes=", sync), "-c",
             absl::StrCat("max_connections=", options_.max_connections)},
            log, *user);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (absl::Now() < deadline) {
    if (WaitExit(pid_, absl::ZeroDuration()).has_value()) {
      pid_ = -1;
      return absl::InternalError("postgres exited:\n" + Tail(log));
    }
    absl::StatusOr<RunResult> ready =
        Run({bin_ + "/pg_isready", "-q", "-h", "127.0.0.1", "-p", absl::StrCat(port_), "-t", "1"},
            std::nullopt, absl::Seconds(5));
    if (ready.ok() && ready->exit_code == 0) return absl::OkStatus();
    absl::SleepFor(kPoll);
  }
  Stop().IgnoreError();
  return absl::DeadlineExceededError("postgres did not accept connections in time:\n" + Tail(log));
}

absl::Status PostgresServer::Stop() {
  if (pid_ > 0) Terminate(pid_, SIGINT);  // fast shutdown
  pid_ = -1;
  return absl::OkStatus();
}

absl::Status PostgresServer::Resume() {
  if (pid_ > 0) return absl::OkStatus();
  return Launch();
}

std::string PostgresServer::dsn() const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " user=postgres dbname=postgres");
}

absl::StatusOr<std::string> PostgresServer::Sql(const std::string& sql) const {
  absl::StatusOr<RunResult> run =
      Run({bin_ + "/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
           absl::StrCat(port_), "-U", "postgres", "-d", "postgres", "-c", sql},
          std::nullopt, absl::Seconds(30));
  if (!run.ok()) return run.status();
  if (run->exit_code != 0) return absl::InternalError("psql: " + run->output);
  std::string out = run->output;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace terse::testing
