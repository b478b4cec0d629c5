// The HTTP/1.1 response reader against the ways real responses arrive: every framing, split
// anywhere, informational heads, keep-alive rules, malformed and truncated responses.
#include "providers/http1_response.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace terse::providers {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// Every malformed or cut-short response is an UpstreamFailed.
const absl::StatusCode kUpstream = UpstreamFailed("").code();

// Records the head and the body; told to, stops the reader after `accept_calls` OnBody calls.
// What the reader told it (the reader never completes: OnComplete stays unused).
class Recorder : public HttpHandler {
 public:
  void OnHead(const HttpResponseHead& h) override {
    ++heads;
    head = h;
  }
  bool OnBody(std::string_view bytes) override {
    EXPECT_FALSE(bytes.empty());
    if (accept_calls >= 0 && body_calls >= accept_calls) return false;
    ++body_calls;
    body.append(bytes);
    return true;
  }
  void OnComplete(absl::Status) override {}
  int heads = 0;
  HttpResponseHead head;
  std::string body;
  int body_calls = 0;
  int accept_calls = -1;  // >= 0: OnBody returns false once this many calls were accepted
};

// Feeds `pieces` one after another; the total consumed.
size_t FeedAll(Http1ResponseReader& reader, Recorder& rec, const std::vector<std::string>& pieces) {
  size_t consumed = 0;
  for (const std::string& piece : pieces) {
    absl::StatusOr<size_t> n = reader.Feed(piece, rec);
    EXPECT_THAT(n, IsOk());
    if (!n.ok()) break;
    consumed += *n;
  }
  return consumed;
}

// Begins a response, feeds `text` whole and expects it all taken; the recorder.
Recorder ReadWhole(Http1ResponseReader& reader, const std::string& text, bool no_body = false) {
  reader.Begin(no_body);
  Recorder rec;
  EXPECT_EQ(FeedAll(reader, rec, {text}), text.size());
  return rec;
}

// The status of feeding `text` whole to a fresh reader.
absl::Status FeedStatus(const std::string& text) {
  Http1ResponseReader reader;
  reader.Begin();
  Recorder rec;
  return reader.Feed(text, rec).status();
}

TEST(Http1ResponseReaderTest, ContentLengthBodyEndsTheResponse) {
  Http1ResponseReader reader;
  Recorder rec = ReadWhole(reader, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(rec.heads, 1);
  EXPECT_EQ(rec.head.status, 200);
  EXPECT_EQ(rec.body, "hello");
  EXPECT_TRUE(reader.started() && reader.head_done() && reader.done() && reader.keep_alive());
  EXPECT_FALSE(reader.aborted());
}

TEST(Http1ResponseReaderTest, ZeroContentLengthEndsAtTheHead) {
  Http1ResponseReader reader;
  Recorder rec = ReadWhole(reader, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(rec.heads, 1);
  EXPECT_EQ(rec.body_calls, 0);
  EXPECT_TRUE(reader.done() && reader.keep_alive());
}

TEST(Http1ResponseReaderTest, ContentLengthBodyArrivesOverSeveralFeeds) {
  Http1ResponseReader reader;
  reader.Begin();
  Recorder rec;
  EXPECT_EQ(FeedAll(reader, rec, {"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhel"}), 42u);
  EXPECT_TRUE(reader.head_done());
  EXPECT_FALSE(reader.done());
  EXPECT_EQ(FeedAll(reader, rec, {"lo ", "wor", "ld"}), 8u);
  EXPECT_EQ(rec.body, "hello world");
  EXPECT_TRUE(reader.done());
}

TEST(Http1ResponseReaderTest, BytesAfterTheEndAreNotConsumed) {
  const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
  Http1ResponseReader reader;
  reader.Begin();
  Recorder rec;
  EXPECT_EQ(FeedAll(reader, rec, {response + "HTTP/1.1 204"}), response.size());
  EXPECT_TRUE(reader.done());
  EXPECT_EQ(FeedAll(reader, rec, {"more"}), 0u);  // once done, nothing more is taken
  EXPECT_EQ(rec.body, "hi");
}

TEST(Http1ResponseReaderTest, ChunkedBodyIsDeliveredWithoutItsFraming) {
  const std::string response =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;ext=1\r\nhello\r\n"
      "a\r\n, chunked \r\n"
      "C ; name=\"v\"\r\nworld, more!\r\n"
      "0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n";
  Http1ResponseReader reader;
  reader.Begin();
  Recorder rec;
  EXPECT_EQ(FeedAll(reader, rec, {response + "next"}), response.size());
  EXPECT_EQ(rec.body, "hello, chunked world, more!");
  EXPECT_EQ(rec.body_calls, 3);
  EXPECT_TRUE(reader.done() && reader.keep_alive());
}

TEST(Http1ResponseReaderTest, ChunkedBodyTakesBareLfLineEnds) {
  Http1ResponseReader reader;
  Recorder rec = ReadWhole(reader, "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n1F\n" +
                                       std::string(31, 'x') + "\n0\nTrailer: t\n\n");
  EXPECT_EQ(rec.head.status, 200);
  EXPECT_EQ(rec.body, "abc" + std::string(31, 'x'));
  EXPECT_TRUE(reader.done());
}

// Everything a response read from `pieces` gave: consumed, done, head and body.
std::string Outcome(const std::vector<std::string>& pieces) {
  Http1ResponseReader reader;
  reader.Begin();
  Recorder rec;
  const size_t consumed = FeedAll(reader, rec, pieces);
  std::string out = absl::StrCat(consumed, " done=", reader.done(), " heads=", rec.heads,
                                 " status=", rec.head.status);
  for (const auto& [name, value] : rec.head.headers) absl::StrAppend(&out, " ", name, "=", value);
  return absl::StrCat(out, " body=", rec.body);
}

// Feeds `response` whole, in two pieces cut at every place, and byte by byte: all must agree.
void ExpectEverySplitAgrees(const std::string& response, const std::string& body) {
  const std::string expected = Outcome({response});
  ASSERT_THAT(expected, HasSubstr(" done=1 heads=1 "));
  ASSERT_THAT(expected, ::testing::EndsWith(" body=" + body));
  for (size_t cut = 0; cut <= response.size(); ++cut) {
    EXPECT_EQ(Outcome({response.substr(0, cut), response.substr(cut)}), expected) << "cut " << cut;
  }
  std::vector<std::string> bytes;
  for (char c : response) bytes.emplace_back(1, c);
  EXPECT_EQ(Outcome(bytes), expected);
}

TEST(Http1ResponseReaderTest, ChunkedResponseSplitAnywhereReadsTheSame) {
  ExpectEverySplitAgrees(
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
      "7;x=y\r\ndata: a\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n",
      "data: a0123456789abcdef");
}

TEST(Http1ResponseReaderTest, ContentLengthResponseSplitAnywhereReadsTheSame) {
  ExpectEverySplitAgrees("HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-A: b\r\n\r\n{\"ok\":true}\n",
                         "{\"ok\":true}\n");
}

TEST(Http1ResponseReaderTest, InformationalHeadsAreSkipped) {
  Http1ResponseReader reader;
  Recorder rec = ReadWhole(reader,
                           "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n"
                           "\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  EXPECT_EQ(rec.heads, 1);
  EXPECT_EQ(rec.head.status, 200);
  EXPECT_THAT(rec.head.headers, ElementsAre(Pair("content-length", "2")));
  EXPECT_EQ(rec.body, "ok");
}

TEST(Http1ResponseReaderTest, SwitchingProtocolsIsAnError) {
  EXPECT_THAT(FeedStatus("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
              StatusIs(kUpstream));
}

TEST(Http1ResponseReaderTest, ChunkedWinsOverContentLength) {
  Http1ResponseReader reader;
  Recorder rec = ReadWhole(reader,
                           "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n"
                           "\r\n4\r\nabcd\r\n0\r\n\r\n");
  EXPECT_EQ(rec.body, "abcd");
  EXPECT_TRUE(reader.done());
}

TEST(Http1ResponseReaderTest, WithoutLengthTheBodyRunsToTheClose) {
  Http1ResponseReader reader;
  Recorder rec = ReadWhole(reader, "HTTP/1.1 200 OK\r\n\r\nsome");
  EXPECT_EQ(FeedAll(reader, rec, {" more"}), 5u);
  EXPECT_FALSE(reader.done());
  EXPECT_THAT(reader.OnEndOfStream(), IsOk());
  EXPECT_TRUE(reader.done() && !reader.keep_alive());
  EXPECT_EQ(rec.body, "some more");
}

TEST(Http1ResponseReaderTest, ContentLengthMustBeOneNumber) {
  Http1ResponseReader reader;
  Recorder rec =
      ReadWhole(reader, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length:  3 \r\n\r\nabc");
  EXPECT_EQ(rec.body, "abc");
  EXPECT_TRUE(reader.done());
  EXPECT_THAT(FeedStatus("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
              StatusIs(kUpstream));
  for (const char* bad : {"abc", "12x", "-1", "+5", "", "1 2", "0x10"}) {
    EXPECT_THAT(FeedStatus(std::string("HTTP/1.1 200 OK\r\nContent-Length: ") + bad + "\r\n\r\n"),
                StatusIs(kUpstream))
        << "content-length: " << bad;
  }
}

bool KeepAliveOf(const std::string& head) {
  Http1ResponseReader reader;
  ReadWhole(reader, head + "Content-Length: 0\r\n\r\n");
  EXPECT_TRUE(reader.done()) << head;
  return reader.keep_alive();
}

TEST(Http1ResponseReaderTest, Http11KeepsAliveUnlessConnectionClose) {
  EXPECT_TRUE(KeepAliveOf("HTTP/1.1 200 OK\r\n"));
  EXPECT_TRUE(KeepAliveOf("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n"));
  EXPECT_FALSE(KeepAliveOf("HTTP/1.1 200 OK\r\nConnection: close\r\n"));
  EXPECT_FALSE(KeepAliveOf("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\n"));
  EXPECT_FALSE(KeepAliveOf("HTTP/1.1 200 OK\r\nconnection: Upgrade,CLOSE \r\n"));
  EXPECT_TRUE(KeepAliveOf("HTTP/1.1 200 OK\r\nConnection: closed\r\n"));
}

TEST(Http1ResponseReaderTest, Http10ClosesUnlessKeepAlive) {
  EXPECT_FALSE(KeepAliveOf("HTTP/1.0 200 OK\r\n"));
  EXPECT_TRUE(KeepAliveOf("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"));
  EXPECT_TRUE(KeepAliveOf("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n"));
}

// RFC 9112 9.3: a `close` option ends the connection whatever the version and other options.
TEST(Http1ResponseReaderTest, CloseWinsOverKeepAliveInHttp10) {
  EXPECT_FALSE(KeepAliveOf("HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n"));
  EXPECT_FALSE(KeepAliveOf("HTTP/1.0 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\n"));
}

TEST(Http1ResponseReaderTest, NoBodyStatusesAndHeadRequestsEndAtTheHead) {
  for (const char* status : {"204 No Content", "304 Not Modified", "200 OK"}) {
    const std::string head = std::string("HTTP/1.1 ") + status + "\r\nContent-Length: 5\r\n\r\n";
    Http1ResponseReader reader;
    reader.Begin(/*no_body=*/std::string(status) == "200 OK");
    Recorder rec;
    EXPECT_EQ(FeedAll(reader, rec, {head + "HTTP/1.1"}), head.size()) << status;
    EXPECT_EQ(rec.heads, 1) << status;
    EXPECT_EQ(rec.body_calls, 0) << status;
    EXPECT_TRUE(reader.done() && reader.keep_alive()) << status;
  }
}

TEST(Http1ResponseReaderTest, HeadersAreLowerCasedTrimmedAndInOrder) {
  Http1ResponseReader reader;
  Recorder rec = ReadWhole(reader,
                           "HTTP/1.0 404 Not Found\r\nX-B:  two words \r\nContent-Type:text/plain"
                           "\r\nx-b:\t3\r\nEmpty:\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(rec.head.status, 404);
  EXPECT_EQ(rec.head.http_version, 10);
  EXPECT_THAT(rec.head.headers,
              ElementsAre(Pair("x-b", "two words"), Pair("content-type", "text/plain"),
                          Pair("x-b", "3"), Pair("empty", ""), Pair("content-length", "0")));
}

TEST(Http1ResponseReaderTest, ReasonPhraseIsOptional) {
  for (const char* line : {"HTTP/1.1 429\r\n", "HTTP/1.1 429 \r\n", "HTTP/1.1 429 Too Many\n"}) {
    Http1ResponseReader reader;
    Recorder rec = ReadWhole(reader, std::string(line) + "Content-Length: 0\r\n\r\n");
    EXPECT_EQ(rec.head.status, 429) << line;
    EXPECT_EQ(rec.head.http_version, 11) << line;
  }
}

TEST(Http1ResponseReaderTest, MalformedHeadsAreUpstreamFailures) {
  for (const char* head :
       {"HTTP/1.1\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 20x OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n", "HTTP/1.1200 OK\r\n\r\n", "HTTPS/1.1 200 OK\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n", "HTTP/2.0 200 OK\r\n\r\n", "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.2 200 OK\r\n\r\n", "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: no name\r\n\r\n", "HTTP/1.1 200 OK\r\nX-A: one\r\n  folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: one\r\n\tfolded\r\n\r\n"}) {
    EXPECT_THAT(FeedStatus(head), StatusIs(kUpstream, HasSubstr("malformed"))) << head;
  }
}

constexpr size_t kMaxHead = Http1ResponseReader::kMaxHeadBytes;

std::string HeadOfSize(size_t size) {
  const std::string start = "HTTP/1.1 200 OK\r\nX-Big: ", end = "\r\nContent-Length: 0\r\n\r\n";
  return start + std::string(size - start.size() - end.size(), 'a') + end;
}

// Begins a response and feeds `text` 100 bytes at a time up to an error; that error, or OK.
absl::Status FeedInPieces(Http1ResponseReader& reader, Recorder& rec, const std::string& text) {
  reader.Begin();
  for (size_t at = 0; at < text.size(); at += 100) {
    absl::StatusOr<size_t> n = reader.Feed(text.substr(at, 100), rec);
    if (!n.ok()) return n.status();
  }
  return absl::OkStatus();
}

TEST(Http1ResponseReaderTest, HeadUpToTheLimitIsTakenWholeOrInPieces) {
  const std::string head = HeadOfSize(kMaxHead);
  Http1ResponseReader reader;
  EXPECT_EQ(ReadWhole(reader, head).heads, 1);
  Recorder rec;
  EXPECT_THAT(FeedInPieces(reader, rec, head), IsOk());
  EXPECT_EQ(rec.heads, 1);
  EXPECT_TRUE(reader.done());
}

TEST(Http1ResponseReaderTest, HeadOverTheLimitIsRefusedWholeOrInPieces) {
  const auto too_large = StatusIs(kUpstream, HasSubstr("too large"));
  for (const std::string& text : {HeadOfSize(kMaxHead + 1), std::string(kMaxHead + 1, 'a')}) {
    EXPECT_THAT(FeedStatus(text), too_large);
    Http1ResponseReader reader;
    Recorder rec;
    EXPECT_THAT(FeedInPieces(reader, rec, text), too_large);
    EXPECT_EQ(rec.heads, 0);
  }
}

TEST(Http1ResponseReaderTest, BadChunkSizesAreUpstreamFailures) {
  for (const char* size : {"", "zz", "0x5", "-1", "5 5", "1ffffffffffffffff", ";ext"}) {
    EXPECT_THAT(FeedStatus(std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") +
                           size + "\r\nabcde\r\n0\r\n\r\n"),
                StatusIs(kUpstream, HasSubstr("chunk size")))
        << "size line: " << size;
  }
}

TEST(Http1ResponseReaderTest, ChunkDataLongerThanItsSizeIsAnError) {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_THAT(FeedStatus(head + "3\r\nabcdef\r\n0\r\n\r\n"),
              StatusIs(kUpstream, HasSubstr("longer than its size")));
  Http1ResponseReader reader;  // the same, cut right after the chunk's data
  reader.Begin();
  Recorder rec;
  ASSERT_THAT(reader.Feed(head + "3\r\nabc", rec), IsOk());
  EXPECT_THAT(reader.Feed("def\r\n0\r\n\r\n", rec), StatusIs(kUpstream));
  EXPECT_EQ(rec.body, "abc");
}

TEST(Http1ResponseReaderTest, EndOfStreamBeforeTheEndIsAnError) {
  Http1ResponseReader reader;
  reader.Begin();
  EXPECT_THAT(reader.OnEndOfStream(), StatusIs(kUpstream, HasSubstr("without answering")));
  for (const char* cut :
       {"HTTP/1.1 200 OK\r\nContent-", "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"}) {
    Recorder rec;
    reader.Begin();
    ASSERT_EQ(FeedAll(reader, rec, {cut}), std::string(cut).size());
    EXPECT_THAT(
        reader.OnEndOfStream(),
        StatusIs(kUpstream, HasSubstr(rec.heads == 0 ? "within the response head" : "body")))
        << cut;
  }
}

TEST(Http1ResponseReaderTest, EndOfStreamAfterTheEndIsFine) {
  Http1ResponseReader reader;
  EXPECT_THAT(reader.OnEndOfStream(), IsOk());  // nothing expected
  ReadWhole(reader, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");
  EXPECT_THAT(reader.OnEndOfStream(), IsOk());
  EXPECT_TRUE(reader.done());
}

TEST(Http1ResponseReaderTest, AHandlerReturningFalseStopsTheReader) {
  const std::string response =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n1\r\nb\r\n0\r\n\r\n";
  Http1ResponseReader reader;
  reader.Begin();
  Recorder rec;
  rec.accept_calls = 1;
  const size_t n = FeedAll(reader, rec, {response});
  EXPECT_LT(n, response.size());
  EXPECT_TRUE(reader.aborted());
  EXPECT_FALSE(reader.done());
  EXPECT_EQ(rec.body, "a");
  EXPECT_EQ(FeedAll(reader, rec, {response.substr(n)}), 0u);  // stopped for good
  EXPECT_EQ(rec.body, "a");

  Recorder until_close;
  until_close.accept_calls = 0;
  reader.Begin();
  FeedAll(reader, until_close, {"HTTP/1.1 200 OK\r\n\r\nbody"});
  EXPECT_TRUE(reader.aborted());
  EXPECT_EQ(until_close.body, "");
}

TEST(Http1ResponseReaderTest, BeginAgainReadsTheNextResponseOnTheSameConnection) {
  const std::string first = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none";
  const std::string second =
      "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n";
  Http1ResponseReader reader;
  reader.Begin();
  Recorder rec1, rec2;
  ASSERT_EQ(FeedAll(reader, rec1, {first + second}), first.size());
  EXPECT_TRUE(reader.done() && reader.keep_alive());
  EXPECT_EQ(rec1.body, "one");
  reader.Begin();
  EXPECT_FALSE(reader.started() || reader.done());
  EXPECT_EQ(FeedAll(reader, rec2, {second}), second.size());
  EXPECT_EQ(rec2.head.status, 201);
  EXPECT_EQ(rec2.body, "two");
  EXPECT_TRUE(reader.done());
}

}  // namespace
}  // namespace terse::providers
