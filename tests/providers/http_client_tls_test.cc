// The engine against a real TLS upstream offering HTTP/2 (Debian's nginx with a certificate made
// by openssl for this run): peer verification with a custom CA bundle, refusal without it,
// HTTP/2 negotiation and many exchanges multiplexed on one connection. Skipped when nginx or
// openssl is not installed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "providers/http_client.h"
#include "providers/upstream_errors.h"
#include "tests/providers/recorders.h"
#include "tests/support/status_matchers.h"

extern char** environ;

namespace terse::providers {
namespace {

namespace fs = std::filesystem;
using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;

bool Exists(const char* path) { return ::access(path, X_OK) == 0; }

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool Accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// nginx serving a fixed chat completion over TLS with HTTP/2, in its own temporary directory.
class TlsUpstream {
 public:
  bool Start() {
    dir_ = fs::temp_directory_path() /
           ("terse-tls-" + std::to_string(::getpid()) + "-" + std::to_string(FreePort()));
    fs::create_directories(dir_);
    std::string d = dir_.string();
    std::ofstream(dir_ / "ext.cnf") << "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n";
    std::string openssl =
        "cd '" + d + "' && " +
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        "-keyout ca.key -out ca.pem -days 2 -subj '/CN=terse test CA' "
        "-addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign' && "
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key "
        "-out server.csr -subj '/CN=127.0.0.1' && "
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out server.pem -days 2 -extfile ext.cnf";
    if (std::system((openssl + " >openssl.log 2>&1").c_str()) != 0) return false;

    for (int tries = 0; tries < 3; ++tries) {
      port_ = FreePort();
      std::ofstream(dir_ / "nginx.conf")
          << "daemon off;\nmaster_process off;\nworker_processes 1;\n"
          << "error_log " << d << "/error.log;\npid " << d << "/nginx.pid;\n"
          << "events { worker_connections 64; }\n"
          << "http {\n  access_log off;\n"
          << "  client_body_temp_path " << d << "/body;\n  proxy_temp_path " << d << "/proxy;\n"
          << "  fastcgi_temp_path " << d << "/fcgi;\n  uwsgi_temp_path " << d << "/uwsgi;\n"
          << "  scgi_temp_path " << d << "/scgi;\n"
          << "  server {\n    listen 127.0.0.1:" << port_ << " ssl http2;\n"
          << "    ssl_certificate " << d << "/server.pem;\n"
          << "    ssl_certificate_key " << d << "/server.key;\n"
          << "    location / { default_type application/json; "
          << "return 200 '{\"object\":\"chat.completion\",\"choices\":[]}'; }\n  }\n}\n";
      std::string conf = (dir_ / "nginx.conf").string();
      std::vector<std::string> args = {"nginx", "-p", d, "-c", conf};
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      if (::posix_spawn(&pid_, "/usr/sbin/nginx", nullptr, nullptr, argv.data(), environ) != 0) {
        return false;
      }
      absl::Time deadline = absl::Now() + absl::Seconds(10);
      while (absl::Now() < deadline) {
        if (Accepts(port_)) return true;
        int status;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) break;  // exited: port taken? try again
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      Stop();
    }
    return false;
  }

  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    absl::Time deadline = absl::Now() + absl::Seconds(5);
    int status;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
  }

  ~TlsUpstream() {
    Stop();
    std::error_code ignored;
    if (!dir_.empty()) fs::remove_all(dir_, ignored);
  }

  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_) + "/v1/x"; }
  std::string ca_bundle() const { return (dir_ / "ca.pem").string(); }

 private:
  fs::path dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

class HttpClientTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Exists("/usr/sbin/nginx") || !Exists("/usr/bin/openssl")) {
      GTEST_SKIP() << "nginx or openssl not installed";
    }
    ASSERT_TRUE(upstream_.Start()) << "could not start nginx with TLS";
    auto client = HttpClient::Create();
    ASSERT_THAT(client, IsOk());
    client_ = std::move(client).value();
  }

  HttpRequest Get(bool with_ca) {
    HttpRequest request;
    request.method = "GET";
    request.url = upstream_.url();
    if (with_ca) request.ca_bundle = upstream_.ca_bundle();
    return request;
  }

  TlsUpstream upstream_;
  std::unique_ptr<HttpClient> client_;
};

TEST_F(HttpClientTlsTest, VerifiesThePeerWithTheConfiguredCaAndSpeaksHttp2) {
  auto handler = std::make_shared<RecordingHttpHandler>();
  client_->Start(Get(/*with_ca=*/true), handler);
  ASSERT_TRUE(handler->WaitDone());
  ASSERT_THAT(handler->status(), IsOk());
  EXPECT_EQ(handler->head().status, 200);
  EXPECT_EQ(handler->head().http_version, 20);
  EXPECT_EQ(Json::parse(handler->body())["object"], "chat.completion");
}

TEST_F(HttpClientTlsTest, RefusesAnUnknownCertificateUnlessTold) {
  auto handler = std::make_shared<RecordingHttpHandler>();
  client_->Start(Get(/*with_ca=*/false), handler);
  ASSERT_TRUE(handler->WaitDone());
  EXPECT_THAT(handler->status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(RecoveryOf(handler->status()), Recovery::kFallBack);

  auto insecure = std::make_shared<RecordingHttpHandler>();
  HttpRequest request = Get(/*with_ca=*/false);
  request.insecure_skip_verify = true;
  client_->Start(request, insecure);
  ASSERT_TRUE(insecure->WaitDone());
  EXPECT_THAT(insecure->status(), IsOk());
}

TEST_F(HttpClientTlsTest, MultiplexesConcurrentExchangesOnOneConnection) {
  std::vector<std::shared_ptr<RecordingHttpHandler>> handlers;
  for (int i = 0; i < 20; ++i) {
    handlers.push_back(std::make_shared<RecordingHttpHandler>());
    client_->Start(Get(/*with_ca=*/true), handlers.back());
  }
  for (auto& h : handlers) {
    ASSERT_TRUE(h->WaitDone());
    EXPECT_THAT(h->status(), IsOk());
    EXPECT_EQ(h->head().http_version, 20);
  }
  EXPECT_EQ(client_->connections_opened(), 1);
}

}  // namespace
}  // namespace terse::providers
