#include "base/utf8.h"

#include <string>
#include <string_view>

#include "gtest/gtest.h"

namespace terse {
namespace {

TEST(Utf8SequenceAtTest, WellFormedSequencesHaveTheirLength) {
  EXPECT_EQ(Utf8SequenceAt("a", 0), 1);
  EXPECT_EQ(Utf8SequenceAt("\xC3\xA9", 0), 2);          // é
  EXPECT_EQ(Utf8SequenceAt("\xE2\x82\xAC", 0), 3);      // €
  EXPECT_EQ(Utf8SequenceAt("\xF0\x9F\x93\x88", 0), 4);  // U+1F4C8
  EXPECT_EQ(Utf8SequenceAt("\xF4\x8F\xBF\xBF", 0), 4);  // U+10FFFF, the last code point
}

// Minus the maximal ill-formed subpart, as Unicode's table 3-7 and the W3C repair count it.
TEST(Utf8SequenceAtTest, IllFormedSequencesReportTheirMaximalSubpart) {
  EXPECT_EQ(Utf8SequenceAt("\x80", 0), -1);              // a lone continuation byte
  EXPECT_EQ(Utf8SequenceAt("\xC0\xAF", 0), -1);          // overlong lead
  EXPECT_EQ(Utf8SequenceAt("\xE0\x80\x80", 0), -1);      // overlong: E0 needs A0..BF next
  EXPECT_EQ(Utf8SequenceAt("\xED\xA0\x80", 0), -1);      // a surrogate
  EXPECT_EQ(Utf8SequenceAt("\xF4\x90\x80\x80", 0), -1);  // above U+10FFFF
  EXPECT_EQ(Utf8SequenceAt("\xF5", 0), -1);
  EXPECT_EQ(Utf8SequenceAt("\xE2\x82", 0), -2);          // truncated at the end
  EXPECT_EQ(Utf8SequenceAt("\xE2\x82x", 0), -2);         // cut by an ASCII byte
  EXPECT_EQ(Utf8SequenceAt("\xF0\x9F\x93", 0), -3);
  const std::string_view mid = "a\xC3\xA9z";
  EXPECT_EQ(Utf8SequenceAt(mid, 1), 2);
  EXPECT_EQ(Utf8SequenceAt(mid, 2), -1);  // inside a sequence: a continuation byte
}

}  // namespace
}  // namespace terse
