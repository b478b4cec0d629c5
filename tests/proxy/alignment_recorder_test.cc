// The alignment recorder on its own (whole lines under concurrency, failing and blocked files),
// and through the pipeline: what a route with record_alignment_pairs writes after real calls.
#include "proxy/alignment_recorder.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/proxy/test_env.h"

namespace terse::proxy {
namespace {

using ::terse::proxy::testing::Gateway;
using ::terse::proxy::testing::RecordingResponder;
using ::terse::proxy::testing::ScriptedCompression;
using ::terse::testing::FakeReply;
using Kind = RecordingResponder::Kind;

// A fresh directory under the test temp dir, removed with its files at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "terse-pairs-XXXXXX";
    path_ = mkdtemp(pattern.data()) ? pattern : "";
  }
  ~TempDir() {
    for (const std::string& f : files_) std::remove(f.c_str());
    rmdir(path_.c_str());
  }
  std::string File(const std::string& name) {
    files_.push_back(path_ + "/" + name);
    return files_.back();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

std::vector<Json> ReadLines(const std::string& path) {
  std::vector<Json> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(Json::parse(line, nullptr, /*allow_exceptions=*/false));
  }
  return lines;
}

TEST(RenderAlignmentPromptTest, RoleLinesOfTheTextWithoutMarkup) {
  Json messages = Json::parse(R"([
    {"role": "system", "content": "Be brief. <terse:keep>Never guess.</terse:keep>"},
    {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                 {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
                                 {"type": "text", "text": "what is it?"}]},
    {"role": "assistant", "content": null, "tool_calls": []},
    {"role": "tool", "tool_call_id": "c1", "content": "{\"a\": 1}"},
    {"role": "user", "content": "<terse:doc>Doc one.</terse:doc>\nWhy?"}
  ])");
  EXPECT_EQ(RenderAlignmentPrompt(messages),
            "system: Be brief. Never guess.\n"
            "user: Look:\nwhat is it?\n"
            "tool: {\"a\": 1}\n"
            "user: Doc one.\nWhy?");
  EXPECT_EQ(RenderAlignmentPrompt(Json::object()), "");
}

TEST(AlignmentAnswerTextTest, FirstChoiceOfEveryShape) {
  EXPECT_EQ(
      AlignmentAnswerText(Json::parse(
          R"({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."}}]})")),
      "Hi.");
  EXPECT_EQ(AlignmentAnswerText(Json::parse(
                R"({"choices": [{"index": 1, "delta": {"content": "no"}},
                                {"index": 0, "delta": {"content": " there"}}]})")),
            " there");
  EXPECT_EQ(AlignmentAnswerText(Json::parse(R"({"choices": [{"index": 0, "text": "legacy"}]})")),
            "legacy");
  EXPECT_EQ(AlignmentAnswerText(Json::parse(
                R"({"choices": [{"index": 0, "message": {"content": null, "tool_calls": []}}]})")),
            "");
  EXPECT_EQ(AlignmentAnswerText(Json::parse(R"({"choices": [], "usage": {}})")), "");
}

TEST(AlignmentRecorderTest, ConcurrentRecordsAreWholeLines) {
  TempDir dir;
  const std::string a = dir.File("a.jsonl");
  const std::string b = dir.File("b.jsonl");
  constexpr int kThreads = 8;
  constexpr int kPerThread = 250;
  AlignmentRecorder recorder(/*queue_capacity=*/kThreads * kPerThread);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Long enough that a torn write would show, with text that needs JSON escaping.
        recorder.Record(i % 2 ? b : a, Json{{"prompt", "user: \"" + std::string(300, 'p') + "\"\n"},
                                            {"response", std::string(200, 'r')},
                                            {"thread", t},
                                            {"i", i}});
      }
    });
  }
  for (std::thread& t : threads) t.join();
  recorder.Flush();
  EXPECT_EQ(recorder.written(), static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(recorder.dropped(), 0u);

  std::set<std::pair<int, int>> seen;
  for (const std::string& path : {a, b}) {
    std::vector<Json> lines = ReadLines(path);
    EXPECT_EQ(lines.size(), static_cast<size_t>(kThreads * kPerThread / 2)) << path;
    for (const Json& line : lines) {
      ASSERT_TRUE(line.is_object()) << "a torn or interleaved line in " << path;
      EXPECT_EQ(line["prompt"].get<std::string>().size(), 309u);
      seen.emplace(line["thread"].get<int>(), line["i"].get<int>());
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST(AlignmentRecorderTest, AFileThatFailsDropsItsLinesAndOthersCarryOn) {
  TempDir dir;
  const std::string good = dir.File("good.jsonl");
  AlignmentRecorder recorder;
  recorder.Record(dir.path() + "/no/such/dir/pairs.jsonl",
                  Json{{"prompt", "p"}, {"response", "r"}});
  recorder.Record(good, Json{{"prompt", "p"}, {"response", "r"}});
  recorder.Flush();
  EXPECT_EQ(recorder.dropped(), 1u);
  EXPECT_EQ(recorder.written(), 1u);
  EXPECT_EQ(ReadLines(good).size(), 1u);
}

TEST(AlignmentRecorderTest, ABlockedFileNeverBlocksRecordAndAFullQueueDrops) {
  TempDir dir;
  // Opening a FIFO for writing blocks until a reader comes: the writer thread is stuck on "disk".
  const std::string fifo = dir.File("pairs.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  AlignmentRecorder recorder(/*queue_capacity=*/2);
  constexpr int kLines = 12;
  for (int i = 0; i < kLines; ++i) {
    recorder.Record(fifo, Json{{"prompt", "p"}, {"response", "r"}, {"i", i}});
  }
  // The writer holds at most one batch (<= capacity) and the queue at most capacity lines.
  EXPECT_GE(recorder.dropped(), static_cast<uint64_t>(kLines - 4));

  const int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // lets the writer through
  ASSERT_GE(reader, 0);
  recorder.Flush();
  EXPECT_EQ(recorder.written() + recorder.dropped(), static_cast<uint64_t>(kLines));
  std::string got(4096, '\0');
  const ssize_t n = read(reader, got.data(), got.size());
  ASSERT_GT(n, 0);
  got.resize(static_cast<size_t>(n));
  EXPECT_EQ(static_cast<uint64_t>(std::count(got.begin(), got.end(), '\n')), recorder.written());
  close(reader);
}

// ---- Through the pipeline.

Json Chat(std::string model, std::string text, bool stream = false) {
  Json body = {{"model", std::move(model)},
               {"messages", Json::array({Json{{"role", "system"}, {"content", "Be brief."}},
                                         Json{{"role", "user"}, {"content", std::move(text)}}})}};
  if (stream) body["stream"] = true;
  return body;
}

std::shared_ptr<RecordingResponder> RunToEnd(Pipeline& pipeline, Json body) {
  CallInfo info;
  info.operation = Operation::kChatCompletions;
  info.request_id = "req_pairs";
  auto responder = std::make_shared<RecordingResponder>();
  auto call = pipeline.Handle(std::move(info), json::WireJson(std::move(body)), responder);
  EXPECT_TRUE(responder->WaitDone());
  return responder;
}

TEST(AlignmentRecorderPipelineTest, RecordsTheOriginalPromptAndTheAnswerOfSuccessfulCalls) {
  TempDir dir;
  const std::string pairs = dir.File("pairs.jsonl");
  // The "compressor" cuts every message to one word, so the upstream sees a different prompt.
  ScriptedCompression step([](const v1::Route&, const CallInfo&, CompressionStep::Input input) {
    if (input.prompt.has_value()) {
      for (Json& m : *input.prompt) m["content"] = "short";
    }
    CompressionStep::Result result;
    result.prompt = std::move(input.prompt);
    result.report.set_applied(true);
    return absl::StatusOr<CompressionStep::Result>(std::move(result));
  });
  {
    Gateway gw(Gateway::Options{.extra_routes = R"(
  - name: recorded
    model: recorded
    provider: fake
    upstream_model: fake-recorded-1
    compression: {enabled: true, rate: 0.5, record_alignment_pairs: )" +
                                                pairs + R"(}
  - name: plain
    model: plain
    provider: fake
    compression: {enabled: true, rate: 0.5}
)",
                                .compression = &step,
                                .start_http = false});
    gw.upstream.SetDefaultReply(FakeReply::Text("The bridge was rebuilt in spring."));

    auto r = RunToEnd(*gw.pipeline,
                      Chat("recorded", "Who rebuilt the <terse:keep>bridge</terse:keep>?"));
    ASSERT_EQ(r->terminal().kind, Kind::kReply) << r->terminal().status;
    EXPECT_EQ(gw.upstream.last_request().JsonBody()["messages"][1]["content"], "short");

    r = RunToEnd(*gw.pipeline, Chat("recorded", "And when, streamed?", /*stream=*/true));
    ASSERT_EQ(r->terminal().kind, Kind::kEndStream) << r->terminal().status;
    ASSERT_TRUE(r->terminal().status.ok()) << r->terminal().status;

    gw.upstream.EnqueueReply(FakeReply::Fail(500));  // failed calls teach nothing
    r = RunToEnd(*gw.pipeline, Chat("recorded", "This one fails."));
    ASSERT_EQ(r->terminal().kind, Kind::kFail);

    r = RunToEnd(*gw.pipeline, Chat("plain", "Not recorded: the route does not ask."));
    ASSERT_EQ(r->terminal().kind, Kind::kReply) << r->terminal().status;
  }  // the pipeline is gone: its recorder wrote everything queued

  std::vector<Json> lines = ReadLines(pairs);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["prompt"], "system: Be brief.\nuser: Who rebuilt the bridge?");
  EXPECT_EQ(lines[0]["response"], "The bridge was rebuilt in spring.");
  EXPECT_EQ(lines[0]["model"], "fake-recorded-1");
  EXPECT_EQ(lines[0]["route"], "recorded");
  EXPECT_GT(lines[0]["ts"].get<double>(), 1.7e9);
  EXPECT_EQ(lines[1]["prompt"], "system: Be brief.\nuser: And when, streamed?");
  EXPECT_EQ(lines[1]["response"], "The bridge was rebuilt in spring.");
}

}  // namespace
}  // namespace terse::proxy
