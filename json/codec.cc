// The parser checks the text as it builds its value, with the scanner's own steps (bytes.h;
// the scanner, scan.cc, accepts what nlohmann's parser accepts). The serializer writes what
// nlohmann's writes; a string holding invalid UTF-8, whose replacement rules are nlohmann's own,
// hands the whole value to nlohmann. Both recurse: the parser refuses text nested deeper than
// kMaxJsonDepth, and values terse builds itself are shallow.
#include "json/codec.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string_view>

#include "absl/container/flat_hash_set.h"
#include "json/bytes.h"
#include "json/scan.h"

namespace terse::json {
namespace {

// ---- Parsing: the text is checked as its value is built, one pass over it.

// Puts the members of a parsed object in with Json::parse's rule for a repeated key (its first
// place, its last value), in time linear in the members: the ordered object's own insert walks
// every member to look for the key (see AppendNewMember). Past a few members, an index of their
// places finds a repeat; it hashes the keys where they are kept, so it copies none.
class MemberInserter {
 public:
  explicit MemberInserter(Json::object_t& members)
      : members_(members), index_(0, KeyHash{&members_}, KeyEq{&members_}) {}

  void Insert(std::string key, Json value) {
    if (members_.size() < kIndexFrom) {
      for (auto& member : members_) {
        if (member.first == key) {
          member.second = std::move(value);
          return;
        }
      }
      AppendNewMember(members_, std::move(key), std::move(value));
      if (members_.size() == kIndexFrom) {
        for (size_t i = 0; i < members_.size(); ++i) index_.insert(i);
      }
      return;
    }
    if (auto it = index_.find(std::string_view(key)); it != index_.end()) {
      MemberList(members_)[*it].second = std::move(value);
      return;
    }
    AppendNewMember(members_, std::move(key), std::move(value));
    index_.insert(members_.size() - 1);
  }

 private:
  static constexpr size_t kIndexFrom = 16;

  // The index holds places in `members`; it looks up by place or by key.
  struct KeyHash {
    using is_transparent = void;
    const Json::object_t* members;
    size_t operator()(size_t at) const {
      return (*this)(std::string_view(MemberList(*members)[at].first));
    }
    size_t operator()(std::string_view key) const { return std::hash<std::string_view>()(key); }
  };
  struct KeyEq {
    using is_transparent = void;
    const Json::object_t* members;
    std::string_view Key(size_t at) const { return MemberList(*members)[at].first; }
    bool operator()(size_t a, size_t b) const { return a == b; }
    bool operator()(size_t at, std::string_view key) const { return Key(at) == key; }
    bool operator()(std::string_view key, size_t at) const { return Key(at) == key; }
  };

  Json::object_t& members_;
  absl::flat_hash_set<size_t, KeyHash, KeyEq> index_;
};

class Builder {
 public:
  Builder(const char* p, const char* end) : p_(p), end_(end), special_(p, end) {}

  // The text's one value, with nothing but whitespace around it: false when the text is not
  // JSON or nests deeper than kMaxJsonDepth.
  bool Document(Json& out) {
    if (!Value(out, 0)) return false;
    p_ = bytes::SkipWs(p_, end_);
    return p_ == end_;
  }

 private:
  bool AtToken() { return bytes::AtToken(p_, end_); }

  // The value at the next token, inside `depth` open containers.
  bool Value(Json& out, size_t depth) {
    if (!AtToken()) return false;
    switch (*p_) {
      case '{':
        return Object(out, depth);
      case '[':
        return Array(out, depth);
      case '"':
        out = Json(Json::value_t::string);
        return ReadString(out.get_ref<std::string&>());
      case 't':
        out = true;
        return Word("true");
      case 'f':
        out = false;
        return Word("false");
      case 'n':
        out = nullptr;
        return Word("null");
      default:
        return Number(out);
    }
  }

  bool Word(std::string_view word) {
    p_ = bytes::Word(p_, end_, word);
    return p_ != nullptr;
  }

  // A container that holds something opens one level deeper, which kMaxJsonDepth bounds (an
  // empty one at the limit is still a complete value, as for the scanner).
  bool Object(Json& out, size_t depth) {
    ++p_;
    out = Json(Json::value_t::object);
    if (!AtToken()) return false;
    if (*p_ == '}') {
      ++p_;
      return true;
    }
    if (depth == kMaxJsonDepth) return false;
    MemberInserter members(out.get_ref<Json::object_t&>());
    while (true) {
      if (!AtToken() || *p_ != '"') return false;
      std::string key;
      if (!ReadString(key)) return false;
      if (!AtToken() || *p_ != ':') return false;
      ++p_;
      Json value;
      if (!Value(value, depth + 1)) return false;
      members.Insert(std::move(key), std::move(value));
      if (!AtToken()) return false;
      const char next = *p_++;
      if (next == '}') return true;
      if (next != ',') return false;
    }
  }

  bool Array(Json& out, size_t depth) {
    ++p_;
    out = Json(Json::value_t::array);
    if (!AtToken()) return false;
    if (*p_ == ']') {
      ++p_;
      return true;
    }
    if (depth == kMaxJsonDepth) return false;
    Json::array_t& elements = out.get_ref<Json::array_t&>();
    while (true) {
      if (!Value(elements.emplace_back(), depth + 1)) return false;
      if (!AtToken()) return false;
      const char next = *p_++;
      if (next == ']') return true;
      if (next != ',') return false;
    }
  }

  // Json::parse's types: an integer is unsigned when it is not negative, signed when it is, and a
  // double when it has a fraction or an exponent or does not fit 64 bits.
  bool Number(Json& out) {
    const char* const start = p_;
    p_ = bytes::Number(p_, end_);
    if (p_ == nullptr) return false;
    const bool integral =
        std::find_if(start, p_, [](char c) { return c == '.' || c == 'e' || c == 'E'; }) == p_;
    if (integral) {
      if (*start == '-') {
        int64_t v = 0;
        if (std::from_chars(start, p_, v).ec == std::errc()) {
          out = v;
          return true;
        }
      } else {
        uint64_t v = 0;
        if (std::from_chars(start, p_, v).ec == std::errc()) {
          out = v;
          return true;
        }
      }
    }
    double d = 0;
    if (std::from_chars(start, p_, d).ec != std::errc()) {
      // Out of range: bytes::Number let only an underflow through, which strtod rounds as
      // the parser does (to zero or a subnormal).
      d = std::strtod(std::string(start, p_).c_str(), nullptr);
    }
    out = d;
    return true;
  }

  static void AppendUtf8(uint32_t cp, std::string& out) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | cp >> 6);
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | cp >> 12);
      out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | cp >> 18);
      out += static_cast<char>(0x80 | (cp >> 12 & 0x3F));
      out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // The checked escape at `p` (a backslash), decoded, appended to `out`.
  static void AppendEscape(const char* p, std::string& out) {
    switch (p[1]) {
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        uint32_t cp = bytes::Hex4(p + 2, p + 6);
        if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate: its low half follows
          cp = 0x10000 + ((cp - 0xD800) << 10) + (bytes::Hex4(p + 8, p + 12) - 0xDC00);
        }
        AppendUtf8(cp, out);
        break;
      }
      default:  // '"', '\\', '/'
        out += p[1];
        break;
    }
  }

  // Where the string that `p` is in ends, at most `end_`: its closing quote, found without the
  // checks ReadString makes on the way (from a backslash: the escape is skipped).
  const char* Close(const char* p) const {
    bytes::SpecialBytes special(p, end_);
    while (true) {
      p = special.Next(p);
      if (p == end_ || *p == '"') return p;
      p += *p == '\\' ? 2 : 1;
      if (p >= end_) return end_;
    }
  }

  // The string at the opening quote `p_`, checked and decoded, appended to `out`. Bytes go over
  // in runs: from one escape to the next, or to the closing quote (a long prompt's text in one
  // piece).
  bool ReadString(std::string& out) {
    const char* p = p_ + 1;
    const char* run = p;  // the first byte not appended yet
    while (true) {
      // The bits are exact: `c` is '"', '\\', a control character or starts a non-ASCII one.
      p = special_.Next(p);
      if (p == end_) return false;
      const unsigned char c = static_cast<unsigned char>(*p);
      if (c == '"') {
        out.append(run, static_cast<size_t>(p - run));
        p_ = p + 1;
        return true;
      }
      if (c == '\\') {
        const char* const escape_end = bytes::Escape(p, end_);
        if (escape_end == nullptr) return false;
        // The string is copied in more than one run: room for all of it at once (decoding only
        // shortens it), or a long prompt's text would be copied again at each doubling.
        if (run == p_ + 1) out.reserve(out.size() + static_cast<size_t>(Close(p) - run));
        out.append(run, static_cast<size_t>(p - run));
        AppendEscape(p, out);
        p = run = escape_end;
      } else if (c < 0x20) {
        return false;
      } else {
        p = bytes::Utf8(p, end_);
        if (p == nullptr) return false;
      }
    }
  }

  const char* p_;  // null once a check failed
  const char* const end_;
  bytes::SpecialBytes special_;  // asked only for positions past all it was asked before
};

// ---- Serializing.

// False when `s` holds invalid UTF-8 (`out` then holds part of it).
bool AppendString(const std::string& s, std::string& out) {
  const char* p = s.data();
  const char* const end = p + s.size();
  bytes::SpecialBytes special(p, end);
  out += '"';
  while (p != end) {
    // Printable ASCII other than '"' and '\\' goes as it is.
    const char* plain_end = special.Next(p);
    out.append(p, static_cast<size_t>(plain_end - p));
    p = plain_end;
    if (p == end) break;
    const unsigned char c = static_cast<unsigned char>(*p);
    if (c >= 0x80) {
      const char* next = bytes::Utf8(p, end);
      if (next == nullptr) return false;
      out.append(p, static_cast<size_t>(next - p));
      p = next;
      continue;
    }
    ++p;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {  // the other control characters, as \u00xx with lower-case digits
        constexpr char kHex[] = "0123456789abcdef";
        const char escaped[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out.append(escaped, sizeof escaped);
        break;
      }
    }
  }
  out += '"';
  return true;
}

// False when the value holds what only nlohmann writes: invalid UTF-8, binary, discarded.
bool Append(const Json& value, std::string& out) {
  switch (value.type()) {
    case Json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, member] : value.get_ref<const Json::object_t&>()) {
        if (!first) out += ',';
        first = false;
        if (!AppendString(key, out)) return false;
        out += ':';
        if (!Append(member, out)) return false;
      }
      out += '}';
      return true;
    }
    case Json::value_t::array: {
      out += '[';
      bool first = true;
      for (const Json& element : value.get_ref<const Json::array_t&>()) {
        if (!first) out += ',';
        first = false;
        if (!Append(element, out)) return false;
      }
      out += ']';
      return true;
    }
    case Json::value_t::string:
      return AppendString(value.get_ref<const std::string&>(), out);
    case Json::value_t::boolean:
      out += value.get<bool>() ? "true" : "false";
      return true;
    case Json::value_t::null:
      out += "null";
      return true;
    case Json::value_t::number_integer: {
      char buffer[24];
      const char* end = std::to_chars(buffer, buffer + sizeof buffer, value.get<int64_t>()).ptr;
      out.append(buffer, static_cast<size_t>(end - buffer));
      return true;
    }
    case Json::value_t::number_unsigned: {
      char buffer[24];
      const char* end = std::to_chars(buffer, buffer + sizeof buffer, value.get<uint64_t>()).ptr;
      out.append(buffer, static_cast<size_t>(end - buffer));
      return true;
    }
    case Json::value_t::number_float: {
      const double d = value.get<double>();
      if (!std::isfinite(d)) {
        out += "null";
        return true;
      }
      // nlohmann's own shortest round-trip digits and layout (1.0, 1e+20, -0.0).
      char buffer[64];
      const char* end = nlohmann::detail::to_chars(buffer, buffer + sizeof buffer, d);
      out.append(buffer, static_cast<size_t>(end - buffer));
      return true;
    }
    default:
      return false;
  }
}

}  // namespace

std::optional<Json> ParseJson(std::string_view text) {
  const char* p = text.data();
  const char* const end = p + text.size();
  if (p != end && static_cast<unsigned char>(*p) == 0xEF) {  // a byte order mark, skipped
    if (text.size() < 3 || static_cast<unsigned char>(p[1]) != 0xBB ||
        static_cast<unsigned char>(p[2]) != 0xBF) {
      return std::nullopt;
    }
    p += 3;
  }
  Json value;
  if (!Builder(p, end).Document(value)) return std::nullopt;
  return value;
}

void AppendJson(const Json& value, std::string& out) {
  const size_t size = out.size();
  if (Append(value, out)) return;
  out.resize(size);
  out += value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string DumpJson(const Json& value) {
  std::string out;
  out.reserve(256);  // a small body at once; a larger one grows from there
  AppendJson(value, out);
  return out;
}

}  // namespace terse::json
