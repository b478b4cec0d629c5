// terse's markup and LLMLingua's structured-prompt tags, parsed into markup-free text and spans.
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "base/status_macros.h"
#include "compressor/lingua_text.h"

namespace terse::compressor::lingua {
namespace {

// A tag's frame on the markup stack.
struct Open {
  bool keep;
  double rate;             // -1: the global budget
  bool llmlingua = false;  // opened by an <llmlingua, ...> tag, closed by </llmlingua>
};

std::string_view TrimSpace(std::string_view s) {
  while (!s.empty() && absl::ascii_isspace(s.front())) s.remove_prefix(1);
  while (!s.empty() && absl::ascii_isspace(s.back())) s.remove_suffix(1);
  return s;
}

// LLMLingua's structured-prompt tag, "<llmlingua, compress=False>" or "<llmlingua, rate=0.4>"
// (attributes separated by commas, either or none), as a frame: compress=False keeps the span
// verbatim, a rate compresses it at that rate, neither leaves it to the global budget.
absl::StatusOr<Open> ParseLlmlinguaTag(std::string_view tag) {
  Open open{false, -1.0, true};
  const std::string_view attrs = tag.substr(10, tag.size() - 11);
  size_t pos = 0;
  while (pos <= attrs.size()) {
    size_t comma = attrs.find(',', pos);
    if (comma == std::string_view::npos) comma = attrs.size();
    const std::string_view attr = TrimSpace(attrs.substr(pos, comma - pos));
    pos = comma + 1;
    if (attr.empty()) continue;
    const size_t eq = attr.find('=');
    const std::string_view key =
        eq == std::string_view::npos ? attr : TrimSpace(attr.substr(0, eq));
    std::string_view value = eq == std::string_view::npos ? "" : TrimSpace(attr.substr(eq + 1));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    if (key == "compress" && (value == "False" || value == "false")) {
      open.keep = true;
    } else if (key == "compress" && (value == "True" || value == "true")) {
      open.keep = false;
    } else if (key == "rate") {
      const std::string text(value);
      char* end = nullptr;
      const double rate = std::strtod(text.c_str(), &end);
      if (text.empty() || end != text.c_str() + text.size() || !(rate >= 0.0 && rate <= 1.0)) {
        return absl::InvalidArgumentError("bad rate in llmlingua tag (want a number in [0, 1]): " +
                                          std::string(tag));
      }
      open.rate = rate;
    } else {
      return absl::InvalidArgumentError(
          "bad llmlingua tag (want compress=True|False and/or rate=R): " + std::string(tag));
    }
  }
  if (open.keep) open.rate = 1.0;
  return open;
}

}  // namespace

absl::StatusOr<MarkedText> ParseMarkup(std::string_view in) {
  MarkedText out;
  std::vector<Open> stack;
  const auto state = [&]() -> std::pair<bool, double> {
    double rate = -1;
    for (const Open& o : stack) {
      if (o.keep) return {true, 1.0};
    }
    for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
      rate = it->rate;
      break;
    }
    return {false, rate};
  };
  const auto append = [&](std::string_view chunk) {
    if (chunk.empty()) return;
    const auto [keep, rate] = state();
    const size_t b = out.text.size();
    out.text.append(chunk);
    if (!keep && rate < 0) return;
    if (!out.spans.empty()) {
      MarkupSpan& last = out.spans.back();
      if (last.end == b && last.keep == keep && (keep || last.rate == rate)) {
        last.end = out.text.size();
        return;
      }
    }
    out.spans.push_back({b, out.text.size(), keep, keep ? 1.0 : rate});
  };

  size_t i = 0;
  size_t plain = 0;
  while (true) {
    const size_t lt = in.find("<", i);
    if (lt == std::string_view::npos) break;
    const std::string_view rest = in.substr(lt);
    size_t tag_len = 0;
    // A closing tag ends the innermost open frame of its own kind; one with none open is dropped.
    const auto close = [&](size_t len, auto is_its_frame) {
      append(in.substr(plain, lt - plain));
      for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
        if (is_its_frame(*it)) {
          stack.erase(std::next(it).base());
          break;
        }
      }
      tag_len = len;
    };
    if (rest.substr(0, 12) == "<terse:keep>") {
      append(in.substr(plain, lt - plain));
      stack.push_back({true, 1.0});
      tag_len = 12;
    } else if (rest.substr(0, 13) == "</terse:keep>") {
      close(13, [](const Open& o) { return o.keep && !o.llmlingua; });
    } else if (rest.substr(0, 8) == "</terse>") {
      close(8, [](const Open& o) { return !o.keep && !o.llmlingua; });
    } else if (rest.substr(0, 12) == "</llmlingua>") {
      close(12, [](const Open& o) { return o.llmlingua; });
    } else if (rest.substr(0, 10) == "<llmlingua" && rest.size() > 10 &&
               (rest[10] == ',' || rest[10] == '>' || absl::ascii_isspace(rest[10]))) {
      const size_t close = rest.find('>');
      if (close == std::string_view::npos) break;
      ASSIGN_OR_RETURN(Open open, ParseLlmlinguaTag(rest.substr(0, close + 1)));
      append(in.substr(plain, lt - plain));
      stack.push_back(open);
      tag_len = close + 1;
    } else if (rest.substr(0, 6) == "<terse" && rest.size() > 6 &&
               (rest[6] == ' ' || rest[6] == '\t')) {
      const size_t close = rest.find('>');
      if (close == std::string_view::npos) break;
      std::string_view attr = rest.substr(6, close - 6);
      attr = TrimSpace(attr);
      if (attr.substr(0, 4) != "rate") {
        i = lt + 1;
        continue;  // not a terse tag we know: plain text
      }
      attr = TrimSpace(attr.substr(4));
      if (attr.empty() || attr.front() != '=') {
        return absl::InvalidArgumentError("bad terse tag (expected rate=R): " +
                                          std::string(rest.substr(0, close + 1)));
      }
      attr = TrimSpace(attr.substr(1));
      if (attr.size() >= 2 && (attr.front() == '"' || attr.front() == '\'') &&
          attr.back() == attr.front()) {
        attr = attr.substr(1, attr.size() - 2);
      }
      const std::string value(attr);
      char* end = nullptr;
      const double rate = std::strtod(value.c_str(), &end);
      if (value.empty() || end != value.c_str() + value.size() || !(rate >= 0.0 && rate <= 1.0)) {
        return absl::InvalidArgumentError("bad rate in terse tag (want a number in [0, 1]): " +
                                          std::string(rest.substr(0, close + 1)));
      }
      append(in.substr(plain, lt - plain));
      stack.push_back({false, rate});
      tag_len = close + 1;
    } else {
      i = lt + 1;
      continue;
    }
    i = lt + tag_len;
    plain = i;
  }
  append(in.substr(plain));
  return out;
}

}  // namespace terse::compressor::lingua
