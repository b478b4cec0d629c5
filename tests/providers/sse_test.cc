// The SSE parser against the ways real streams arrive: split anywhere, CRLF, comments, multi-line.
#include "providers/sse.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace terse::providers {
namespace {

std::vector<SseEvent> FeedAll(SseParser& parser, const std::vector<std::string>& pieces) {
  std::vector<SseEvent> all;  // each piece's events appended
  for (const std::string& piece : pieces) {
    absl::Status s = parser.Feed(piece, all);
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok()) break;
  }
  return all;
}

TEST(SseParserTest, ParsesEventsWithTypesDataAndIds) {
  SseParser parser;
  auto events =
      FeedAll(parser, {"event: message_start\ndata: {\"a\":1}\nid: 7\n\ndata: [DONE]\n\n"});
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].event, "message_start");
  EXPECT_EQ(events[0].data, "{\"a\":1}");
  EXPECT_EQ(events[0].id, "7");
  EXPECT_EQ(events[1].event, "");
  EXPECT_EQ(events[1].data, "[DONE]");
}

TEST(SseParserTest, EventsSplitAtEveryByteGiveTheSameResult) {
  const std::string stream =
      ": keep-alive\r\n\r\nevent: delta\r\ndata: first line\r\ndata: second\r\n\r\n"
      "data:no-space\rdata:  two spaces\r\rdata: lf\n\n";
  SseParser whole;
  auto expected = FeedAll(whole, {stream});
  ASSERT_EQ(expected.size(), 3u);
  EXPECT_EQ(expected[0].event, "delta");
  EXPECT_EQ(expected[0].data, "first line\nsecond");
  EXPECT_EQ(expected[1].data, "no-space\n two spaces");
  EXPECT_EQ(expected[2].data, "lf");
  // Whether data lines were joined, which tells a relay that the data holds a line break.
  EXPECT_TRUE(expected[0].joined);
  EXPECT_TRUE(expected[1].joined);
  EXPECT_FALSE(expected[2].joined);

  // Two pieces, cut at every place.
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    SseParser two;
    auto events = FeedAll(two, {stream.substr(0, cut), stream.substr(cut)});
    ASSERT_EQ(events.size(), expected.size()) << "cut at " << cut;
    for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].data, expected[i].data);
  }

  std::vector<std::string> bytes;
  for (char c : stream) bytes.emplace_back(1, c);
  SseParser split;
  auto events = FeedAll(split, bytes);
  ASSERT_EQ(events.size(), expected.size());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].event, expected[i].event);
    EXPECT_EQ(events[i].data, expected[i].data);
    EXPECT_EQ(events[i].joined, expected[i].joined);
  }
}

TEST(SseParserTest, CrAndLfInDifferentReadsAreOneLineEnd) {
  SseParser parser;
  auto events = FeedAll(parser, {"data: a\r", "\n", "\r", "\ndata: b\r\n\r\n"});
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].data, "a");
  EXPECT_EQ(events[1].data, "b");
}

TEST(SseParserTest, CommentsAndEventsWithoutDataAreNotDispatched) {
  SseParser parser;
  auto events = FeedAll(parser, {": ping\n\nevent: ping\n\nretry: 10\n\n"});
  EXPECT_TRUE(events.empty());
}

TEST(SseParserTest, FinishRecoversALastEventWithoutItsBlankLine) {
  SseParser parser;
  auto events = FeedAll(parser, {"data: x\n\ndata: [DONE]"});
  ASSERT_EQ(events.size(), 1u);
  auto last = parser.Finish();
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].data, "[DONE]");
  EXPECT_TRUE(parser.Finish().empty());
}

TEST(SseParserTest, RejectsAnEventBeyondTheLimit) {
  SseParser parser(/*max_event_bytes=*/100);
  std::vector<SseEvent> events;
  EXPECT_TRUE(parser.Feed("data: " + std::string(50, 'x') + "\n", events).ok());
  EXPECT_EQ(parser.Feed("data: " + std::string(80, 'y'), events).code(),
            absl::StatusCode::kResourceExhausted);
}

// The verdict on an event near the limit is the same whether its bytes come in one read or in
// many: an event that arrives whole is checked as one that arrives a byte at a time.
TEST(SseParserTest, TheLimitHoldsHoweverTheBytesAreSplit) {
  constexpr size_t kLimit = 100;
  const std::string at_limit = "data: " + std::string(60, 'a') + "\ndata:" + std::string(39, 'b');
  const std::string over_limit = at_limit + "b";
  const std::string long_comment = ":" + std::string(kLimit, 'c');
  struct Case {
    std::string stream;
    bool ok;
  };
  const Case cases[] = {
      {at_limit + "\n\n", true},     // 60 + '\n' + 39: exactly the limit
      {over_limit + "\n\n", false},  // one byte more
      {over_limit, false},           // ... also when the stream ends without the blank line
      {long_comment + "\n", false},  // a line longer than the limit, whatever its field
      {"data: x\n" + long_comment + "\n\n", false},
      {"event: e\n" + at_limit + "\n\n", true},  // other fields do not count
  };
  for (const Case& c : cases) {
    for (size_t piece : {c.stream.size(), size_t{1}, size_t{7}}) {
      SseParser parser(kLimit);
      std::vector<SseEvent> events;
      bool ok = true;
      for (size_t at = 0; at < c.stream.size() && ok; at += piece) {
        ok = parser.Feed(c.stream.substr(at, piece), events).ok();
      }
      if (ok) {
        std::vector<SseEvent> last = parser.Finish();
        ok = events.size() + last.size() == 1;
      }
      EXPECT_EQ(ok, c.ok) << "pieces of " << piece << ": " << c.stream.substr(0, 20);
    }
  }
}

}  // namespace
}  // namespace terse::providers
