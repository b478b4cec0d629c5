// A small recursive-descent expander for the shell-like `${...}` subset configs use.
#include "config/env_refs.h"

#include <cstdlib>

#include "absl/status/status.h"

namespace terse::config {
namespace {

bool IsNameStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

class Expander {
 public:
  // With evaluate = false (a default word that is not used) unset variables are not errors.
  Expander(std::string_view text, const EnvLookup& env, Expanded& out, bool evaluate)
      : text_(text), env_(env), out_(out), evaluate_(evaluate) {}

  // Expands from pos_ up to the end (nested = false) or up to the `}` closing a default word
  // (nested = true; the `}` is consumed).
  absl::StatusOr<std::string> Run(bool nested) {
    std::string result;
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (nested && c == '}') {
        ++pos_;
        return result;
      }
      if (c != '$' || pos_ + 1 >= text_.size()) {
        result += c;
        ++pos_;
        continue;
      }
      char next = text_[pos_ + 1];
      if (next == '$') {
        result += '$';
        pos_ += 2;
      } else if (next == '{') {
        pos_ += 2;
        auto value = Reference();
        if (!value.ok()) return value.status();
        result += *value;
      } else {
        result += c;
        ++pos_;
      }
    }
    if (nested) return absl::InvalidArgumentError("unterminated \"${\" (missing \"}\")");
    return result;
  }

 private:
  // Parses `NAME}`, `NAME:-word}` or `NAME-word}` after a `${`.
  absl::StatusOr<std::string> Reference() {
    out_.has_refs = true;
    size_t start = pos_;
    while (pos_ < text_.size() && IsNameChar(text_[pos_])) ++pos_;
    std::string name(text_.substr(start, pos_ - start));
    if (pos_ >= text_.size())
      return absl::InvalidArgumentError("unterminated \"${\" (missing \"}\")");
    if (!IsEnvName(name)) {
      return absl::InvalidArgumentError(
          "invalid environment reference: expected ${NAME} with NAME made of letters, digits "
          "and _");
    }
    std::optional<std::string> value = env_(name);
    char c = text_[pos_];
    if (c == '}') {
      ++pos_;
      if (!value) {
        if (!evaluate_) return std::string();
        return absl::InvalidArgumentError("environment variable " + name + " is not set");
      }
      Record(*value);
      return *value;
    }
    bool empty_counts_as_unset = false;
    if (c == ':' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '-') {
      empty_counts_as_unset = true;
      pos_ += 2;
    } else if (c == '-') {
      pos_ += 1;
    } else {
      return absl::InvalidArgumentError("invalid environment reference to " + name +
                                        ": expected \"}\", \":-\" or \"-\" after the name");
    }
    // The default word is always parsed (to find the closing brace), evaluated only when used.
    bool use_default = !value || (empty_counts_as_unset && value->empty());
    Expanded scratch;
    Expander word_expander(text_, env_, scratch, evaluate_ && use_default);
    word_expander.pos_ = pos_;
    absl::StatusOr<std::string> word = word_expander.Run(/*nested=*/true);
    if (!word.ok()) return word.status();
    pos_ = word_expander.pos_;
    if (!use_default) {
      Record(*value);
      return *value;
    }
    out_.env_values.insert(out_.env_values.end(), scratch.env_values.begin(),
                           scratch.env_values.end());
    return *word;
  }

  void Record(const std::string& value) {
    if (!value.empty()) out_.env_values.push_back(value);
  }

  std::string_view text_;
  const EnvLookup& env_;
  Expanded& out_;
  const bool evaluate_;
  size_t pos_ = 0;
};

}  // namespace

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

bool IsEnvName(std::string_view name) {
  if (name.empty() || !IsNameStart(name[0])) return false;
  for (char c : name) {
    if (!IsNameChar(c)) return false;
  }
  return true;
}

absl::StatusOr<Expanded> ExpandEnvRefs(std::string_view text, const EnvLookup& env) {
  Expanded out;
  Expander expander(text, env, out, /*evaluate=*/true);
  absl::StatusOr<std::string> result = expander.Run(/*nested=*/false);
  if (!result.ok()) return result.status();
  out.text = *std::move(result);
  return out;
}

}  // namespace terse::config
