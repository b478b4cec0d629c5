// The gRPC face end to end in one process: a real gRPC C++ client against GrpcServer, the real
// Pipeline and ProviderSet, and the fake upstream over TCP.
#include "proxy/grpc_server.h"

#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "terse/v1/gateway.grpc.pb.h"
#include "tests/proxy/test_env.h"
#include "tests/support/status_matchers.h"

namespace terse::proxy {
namespace {

using ::terse::proxy::testing::Gateway;
using ::terse::proxy::testing::ScriptedCompression;
using ::terse::testing::FakeReply;
using ::terse::testing::IsOk;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Key;
using ::testing::Not;
using ::testing::Pair;

constexpr char kScriptedRoute[] = R"(
  - name: scripted
    model: scripted-model
    provider: fake
    allow_overrides: true
)";

// What the compression step saw, and what it reports: every call through the `scripted` route is
// forwarded unchanged with a fixed report, so tests see the report travel to the client.
struct StepLog {
  std::mutex mu;
  std::vector<CompressionStep::Input> inputs;
};

v1::CompressionReport FixedReport() {
  v1::CompressionReport report;
  report.set_applied(true);
  report.set_original_tokens(10);
  report.set_compressed_tokens(7);
  report.set_rate(0.7);
  return report;
}

std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout = absl::Seconds(20)) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  ctx->AddMetadata("authorization", "Bearer sk-test-key");
  return ctx;
}

v1::ChatRequest Request(const std::string& model, const std::string& text) {
  v1::ChatRequest request;
  request.set_model(model);
  v1::Message* system = request.add_messages();
  system->set_role("system");
  system->set_content("Answer briefly.");
  v1::Message* user = request.add_messages();
  user->set_role("user");
  user->set_content(text);
  return request;
}

std::string Metadata(const std::multimap<grpc::string_ref, grpc::string_ref>& md,
                     const std::string& key) {
  auto it = md.find(key);
  return it == md.end() ? "" : std::string(it->second.data(), it->second.size());
}

class GrpcServerTest : public ::testing::Test {
 protected:
  GrpcServerTest()
      : step_([this](const v1::Route&, const CallInfo&,
                     CompressionStep::Input input) -> absl::StatusOr<CompressionStep::Result> {
          {
            std::lock_guard<std::mutex> lock(log_.mu);
            log_.inputs.push_back(input);
          }
          return CompressionStep::Result{std::move(input.prompt), FixedReport()};
        }),
        gateway_(Gateway::Options{
            .extra_routes = kScriptedRoute, .compression = &step_, .start_http = false}) {}

  void SetUp() override {
    auto server = GrpcServer::Start(gateway_.config->proto(), *gateway_.pipeline);
    ASSERT_THAT(server, IsOk());
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Gateway::NewStub(channel_);
  }

  StepLog log_;
  ScriptedCompression step_;
  Gateway gateway_;  // the pipeline must outlive the server: declared first, destroyed last
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
};

TEST_F(GrpcServerTest, ChatAnswersAndCarriesExtraFieldsBothWays) {
  v1::ChatRequest request = Request("gpt-4o-mini", "hello there from grpc");
  request.set_temperature(0.5);
  request.set_max_tokens(32);
  (*request.mutable_extra()->mutable_fields())["seed"].set_number_value(7);
  (*request.mutable_extra()->mutable_fields())["user"].set_string_value("u-1");
  auto ctx = Context();
  ctx->AddMetadata("x-request-id", "grpc-test-1");
  v1::ChatResponse response;
  grpc::Status status = stub_->Chat(ctx.get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();

  ASSERT_EQ(response.choices_size(), 1);
  EXPECT_EQ(response.choices(0).message().role(), "assistant");
  EXPECT_EQ(response.choices(0).message().content(), "hello there from grpc");
  EXPECT_EQ(response.choices(0).finish_reason(), "stop");
  EXPECT_EQ(response.model(), "gpt-4o-mini");
  EXPECT_GT(response.usage().prompt_tokens(), 0u);
  EXPECT_EQ(response.usage().total_tokens(),
            response.usage().prompt_tokens() + response.usage().completion_tokens());
  EXPECT_FALSE(response.compression().applied());  // the gpt route does not compress
  EXPECT_THAT(response.compression().reason(), Not(::testing::IsEmpty()));
  EXPECT_EQ(Metadata(ctx->GetServerInitialMetadata(), "x-request-id"), "grpc-test-1");

  Json sent = gateway_.upstream.last_request().JsonBody();
  EXPECT_EQ(sent["seed"], 7);
  EXPECT_EQ(sent["user"], "u-1");
  EXPECT_EQ(sent["temperature"], 0.5);
  EXPECT_EQ(sent["max_tokens"], 32);
  EXPECT_EQ(sent["stream"], false);
  EXPECT_EQ(sent["messages"][0],
            Json::parse(R"({"role": "system", "content": "Answer briefly."})"));
}

TEST_F(GrpcServerTest, ChatPassesPartsThrough) {
  v1::ChatRequest request;
  request.set_model("gpt-4o");
  v1::Message* user = request.add_messages();
  user->set_role("user");
  v1::ContentPart* text = user->add_parts();
  text->set_type("text");
  text->set_text("describe the picture");
  v1::ContentPart* image = user->add_parts();
  image->set_type("image_url");
  (*(*image->mutable_extra()->mutable_fields())["image_url"]
        .mutable_struct_value()
        ->mutable_fields())["url"]
      .set_string_value("https://example.com/cat.png");
  v1::ChatResponse response;
  grpc::Status status = stub_->Chat(Context().get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(gateway_.upstream.last_request().JsonBody()["messages"][0]["content"],
            Json::parse(R"([{"type": "text", "text": "describe the picture"},
                            {"type": "image_url",
                             "image_url": {"url": "https://example.com/cat.png"}}])"));
}

TEST_F(GrpcServerTest, CallInfoCarriesKeyDeadlineHeadersAndOverride) {
  v1::ChatRequest request = Request("scripted-model", "one two three");
  request.mutable_compression()->set_rate(0.4);
  auto ctx = Context(absl::Seconds(30));
  ctx->AddMetadata("x-custom", "yes");
  v1::ChatResponse response;
  grpc::Status status = stub_->Chat(ctx.get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();

  std::vector<CallInfo> calls = step_.calls();
  ASSERT_EQ(calls.size(), 1u);
  const CallInfo& info = calls[0];
  EXPECT_EQ(info.face, Face::kGrpc);
  EXPECT_EQ(info.operation, Operation::kChatCompletions);
  EXPECT_EQ(info.api_key, "sk-test-key");
  EXPECT_THAT(info.request_id, HasSubstr("req_"));  // none sent: a new one
  EXPECT_EQ(Metadata(ctx->GetServerInitialMetadata(), "x-request-id"), info.request_id);
  EXPECT_LT(info.deadline, absl::Now() + absl::Seconds(31));
  EXPECT_GT(info.deadline, absl::Now());
  EXPECT_THAT(info.headers, Contains(Pair("x-custom", "yes")));
  EXPECT_THAT(info.headers, Not(Contains(Key("authorization"))));  // the key travels only once
  {
    std::lock_guard<std::mutex> lock(log_.mu);
    ASSERT_EQ(log_.inputs.size(), 1u);
    EXPECT_EQ(log_.inputs[0].overrides, Json::parse(R"({"rate": 0.4})"));
  }
  EXPECT_TRUE(response.compression().applied());
  EXPECT_EQ(response.compression().original_tokens(), 10u);
  EXPECT_EQ(response.compression().compressed_tokens(), 7u);
}

TEST_F(GrpcServerTest, ChatStreamSendsChunksReportFirstUsageLast) {
  const std::string text = "alpha beta gamma delta epsilon";
  auto ctx = Context();
  auto reader = stub_->ChatStream(ctx.get(), Request("scripted-model", text));
  std::vector<v1::ChatChunk> chunks;
  v1::ChatChunk chunk;
  while (reader->Read(&chunk)) chunks.push_back(chunk);  // bounded by the call's deadline
  grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();

  ASSERT_GE(chunks.size(), 3u);
  std::string content;
  for (const v1::ChatChunk& c : chunks) {
    for (const v1::ChunkChoice& choice : c.choices()) content += choice.delta().content();
  }
  EXPECT_EQ(content, text);
  EXPECT_TRUE(chunks.front().compression().applied());
  EXPECT_EQ(chunks.front().compression().compressed_tokens(), 7u);
  for (size_t i = 1; i < chunks.size(); ++i) EXPECT_FALSE(chunks[i].has_compression()) << i;
  const v1::ChatChunk& last = chunks.back();
  EXPECT_EQ(last.choices_size(), 0);
  EXPECT_GT(last.usage().completion_tokens(), 0u);
  for (size_t i = 0; i + 1 < chunks.size(); ++i) EXPECT_FALSE(chunks[i].has_usage()) << i;
  Json sent = gateway_.upstream.last_request().JsonBody();
  EXPECT_EQ(sent["stream"], true);
  EXPECT_EQ(sent["stream_options"]["include_usage"], true);
}

TEST_F(GrpcServerTest, ListModelsNamesTheRoutesModels) {
  v1::ListModelsResponse response;
  grpc::Status status = stub_->ListModels(Context().get(), {}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<std::string> ids;
  for (const v1::Model& m : response.models()) ids.push_back(m.id());
  EXPECT_THAT(ids, ::testing::IsSupersetOf({"small", "fake-small-2024", "scripted-model"}));
  EXPECT_THAT(ids, Not(Contains("gpt-*")));
}

TEST_F(GrpcServerTest, CompressReturnsTheStepsMessagesAndReport) {
  v1::CompressRequest request;
  request.set_model("scripted-model");
  v1::Message* m = request.add_messages();
  m->set_role("user");
  m->set_content("a long prompt");
  v1::CompressResponse response;
  grpc::Status status = stub_->Compress(Context().get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.messages_size(), 1);
  EXPECT_EQ(response.messages(0).content(), "a long prompt");
  EXPECT_TRUE(response.report().applied());
  EXPECT_EQ(gateway_.upstream.request_count(), 0u);  // no upstream call
}

TEST_F(GrpcServerTest, UnknownModelIsNotFoundWithTheErrorTablesCode) {
  auto ctx = Context();
  ctx->AddMetadata("x-request-id", "has a space");  // not echoed: a new id instead
  v1::ChatResponse response;
  grpc::Status status = stub_->Chat(ctx.get(), Request("no-such-model", "hi"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no-such-model"));
  EXPECT_EQ(Metadata(ctx->GetServerTrailingMetadata(), "x-terse-error-type"),
            "invalid_request_error");
  EXPECT_EQ(Metadata(ctx->GetServerTrailingMetadata(), "x-terse-error-code"), "model_not_found");
  EXPECT_THAT(Metadata(ctx->GetServerInitialMetadata(), "x-request-id"), HasSubstr("req_"));
}

TEST_F(GrpcServerTest, InvalidRequestsAreInvalidArgument) {
  v1::ChatRequest no_messages;
  no_messages.set_model("gpt-4o");
  v1::ChatResponse response;
  grpc::Status status = stub_->Chat(Context().get(), no_messages, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::ChatRequest no_role = Request("gpt-4o", "hi");
  no_role.mutable_messages(1)->clear_role();
  status = stub_->Chat(Context().get(), no_role, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("messages[1].role"));

  v1::ChatRequest bad_role = Request("gpt-4o", "hi");
  bad_role.mutable_messages(1)->set_role("narrator");
  auto ctx = Context();
  auto reader = stub_->ChatStream(ctx.get(), bad_role);
  v1::ChatChunk chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::ChatRequest contradiction = Request("gpt-4o", "hi");
  contradiction.mutable_messages(1)->add_parts()->set_type("text");
  status = stub_->Chat(Context().get(), contradiction, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(gateway_.upstream.request_count(), 0u);
}

TEST_F(GrpcServerTest, UpstreamFailureIsUnavailable) {
  gateway_.upstream.EnqueueReply(FakeReply::Fail(500, "boom"));
  v1::ChatResponse response;
  grpc::Status status = stub_->Chat(Context().get(), Request("gpt-4o", "hi"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcServerTest, UpstreamRateLimitCarriesItsRetryAfter) {
  FakeReply limited = FakeReply::Fail(429, "slow down", "rate_limit_error");
  limited.headers = {{"retry-after", "7"}};
  gateway_.upstream.EnqueueReply(limited);
  auto ctx = Context();
  v1::ChatResponse response;
  grpc::Status status = stub_->Chat(ctx.get(), Request("gpt-4o", "hi"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Metadata(ctx->GetServerTrailingMetadata(), "x-terse-error-type"), "rate_limit_error");
  EXPECT_EQ(Metadata(ctx->GetServerTrailingMetadata(), "retry-after-ms"), "7000");
}

TEST_F(GrpcServerTest, DeadlineExceededWithStalledUpstreamCancelsIt) {
  gateway_.upstream.SetDefaultReply(FakeReply::Stall());
  v1::ChatResponse response;
  grpc::Status status =
      stub_->Chat(Context(absl::Milliseconds(300)).get(), Request("gpt-4o", "hi"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The upstream request was abandoned, not left hanging.
  EXPECT_TRUE(gateway_.upstream.WaitForAnswersCutByClient(1, absl::Seconds(10)));
}

TEST_F(GrpcServerTest, ClientCancelMidStreamCancelsTheUpstream) {
  gateway_.upstream.SetDefaultReply(FakeReply::SlowStream(absl::Milliseconds(100)));
  std::string text;
  for (int i = 0; i < 60; ++i) absl::StrAppend(&text, "word", i, " ");  // ~6 s of stream
  auto ctx = Context();
  auto reader = stub_->ChatStream(ctx.get(), Request("gpt-4o", text));
  v1::ChatChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  ASSERT_TRUE(reader->Read(&chunk));
  ctx->TryCancel();
  while (reader->Read(&chunk)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(gateway_.upstream.WaitForAnswersCutByClient(1, absl::Seconds(10)));

  // The server keeps serving.
  gateway_.upstream.SetDefaultReply(FakeReply{});
  v1::ChatResponse response;
  EXPECT_TRUE(stub_->Chat(Context().get(), Request("gpt-4o", "still here"), &response).ok());
}

// grpc.health.v1.Health/Check through the generic stub: HealthCheckRequest{service} is field 1
// (a string), HealthCheckResponse{status} field 1 (an enum, SERVING = 1).
int HealthStatus(grpc::Channel& channel, const std::string& service, grpc::StatusCode* code) {
  std::string request_bytes;
  if (!service.empty()) {
    request_bytes.push_back(0x0a);
    request_bytes.push_back(static_cast<char>(service.size()));
    request_bytes += service;
  }
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::GenericStub stub(channel.shared_from_this());
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  auto future = done.get_future();
  if (future.wait_for(std::chrono::seconds(15)) != std::future_status::ready) {
    *code = grpc::StatusCode::UNKNOWN;
    return -1;
  }
  grpc::Status status = future.get();
  *code = status.error_code();
  if (!status.ok()) return -1;
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return -1;
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (bytes.empty()) return 0;  // UNKNOWN, the default value
  if (bytes.size() == 2 && bytes[0] == 0x08) return bytes[1];
  return -1;
}

TEST_F(GrpcServerTest, HealthIsServingThenNotServingAfterShutdown) {
  grpc::StatusCode code;
  EXPECT_EQ(HealthStatus(*channel_, "", &code), 1);
  EXPECT_EQ(code, grpc::StatusCode::OK);
  EXPECT_EQ(HealthStatus(*channel_, "terse.v1.Gateway", &code), 1);
  EXPECT_EQ(HealthStatus(*channel_, "no.such.Service", &code), -1);
  EXPECT_EQ(code, grpc::StatusCode::NOT_FOUND);

  server_->Shutdown();
  server_->Shutdown();  // idempotent
  EXPECT_EQ(HealthStatus(*channel_, "", &code), -1);
  EXPECT_EQ(code, grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcServerTest, ShutdownEndsStreamsInFlight) {
  gateway_.upstream.SetDefaultReply(FakeReply::SlowStream(absl::Milliseconds(200)));
  std::string text;
  for (int i = 0; i < 200; ++i) absl::StrAppend(&text, "w", i, " ");  // far longer than the grace
  auto ctx = Context(absl::Seconds(60));
  auto reader = stub_->ChatStream(ctx.get(), Request("gpt-4o", text));
  v1::ChatChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  server_->Shutdown();  // waits out the grace period, then cancels the stream
  while (reader->Read(&chunk)) {
  }
  EXPECT_FALSE(reader->Finish().ok());
  EXPECT_TRUE(gateway_.upstream.WaitForAnswersCutByClient(1, absl::Seconds(10)));
}

TEST(GrpcServerStartTest, PortInUseIsUnavailable) {
  Gateway gateway(Gateway::Options{.start_http = false});
  auto first = GrpcServer::Start(gateway.config->proto(), *gateway.pipeline);
  ASSERT_THAT(first, IsOk());
  v1::Config config = gateway.config->proto();
  config.mutable_listeners()->mutable_grpc()->set_port((*first)->port());
  auto second = GrpcServer::Start(config, *gateway.pipeline);
  EXPECT_THAT(second, ::terse::testing::StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace terse::proxy
