// terse's JSON code against nlohmann's on the same texts in the same run:
// - the validating scanner on what a streaming gateway checks, a chat.completion.chunk (168
//   bytes) and a whole chat.completion answer (~1.6 KB, a 1 KB content string with escapes and
//   non-ASCII UTF-8), against json::accept (the parser whose verdicts it matches);
// - ParseJson and DumpJson on a chat request (~1.5 KB: a system prompt, a user turn, a tool),
//   against Json::parse and dump, and ParseJson on one with a 32 KiB prompt;
// - the mask of a string's special bytes, over 32 KiB of prose, at each width this processor
//   runs (the parser and scanner use the widest);
// - the same request's way to the upstream once parsed, with the `stream_options` terse adds:
//   spliced into the client's text (WireJson::SetMember), against the value edited and
//   re-serialized (what terse did before).
// Prints ns per text; bench/RESULTS.md has the ratios.
#include <string>
#include <string_view>

#include "base/json.h"
#include "benchmark/benchmark.h"
#include "json/bytes.h"
#include "json/codec.h"
#include "json/scan.h"
#include "json/wire_json.h"

namespace terse::json {
namespace {

const std::string& Chunk() {
  static const std::string text =
      R"({"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,)"
      R"("model":"fixed","choices":[{"index":0,"delta":{"content":" answer"},)"
      R"("finish_reason":null}]})";
  return text;
}

const std::string& Completion() {
  static const std::string text = [] {
    std::string content;
    while (content.size() < 1024) {
      content += R"(The caf\u00e9 on the corner serves cr\u00e8me br\u00fbl\u00e9e \"daily\". )"
                 "Pr\xc3\xa9"
                 "f\xc3\xa9rences: 20 \xe2\x82\xac, \xf0\x9f\x98\x80 emoji.\\n"
                 "Plain ASCII text follows, as most answers are, with a line break.\\n";
    }
    return R"({"id":"chatcmpl-abc123","object":"chat.completion","created":1700000000,)"
           R"("model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":)"
           R"({"role":"assistant","content":")" +
           content +
           R"(","refusal":null},"logprobs":null,"finish_reason":"stop"}],)"
           R"("usage":{"prompt_tokens":19,"completion_tokens":250,"total_tokens":269,)"
           R"("prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},)"
           R"("completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,)"
           R"("accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},)"
           R"("system_fingerprint":"fp_0ba0d124f1"})";
  }();
  return text;
}

const std::string& Request() {
  static const std::string text = [] {
    std::string system;
    while (system.size() < 900) {
      system += R"(You are a careful assistant for the caf\u00e9's bookings. Answer in one short )"
                R"(paragraph, cite the \"policy\" section you used, and never invent a price.\n)";
    }
    return R"({"model":"gpt-4o-mini","messages":[{"role":"system","content":")" + system +
           R"("},{"role":"user","content":"Can I book a table for 4 on Friday at 8 pm?"}],)"
           R"("tools":[{"type":"function","function":{"name":"book_table","description":)"
           R"("Books a table","parameters":{"type":"object","properties":{"people":)"
           R"({"type":"integer"},"time":{"type":"string"}},"required":["people","time"]}}}],)"
           R"("temperature":0.2,"max_tokens":300,"stream":true,"user":"u-1842"})";
  }();
  return text;
}

// A request with a long prompt: 32 KiB of a document pasted into the user turn, its lines ending
// in escaped line breaks, as most long prompts are.
const std::string& LongRequest() {
  static const std::string text = [] {
    std::string document;
    while (document.size() < 32 * 1024) {
      document += R"(The quarterly report lists revenue by region, the \"north\" first; costs )"
                  R"(follow in the same order.\n)";
    }
    return R"({"model":"gpt-4o-mini","messages":[{"role":"system","content":"Summarize the )"
           R"(document."},{"role":"user","content":")" +
           document + R"("}],"temperature":0.2,"max_tokens":300})";
  }();
  return text;
}

void Validate(benchmark::State& state, const std::string& text) {
  if (!IsValidJson(text)) state.SkipWithError("not valid");
  for (auto _ : state) {
    std::string_view view = text;
    benchmark::DoNotOptimize(view);
    benchmark::DoNotOptimize(IsValidJson(view));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

void ValidateWithMembers(benchmark::State& state, const std::string& text) {
  size_t members = 0;
  for (auto _ : state) {
    std::string_view view = text;
    benchmark::DoNotOptimize(view);
    benchmark::DoNotOptimize(IsValidJson(view, [&](std::string_view key, std::string_view value) {
      members += key.size() + value.size();
    }));
  }
  benchmark::DoNotOptimize(members);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

// The baseline: nlohmann's verdict on the same text.
void Accept(benchmark::State& state, const std::string& text) {
  for (auto _ : state) {
    std::string_view view = text;
    benchmark::DoNotOptimize(view);
    benchmark::DoNotOptimize(Json::accept(view));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

void BM_ChunkNlohmannAccept(benchmark::State& state) { Accept(state, Chunk()); }
void BM_CompletionNlohmannAccept(benchmark::State& state) { Accept(state, Completion()); }
void BM_Chunk(benchmark::State& state) { Validate(state, Chunk()); }
void BM_ChunkMembers(benchmark::State& state) { ValidateWithMembers(state, Chunk()); }
void BM_Completion(benchmark::State& state) { Validate(state, Completion()); }
void BM_CompletionMembers(benchmark::State& state) { ValidateWithMembers(state, Completion()); }
void Parse(benchmark::State& state, const std::string& text) {
  if (!ParseJson(text).has_value()) state.SkipWithError("not valid");
  for (auto _ : state) benchmark::DoNotOptimize(ParseJson(text));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
void NlohmannParse(benchmark::State& state, const std::string& text) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(Json::parse(text, nullptr, /*allow_exceptions=*/false));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
void BM_RequestParse(benchmark::State& state) { Parse(state, Request()); }
void BM_RequestNlohmannParse(benchmark::State& state) { NlohmannParse(state, Request()); }
void BM_LongRequestParse(benchmark::State& state) { Parse(state, LongRequest()); }
void BM_LongRequestNlohmannParse(benchmark::State& state) { NlohmannParse(state, LongRequest()); }
void BM_RequestDump(benchmark::State& state) {
  const Json value = Json::parse(Request());
  for (auto _ : state) benchmark::DoNotOptimize(DumpJson(value));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * Request().size()));
}
void BM_RequestNlohmannDump(benchmark::State& state) {
  const Json value = Json::parse(Request());
  for (auto _ : state) {
    benchmark::DoNotOptimize(value.dump(-1, ' ', false, Json::error_handler_t::replace));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * Request().size()));
}

// Each round sets include_usage to the other boolean, so that every round is an edit.
void BM_RequestRelayReserialized(benchmark::State& state) {
  Json value = Json::parse(Request());
  bool flag = true;
  for (auto _ : state) {
    value["stream_options"] = Json{{"include_usage", flag = !flag}};
    benchmark::DoNotOptimize(DumpJson(value));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * Request().size()));
}
void BM_RequestRelaySpliced(benchmark::State& state) {
  WireJson wire = WireJson::FromParsedText(Request(), Json::parse(Request()));
  bool flag = true;
  for (auto _ : state) {
    wire.SetMember("stream_options", Json{{"include_usage", flag = !flag}});
    benchmark::DoNotOptimize(wire.text().data());
  }
  if (!wire.has_text()) state.SkipWithError("the text was dropped, not edited");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * Request().size()));
}

// The special bytes of 32 KiB of prose, 64 bytes at a time, as a long prompt's string is
// checked: bytes per second of one width of the mask.
template <uint64_t (*kBits)(const char*)>
void SpecialBytesOfProse(benchmark::State& state) {
  std::string prose;
  while (prose.size() < 32 * 1024) prose += "the quick brown fox jumps over the lazy dog. ";
  prose.resize(32 * 1024);
  for (auto _ : state) {
    uint64_t any = 0;
    for (size_t at = 0; at < prose.size(); at += 64) any |= kBits(prose.data() + at);
    benchmark::DoNotOptimize(any);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * prose.size()));
}
void BM_SpecialBitsSse2(benchmark::State& state) {
  SpecialBytesOfProse<bytes::SpecialBitsSse2>(state);
}
void BM_SpecialBitsAvx2(benchmark::State& state) {
  if (!bytes::kCpuHasAvx2) return state.SkipWithError("this processor has no AVX2");
  SpecialBytesOfProse<bytes::SpecialBitsAvx2>(state);
}

BENCHMARK(BM_ChunkNlohmannAccept);
BENCHMARK(BM_CompletionNlohmannAccept);
BENCHMARK(BM_Chunk);
BENCHMARK(BM_ChunkMembers);
BENCHMARK(BM_Completion);
BENCHMARK(BM_CompletionMembers);
BENCHMARK(BM_RequestNlohmannParse);
BENCHMARK(BM_RequestParse);
BENCHMARK(BM_LongRequestNlohmannParse);
BENCHMARK(BM_LongRequestParse);
BENCHMARK(BM_RequestNlohmannDump);
BENCHMARK(BM_RequestDump);
BENCHMARK(BM_RequestRelayReserialized);
BENCHMARK(BM_RequestRelaySpliced);
BENCHMARK(BM_SpecialBitsSse2);
BENCHMARK(BM_SpecialBitsAvx2);

}  // namespace
}  // namespace terse::json

BENCHMARK_MAIN();
