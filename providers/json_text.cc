// The text is checked by the scanner first (json_scan.cc, which accepts what nlohmann's parser
// accepts), so the builder here trusts its grammar: it only decodes. The serializer writes what
// nlohmann's writes; a string holding invalid UTF-8, whose replacement rules are nlohmann's own,
// hands the whole value to nlohmann. Both find the ends of strings with the scanner's own byte
// steps (json_bytes.h). Both recurse: the scanner bounds the depth of what is parsed, and values
// terse builds itself are shallow.
#include "providers/json_text.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "providers/json_bytes.h"
#include "providers/json_scan.h"

namespace terse::providers {
namespace {

// ---- Parsing text that the scanner accepted.

class Builder {
 public:
  Builder(const char* p, const char* end) : p_(p), end_(end), special_(p, end) {}

  Json Value() {
    SkipWs();
    switch (*p_) {
      case '{':
        return Object();
      case '[':
        return Array();
      case '"': {
        Json s(Json::value_t::string);
        ReadString(s.get_ref<std::string&>());
        return s;
      }
      case 't':
        p_ += 4;
        return Json(true);
      case 'f':
        p_ += 5;
        return Json(false);
      case 'n':
        p_ += 4;
        return Json(nullptr);
      default:
        return Number();
    }
  }

 private:
  void SkipWs() { p_ = json_bytes::SkipWs(p_, end_); }

  Json Object() {
    ++p_;
    Json object(Json::value_t::object);
    Json::object_t& members = object.get_ref<Json::object_t&>();
    SkipWs();
    if (*p_ == '}') {
      ++p_;
      return object;
    }
    while (true) {
      SkipWs();
      std::string key;
      ReadString(key);
      SkipWs();
      ++p_;  // ':'
      Json value = Value();
      // Json::parse's rule for a repeated key: its first place, its last value.
      auto [at, inserted] = members.emplace(std::move(key), std::move(value));
      if (!inserted) at->second = std::move(value);
      SkipWs();
      if (*p_++ == '}') return object;  // else ','
    }
  }

  Json Array() {
    ++p_;
    Json array(Json::value_t::array);
    Json::array_t& elements = array.get_ref<Json::array_t&>();
    SkipWs();
    if (*p_ == ']') {
      ++p_;
      return array;
    }
    while (true) {
      elements.push_back(Value());
      SkipWs();
      if (*p_++ == ']') return array;  // else ','
    }
  }

  // Json::parse's types: an integer is unsigned when it is not negative, signed when it is, and a
  // double when it has a fraction or an exponent or does not fit 64 bits.
  Json Number() {
    const char* start = p_;
    const bool negative = *p_ == '-';
    bool integral = true;
    ++p_;
    while (p_ != end_) {
      const char c = *p_;
      if (c >= '0' && c <= '9') {
        ++p_;
      } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        integral = false;
        ++p_;
      } else {
        break;
      }
    }
    if (integral) {
      if (negative) {
        int64_t v = 0;
        if (std::from_chars(start, p_, v).ec == std::errc()) return Json(v);
      } else {
        uint64_t v = 0;
        if (std::from_chars(start, p_, v).ec == std::errc()) return Json(v);
      }
    }
    double d = 0;
    if (std::from_chars(start, p_, d).ec != std::errc()) {
      // Out of range: the scanner let only an underflow through, which strtod rounds as the
      // parser does (to zero or a subnormal).
      d = std::strtod(std::string(start, p_).c_str(), nullptr);
    }
    return Json(d);
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

  // The closing quote of the string whose bytes start at `p` (valid text: it has one).
  const char* StringEnd(const char* p) {
    while (true) {
      p = special_.Next(p);
      if (*p == '"') return p;
      p += *p == '\\' ? 2 : 1;  // an escape, or a byte of a non-ASCII character
    }
  }

  // The string at the opening quote `p_`, decoded, appended to `out`.
  void ReadString(std::string& out) {
    ++p_;
    const char* const close = StringEnd(p_);
    // Room for it at once (decoding only shortens it): a long prompt would otherwise be copied
    // at each doubling of its buffer.
    out.reserve(out.size() + static_cast<size_t>(close - p_));
    while (true) {
      const void* backslash = std::memchr(p_, '\\', static_cast<size_t>(close - p_));
      const char* run_end = backslash != nullptr ? static_cast<const char*>(backslash) : close;
      out.append(p_, static_cast<size_t>(run_end - p_));
      p_ = run_end;
      if (p_ == close) {
        ++p_;
        return;
      }
      const char escape = p_[1];
      p_ += 2;
      switch (escape) {
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
          uint32_t cp = json_bytes::Hex4(p_, end_);  // four hex digits: the scanner saw them
          p_ += 4;
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // the scanner saw its low half follow
            cp = 0x10000 + ((cp - 0xD800) << 10) + (json_bytes::Hex4(p_ + 2, end_) - 0xDC00);
            p_ += 6;
          }
          AppendUtf8(cp, out);
          break;
        }
        default:  // '"', '\\', '/'
          out += escape;
          break;
      }
    }
  }

  const char* p_;
  const char* const end_;
  json_bytes::SpecialBytes special_;  // asked only for positions past all it was asked before
};

// ---- Serializing.

// False when `s` holds invalid UTF-8 (`out` then holds part of it).
bool AppendString(const std::string& s, std::string& out) {
  const char* p = s.data();
  const char* const end = p + s.size();
  json_bytes::SpecialBytes special(p, end);
  out += '"';
  while (p != end) {
    // Printable ASCII other than '"' and '\\' goes as it is.
    const char* plain_end = special.Next(p);
    out.append(p, static_cast<size_t>(plain_end - p));
    p = plain_end;
    if (p == end) break;
    const unsigned char c = static_cast<unsigned char>(*p);
    if (c >= 0x80) {
      const char* next = json_bytes::Utf8(p, end);
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
  if (!IsValidJson(text)) return std::nullopt;
  const char* p = text.data();
  if (!text.empty() && static_cast<unsigned char>(*p) == 0xEF) p += 3;  // the byte order mark
  return Builder(p, text.data() + text.size()).Value();
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

}  // namespace terse::providers
