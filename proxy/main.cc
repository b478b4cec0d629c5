// The `terse` binary: the composition root. It reads flags, loads the config, wires the concrete
// types together and runs the servers until SIGTERM or SIGINT.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "compressor/compress_command.h"
#include "compressor/compressor.h"
#include "config/config.h"
#include "eval/eval_command.h"
#include "providers/provider_set.h"
#include "proxy/admission.h"
#include "proxy/compression_step.h"
#include "proxy/grpc_server.h"
#include "proxy/http_server.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/pipeline.h"
#include "tenancy/keys.h"

// jemalloc's start-up options, read when terse is linked with it (CMakeLists.txt) and unused with
// glibc's malloc; MALLOC_CONF still overrides them. Each thread keeps freed blocks of up to
// 256 KiB for reuse (jemalloc's default stops at 32 KiB), so that a long prompt's body, its parsed
// text and its upstream copy do not each go to the shared arena and back; and a free run of pages
// up to 65,536 times a block's size may be split for it (the default: 64 times), so that long
// bodies reuse freed runs instead of faulting in new pages. The measurements are in
// bench/RESULTS.md ("Process settings").
extern "C" {
const char* malloc_conf = "tcache_max:262144,lg_extent_max_active_fit:16";
}

namespace terse::proxy {
namespace {

constexpr std::string_view kVersion = "0.1.0";

// Exit codes.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // could not start (port taken, provider set-up failed)
constexpr int kExitUsage = 2;    // bad flags or an invalid config

using Args = std::vector<std::string_view>;

struct Subcommand {
  std::string_view name;
  std::string_view usage;    // the synopsis after "terse "
  std::string_view summary;  // one line for `terse --help`
  int (*run)(const Args& args);
};

int RunServe(const Args& args);
int RunVersion(const Args& args);
int RunHelp(const Args& args);
int RunCompress(const Args& args);
int RunEval(const Args& args);
int RunKeygen(const Args& args);

// The subcommands. To add one (e.g. `compress`), declare its Run function and add a row here.
constexpr Subcommand kSubcommands[] = {
    {"serve", "serve --config FILE [--http-port N] [--grpc-port N] [--log-level L]",
     "run the gateway (HTTP and gRPC) until SIGTERM or SIGINT", RunServe},
    {"compress",
     "compress [--rate R | --target-tokens N] [--question-aware] [--json] [--show] < PROMPT",
     "compress a prompt from stdin as a route would (--help for every flag)", RunCompress},
    {"eval", "eval [--families LIST] [--items N] [--rates LIST] [--json FILE] [--svg FILE]",
     "measure what compression keeps, per task family and rate (--help for every flag)", RunEval},
    {"keygen", "keygen [--tenant ID] [--name LABEL] [--env]",
     "make a tenant API key: prints the key once, and the config entry with its hash", RunKeygen},
    {"version", "version", "print the version", RunVersion},
    {"help", "help", "print this help", RunHelp},
};

void PrintUsage(std::FILE* out) {
  std::fprintf(out,
               "terse %.*s: an LLM gateway that compresses prompts before they are paid for.\n\n"
               "Usage:\n",
               static_cast<int>(kVersion.size()), kVersion.data());
  for (const Subcommand& c : kSubcommands) {
    std::fprintf(out, "  terse %.*s\n      %.*s\n", static_cast<int>(c.usage.size()),
                 c.usage.data(), static_cast<int>(c.summary.size()), c.summary.data());
  }
  std::fprintf(out,
               "\nserve flags override the config: --http-port and --grpc-port (0: any free "
               "port),\n--log-level (debug, info, warn, error). Logs are JSON lines on stderr.\n"
               "Exit codes: 0 clean shutdown, 1 could not start, 2 bad flags or invalid config.\n");
}

int RunHelp(const Args&) {
  PrintUsage(stdout);
  return kExitOk;
}

int RunCompress(const Args& args) {
  std::vector<std::string> argv_strings = {"compress"};
  for (std::string_view a : args) argv_strings.emplace_back(a);
  std::vector<char*> argv;
  for (std::string& a : argv_strings) argv.push_back(a.data());
  return compressor::RunCompressCommand(static_cast<int>(argv.size()), argv.data());
}

int RunEval(const Args& args) {
  std::vector<std::string> argv = {"eval"};
  for (std::string_view a : args) argv.emplace_back(a);
  return eval::RunEvalCommand(argv, std::cout, std::cerr);
}

// The key is shown here once; the config keeps only its hash. Only the public id appears
// anywhere else. `--env` prints shell exports instead (TERSE_KEY, TERSE_KEY_ID, TERSE_KEY_HASH),
// for config/examples/tenants.yaml.
int RunKeygen(const Args& args) {
  std::string tenant = "TENANT", name;
  bool env = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const bool has_value = i + 1 < args.size();
    if (args[i] == "--tenant" && has_value) {
      tenant = std::string(args[++i]);
    } else if (args[i] == "--name" && has_value) {
      name = std::string(args[++i]);
    } else if (args[i] == "--env") {
      env = true;
    } else {
      std::fprintf(stderr, "terse keygen: unknown or incomplete flag %s\n",
                   std::string(args[i]).c_str());
      return kExitUsage;
    }
  }
  absl::StatusOr<tenancy::GeneratedKey> key = tenancy::GenerateKey();
  if (!key.ok()) {
    std::fprintf(stderr, "terse keygen: %s\n", std::string(key.status().message()).c_str());
    return kExitFailure;
  }
  if (env) {
    std::printf("export TERSE_KEY='%s' TERSE_KEY_ID='%s' TERSE_KEY_HASH='%s'\n", key->text.c_str(),
                key->id.c_str(), key->hash.c_str());
    return kExitOk;
  }
  std::printf(
      "key (give it to its owner; it is not stored and cannot be shown again):\n  %s\n\n"
      "config entry, under tenancy.tenants[id: %s].keys:\n"
      "  - {id: %s, hash: \"%s\"%s%s%s}\n",
      key->text.c_str(), tenant.c_str(), key->id.c_str(), key->hash.c_str(),
      name.empty() ? "" : ", name: \"", name.c_str(), name.empty() ? "" : "\"");
  return kExitOk;
}

// The compression step the config asks for: the compressor when any route (or a tenant's
// override) compresses or lets requests ask for it, else the pass-through (no model loaded,
// faster start).
absl::StatusOr<std::unique_ptr<CompressionStep>> MakeCompressionStep(const v1::Config& config) {
  bool needed = false;
  for (const v1::Route& route : config.routes()) {
    needed = needed || route.compression().enabled() || route.allow_overrides();
  }
  for (const v1::Tenant& tenant : config.tenancy().tenants()) {
    const v1::TenantCompression& own = tenant.compression();
    needed = needed || (own.has_enabled() && own.enabled()) || !own.policy().empty();
  }
  if (!needed) return std::make_unique<PassThroughCompression>();
  const v1::CompressorSettings& settings = config.compressor();
  compressor::LanguageModelOptions options;
  options.model_dir = settings.model_dir();
  options.device = settings.device();
  options.threads = static_cast<int>(settings.threads());
  options.max_batch_size = static_cast<int>(settings.max_batch_size());
  options.max_batch_wait_us = static_cast<int>(settings.max_batch_wait_us());
  absl::StatusOr<std::unique_ptr<compressor::Compressor>> loaded =
      compressor::Compressor::Load(options, settings.cache_entries());
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(),
                        "cannot load the compression model from compressor.model_dir \"" +
                            settings.model_dir() + "\": " + std::string(loaded.status().message()));
  }
  LogJson(LogLevel::kInfo, Json{{"msg", "compression model loaded"},
                                {"model_dir", settings.model_dir()},
                                {"device", (*loaded)->language_model().device()}});
  std::shared_ptr<compressor::Compressor> shared = std::move(*loaded);
  absl::StatusOr<std::unique_ptr<CompressorStep>> step =
      CompressorStep::Create(std::move(shared), settings);
  if (!step.ok()) return step.status();
  return std::unique_ptr<CompressionStep>(std::move(*step));
}

int RunVersion(const Args&) {
  std::printf("terse %.*s\n", static_cast<int>(kVersion.size()), kVersion.data());
  return kExitOk;
}

struct ServeFlags {
  std::string config_path;
  std::optional<uint32_t> http_port;
  std::optional<uint32_t> grpc_port;
  std::optional<std::string> log_level;
};

absl::StatusOr<ServeFlags> ParseServeFlags(const Args& args) {
  ServeFlags flags;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    std::string_view value;
    // Both `--flag value` and `--flag=value`.
    if (size_t eq = arg.find('='); arg.substr(0, 2) == "--" && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg == "--config" || arg == "--http-port" || arg == "--grpc-port" ||
               arg == "--log-level") {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(std::string(arg) + " needs a value");
      }
      value = args[++i];
    }
    auto port = [&](std::optional<uint32_t>& out) -> absl::Status {
      uint32_t n = 0;
      if (!absl::SimpleAtoi(absl::string_view(value.data(), value.size()), &n) || n > 65535) {
        return absl::InvalidArgumentError(std::string(arg) +
                                          ": not a port number: " + std::string(value));
      }
      out = n;
      return absl::OkStatus();
    };
    if (arg == "--config") {
      flags.config_path = std::string(value);
    } else if (arg == "--http-port") {
      if (absl::Status s = port(flags.http_port); !s.ok()) return s;
    } else if (arg == "--grpc-port") {
      if (absl::Status s = port(flags.grpc_port); !s.ok()) return s;
    } else if (arg == "--log-level") {
      flags.log_level = std::string(value);
    } else {
      return absl::InvalidArgumentError("unknown flag: " + std::string(args[i]));
    }
  }
  if (flags.config_path.empty()) return absl::InvalidArgumentError("--config FILE is required");
  return flags;
}

// Blocks the shutdown signals in this thread and every thread started after it, so that only
// the sigwait below ever sees them.
sigset_t BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A client or upstream closing its socket mid-write must not kill the process.
  signal(SIGPIPE, SIG_IGN);
  return set;
}

int RunServe(const Args& args) {
  for (std::string_view arg : args) {
    if (arg == "--help" || arg == "-h") return RunHelp({});
  }
  absl::StatusOr<ServeFlags> flags = ParseServeFlags(args);
  if (!flags.ok()) {
    std::fprintf(stderr, "terse serve: %s\n\n", std::string(flags.status().message()).c_str());
    PrintUsage(stderr);
    return kExitUsage;
  }

  absl::StatusOr<std::shared_ptr<const config::Config>> loaded =
      config::LoadConfigFile(flags->config_path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "terse: invalid config %s:\n%s\n", flags->config_path.c_str(),
                 std::string(loaded.status().message()).c_str());
    return kExitUsage;
  }
  // Flags override the file: a new snapshot with the listeners changed.
  v1::Config proto = (*loaded)->proto();
  if (flags->http_port) proto.mutable_listeners()->mutable_http()->set_port(*flags->http_port);
  if (flags->grpc_port) proto.mutable_listeners()->mutable_grpc()->set_port(*flags->grpc_port);
  if (flags->log_level) proto.mutable_logging()->set_level(*flags->log_level);
  absl::StatusOr<LogLevel> level = ParseLogLevel(proto.logging().level());
  if (!level.ok()) {
    std::fprintf(stderr, "terse: %s\n", std::string(level.status().message()).c_str());
    return kExitUsage;
  }
  SetLogLevel(*level);
  auto config = std::make_shared<const config::Config>(proto);

  const sigset_t signals = BlockShutdownSignals();

  absl::StatusOr<std::unique_ptr<providers::ProviderSet>> providers =
      providers::ProviderSet::Create(config->proto(),
                                     static_cast<int>(HttpServer::IoThreads(config->proto())));
  if (!providers.ok()) {
    LogJson(LogLevel::kError, Json{{"msg", "cannot set up the providers"},
                                   {"error", std::string(providers.status().message())}});
    return kExitFailure;
  }
  Metrics metrics;
  // Before the pipeline, which may wait on its settlements as it goes.
  absl::StatusOr<std::unique_ptr<Tenants>> tenants = Tenants::Open(config->proto(), metrics);
  if (!tenants.ok()) {
    LogJson(
        LogLevel::kError,
        Json{{"msg", "cannot set up tenancy"}, {"error", std::string(tenants.status().message())}},
        /*always=*/true);
    return kExitFailure;
  }
  absl::StatusOr<std::unique_ptr<CompressionStep>> compression =
      MakeCompressionStep(config->proto());
  if (!compression.ok()) {
    LogJson(LogLevel::kError,
            Json{{"msg", "cannot set up compression"},
                 {"error", std::string(compression.status().message())}},
            /*always=*/true);
    return kExitFailure;
  }
  Pipeline pipeline(config, **providers, **compression, metrics, tenants->get());

  absl::StatusOr<std::unique_ptr<HttpServer>> http =
      HttpServer::Start(config->proto(), pipeline, metrics, &(*providers)->engine());
  if (!http.ok()) {
    LogJson(LogLevel::kError,
            Json{{"msg", "cannot start"}, {"error", std::string(http.status().message())}});
    return kExitFailure;
  }

  absl::StatusOr<std::unique_ptr<GrpcServer>> grpc = GrpcServer::Start(config->proto(), pipeline);
  if (!grpc.ok()) {
    LogJson(LogLevel::kError,
            Json{{"msg", "cannot start"}, {"error", std::string(grpc.status().message())}});
    (*http)->Shutdown(absl::Seconds(1));
    return kExitFailure;
  }

  LogJson(LogLevel::kInfo,
          Json{{"msg", "terse started"},
               {"version", std::string(kVersion)},
               {"http_host", config->proto().listeners().http().host()},
               {"http_port", (*http)->port()},
               {"grpc_host", config->proto().listeners().grpc().host()},
               {"grpc_port", (*grpc)->port()}},
          /*always=*/true);

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  LogJson(LogLevel::kInfo, Json{{"msg", "shutting down"},
                                {"signal", signal_number == SIGINT ? "SIGINT" : "SIGTERM"}});
  // Both faces drain at the same time; then the pipeline (which waits for stragglers) and the
  // providers go, in the reverse order of construction.
  std::thread grpc_stop([&grpc] { (*grpc)->Shutdown(); });
  (*http)->Shutdown(absl::Seconds(5));
  grpc_stop.join();
  http->reset();
  grpc->reset();
  LogJson(LogLevel::kInfo, Json{{"msg", "stopped"}});
  return kExitOk;
}

int Main(int argc, char** argv) {
  Args args(argv + 1, argv + argc);
  if (args.empty()) {
    PrintUsage(stderr);
    return kExitUsage;
  }
  if (args[0] == "--help" || args[0] == "-h") return RunHelp({});
  if (args[0] == "--version") return RunVersion({});
  for (const Subcommand& c : kSubcommands) {
    if (c.name == args[0]) return c.run(Args(args.begin() + 1, args.end()));
  }
  std::fprintf(stderr, "terse: unknown command \"%s\"\n\n", std::string(args[0]).c_str());
  PrintUsage(stderr);
  return kExitUsage;
}

}  // namespace
}  // namespace terse::proxy

int main(int argc, char** argv) {
  // libgomp reads OMP_WAIT_POLICY once, as it loads, before main. Its default lets LibTorch's
  // idle threads spin, which starves the I/O threads and slows scoring on a loaded machine
  // (bench/RESULTS.md); so unless the operator chose a policy, run again with PASSIVE.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr && setenv("OMP_WAIT_POLICY", "PASSIVE", 1) == 0) {
    // The binary's real path, not /proc/self/exe: the process is named after the file it runs,
    // and ps, top, pgrep and profilers should see "terse", not "exe".
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
      self[n] = '\0';
      execv(self, argv);  // returns only on failure: then carry on as we are
    }
  }
  // Debian builds abseil without NDEBUG, which leaves Mutex deadlock detection on: every lock then
  // also updates a process-wide lock graph under a global lock, which the I/O threads contend for
  // (bench/RESULTS.md). The tests keep checking lock order.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return terse::proxy::Main(argc, argv);
}
