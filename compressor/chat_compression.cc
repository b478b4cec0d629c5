// Chat segmentation for compression: stable parts (system text, history) are compressed alone at
// the route's rate and come from the compressor's cache; the last user message's documents take
// what is left of the budget, so the whole request lands on the target.
#include "compressor/chat_compression.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <future>
#include <system_error>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/errors.h"
#include "base/status_macros.h"
#include "compressor/exception_status.h"
#include "compressor/lingua_text.h"
#include "compressor/target_tokenizer.h"

namespace terse::compressor {
namespace {

// Units smaller than this (target tokens) are kept verbatim: compressing "You are a helpful
// assistant." saves two tokens and costs its meaning.
constexpr size_t kMinUnitTokens = 24;
// The lowest rate the documents are pushed to when the rest of the prompt eats the budget.
constexpr double kMinDocumentRate = 0.05;

enum class UnitKind { kFixed, kStable, kDocuments, kToolJson };

// One text of one message: the string content, or one text part of a content array.
struct Unit {
  size_t message = 0;
  std::optional<size_t> part;  // index into the content array; nullopt: string content
  UnitKind kind = UnitKind::kFixed;
  std::string text;
  size_t tokens = 0;
  bool tool = false;  // a tool or function result: its text is data, never read as markup
  // History text the budget may shorten in the catch-up pass (a compressible role's turn before
  // the last user message, or the instruction), even when it is too short to compress alone.
  bool history = false;
  std::string original;  // the text before the stable pass rewrote it
};

// The string member `key` of `object`, or "" when it is missing or not a string.
std::string StringMember(const Json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool RoleAllowed(const ChatPolicy& policy, std::string role) {
  if (role == "developer") role = "system";
  return std::find(policy.roles.begin(), policy.roles.end(), role) != policy.roles.end();
}

void CollectTexts(const Json& message, size_t index, UnitKind kind, std::vector<Unit>& units) {
  const auto content = message.find("content");
  if (content == message.end()) return;
  if (content->is_string()) {
    units.push_back({index, std::nullopt, kind, content->get<std::string>()});
    return;
  }
  if (!content->is_array()) return;
  for (size_t p = 0; p < content->size(); ++p) {
    const Json& part = (*content)[p];
    if (part.is_object() && StringMember(part, "type") == "text" && part.contains("text") &&
        part["text"].is_string()) {
      units.push_back({index, p, kind, part["text"].get<std::string>()});
    }
  }
}

Json& TextSlot(Json& messages, const Unit& unit) {
  Json& content = messages[unit.message]["content"];
  return unit.part ? content[*unit.part]["text"] : content;
}

std::optional<double> RateFor(const ChatPolicy& policy, size_t total_tokens) {
  const CompressOptions& o = policy.options;
  if (o.target_tokens) return static_cast<double>(*o.target_tokens) / total_tokens;
  std::optional<double> rate = o.rate;
  for (const RateBand& band : policy.rate_bands) {  // validated ascending
    if (total_tokens >= band.min_prompt_tokens) rate = band.rate;
  }
  return rate;
}

CompressOptions PartOptions(const ChatPolicy& policy, double rate) {
  CompressOptions o = policy.options;
  o.rate = std::clamp(rate, 0.01, 1.0);
  o.target_tokens.reset();
  o.min_tokens = 0;
  o.rank = RankMethod::kPerplexity;
  o.contrastive = false;
  o.forced_items.clear();
  return o;
}

// Byte offsets where `pattern` (PCRE2, UTF mode: the syntax config/ validates) matches `text`.
absl::StatusOr<std::vector<size_t>> MatchStarts(const std::string& pattern,
                                                const std::string& text) {
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  std::unique_ptr<pcre2_code, decltype(&pcre2_code_free)> code(
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF, &error,
                    &error_offset, nullptr),
      &pcre2_code_free);
  if (!code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return InvalidRequest(absl::StrCat("document_delimiter is not a valid regex: ",
                                       reinterpret_cast<const char*>(message)));
  }
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(code.get(), nullptr), &pcre2_match_data_free);
  std::vector<size_t> starts;
  size_t offset = 0;
  while (offset <= text.size()) {
    int rc = pcre2_match(code.get(), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), offset,
                         starts.empty() && offset == 0 ? 0 : PCRE2_NO_UTF_CHECK, match.get(),
                         nullptr);  // the first call validates the UTF-8 once
    if (rc < 0) break;              // no further match, or text that is not UTF-8: no documents
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
    if (ovector[1] > ovector[0]) starts.push_back(ovector[0]);
    offset = ovector[1] > ovector[0] ? ovector[1] : ovector[0] + 1;
    while (offset < text.size() && (static_cast<unsigned char>(text[offset]) & 0xC0) == 0x80) {
      ++offset;  // never resume inside a UTF-8 sequence
    }
  }
  return starts;
}

}  // namespace

ChatPolicy RecommendedChatPolicy() {
  ChatPolicy policy;
  policy.question_aware = true;
  policy.options.reorder = Reorder::kRank;
  policy.options.dynamic_ratio = 0.3;
  policy.options.context_budget_k = 2.5;
  return policy;
}

std::string WithoutMarkup(std::string text) {
  if (text.find("terse") == std::string::npos && text.find("llmlingua") == std::string::npos) {
    return text;
  }
  absl::StrReplaceAll({{"<terse:doc>", ""}, {"</terse:doc>", ""}}, &text);
  absl::StatusOr<lingua::MarkedText> marked = lingua::ParseMarkup(text);
  return marked.ok() ? std::move(marked->text) : text;
}

absl::StatusOr<SplitMessage> SplitDocuments(const std::string& text,
                                            const std::string& document_delimiter) {
  SplitMessage split;
  auto add = [&](std::string document, std::string separator) {
    if (document.find_first_not_of(" \t\r\n") == std::string::npos) {
      if (!split.separators.empty()) split.separators.back() += document + separator;
      return;
    }
    split.documents.push_back(std::move(document));
    split.separators.push_back(std::move(separator));
  };

  static constexpr std::string_view kOpen = "<terse:doc>";
  static constexpr std::string_view kClose = "</terse:doc>";
  if (text.find(kOpen) != std::string::npos) {
    // Tagged documents; everything after the last closing tag is the question.
    size_t pos = 0;
    std::string pending;  // text between documents rides on the previous separator
    while (true) {
      size_t open = text.find(kOpen, pos);
      if (open == std::string::npos) break;
      size_t close = text.find(kClose, open);
      if (close == std::string::npos) {
        return InvalidRequest("unclosed <terse:doc> in the last user message", "messages");
      }
      std::string between = text.substr(pos, open - pos);
      if (split.documents.empty()) {
        if (between.find_first_not_of(" \t\r\n") != std::string::npos) {
          split.documents.push_back(between);
          split.separators.push_back("");
        }
      } else {
        split.separators.back() += between;
      }
      split.documents.push_back(text.substr(open + kOpen.size(), close - open - kOpen.size()));
      split.separators.push_back("");
      pos = close + kClose.size();
    }
    split.question = text.substr(pos);
    return split;
  }

  std::vector<size_t> starts;
  if (!document_delimiter.empty()) {
    ASSIGN_OR_RETURN(starts, MatchStarts(document_delimiter, text));
  }
  if (!starts.empty()) {
    // Each match starts a document; the last document's final blank-line block is the question.
    if (starts.front() > 0) starts.insert(starts.begin(), 0);
    starts.push_back(text.size());
    for (size_t i = 0; i + 1 < starts.size(); ++i) {
      split.documents.push_back(text.substr(starts[i], starts[i + 1] - starts[i]));
      split.separators.push_back("");
    }
    std::string& last = split.documents.back();
    size_t cut = last.rfind("\n\n");
    if (cut != std::string::npos && split.documents.size() > 0) {
      split.question = last.substr(cut + 2);
      split.separators.back() = "\n\n";
      last.resize(cut);
    } else {
      split.question = std::move(last);
      split.documents.pop_back();
      split.separators.pop_back();
    }
    return split;
  }

  // Blank-line separated blocks: all but the last are documents.
  size_t pos = 0;
  while (true) {
    size_t gap = text.find("\n\n", pos);
    if (gap == std::string::npos) break;
    size_t end = gap;
    while (end < text.size() && text[end] == '\n') ++end;
    if (end >= text.size()) break;  // trailing newlines belong to the last block
    add(text.substr(pos, gap - pos), text.substr(gap, end - gap));
    pos = end;
  }
  split.question = text.substr(pos);
  return split;
}

namespace {

absl::StatusOr<ChatReport> CompressChatOrThrow(Compressor& compressor, Json& messages,
                                               const ChatPolicy& policy) {
  const auto started = std::chrono::steady_clock::now();
  if (!messages.is_array()) return InvalidRequest("messages must be an array", "messages");
  ASSIGN_OR_RETURN(auto tokenizer, GetTargetTokenizer(policy.options.target_tokenizer));

  // The last user message holds the question (and maybe documents).
  std::optional<size_t> last_user;
  for (size_t i = messages.size(); i-- > 0;) {
    if (!messages[i].is_object()) {
      return InvalidRequest(absl::StrCat("messages[", i, "] must be an object"), "messages");
    }
    if (const auto role = messages[i].find("role");
        role != messages[i].end() && !role->is_string()) {
      return InvalidRequest(absl::StrCat("messages[", i, "].role must be a string"),
                            absl::StrCat("messages[", i, "].role"));
    }
    if (!last_user && StringMember(messages[i], "role") == "user") last_user = i;
  }

  std::vector<Unit> units;
  for (size_t i = 0; i < messages.size(); ++i) {
    const Json& message = messages[i];
    const std::string role = StringMember(message, "role");
    UnitKind kind = UnitKind::kFixed;
    const bool recent = last_user && i < *last_user && *last_user - i <= policy.keep_last_turns;
    if (role == "tool" || role == "function") {
      kind = policy.compress_tool_json ? UnitKind::kToolJson : UnitKind::kFixed;
    } else if (!RoleAllowed(policy, role) || recent) {
      kind = UnitKind::kFixed;
    } else if (last_user && i == *last_user) {
      kind = UnitKind::kDocuments;
    } else if (!last_user || i < *last_user) {
      kind = UnitKind::kStable;
    }  // turns after the last user message (a trailing assistant prefill) stay as they are
    const size_t first = units.size();
    CollectTexts(message, i, kind, units);
    const bool tool = role == "tool" || role == "function";
    for (size_t u = first; u < units.size(); ++u) units[u].tool = tool;
  }
  // A last user message of several text parts (text, image, text): its last text part holds the
  // documents and the question; the earlier ones are compressed alone at the route's rate, like
  // history, so that every part is counted in the budget.
  for (size_t u = units.size(), seen = 0; u-- > 0;) {
    if (units[u].kind != UnitKind::kDocuments) continue;
    if (seen++ > 0) units[u].kind = UnitKind::kStable;
  }

  ChatReport report;
  for (Unit& unit : units) {
    unit.tokens = tokenizer->Count(unit.text);
    report.original_tokens += unit.tokens;
    unit.history = unit.kind == UnitKind::kStable;
    unit.original = unit.text;
    if (unit.kind != UnitKind::kFixed && unit.tokens < kMinUnitTokens) unit.kind = UnitKind::kFixed;
  }
  // Writes the units back into the messages (the rewritten ones, and those that carried markup)
  // and counts what is sent.
  bool stored = false;
  // Terse markup is for terse alone: text the compressor did not rewrite (kept parts, the
  // question, prompts forwarded unchanged) loses its tags here, so the upstream never reads them.
  auto store = [&] {
    stored = true;
    report.compressed_tokens = 0;
    for (Unit& unit : units) {
      bool rewritten = unit.kind != UnitKind::kFixed;
      if (!unit.tool) {
        std::string plain = WithoutMarkup(unit.text);
        if (plain.size() != unit.text.size()) {
          unit.text = std::move(plain);
          unit.tokens = tokenizer->Count(unit.text);
          rewritten = true;
        }
      }
      if (rewritten) TextSlot(messages, unit) = unit.text;
      report.compressed_tokens += unit.tokens;
    }
  };
  auto finish = [&](std::string reason) -> ChatReport {
    if (!stored) store();  // unchanged, but without markup
    report.reason = std::move(reason);
    report.ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count();
    return report;
  };

  if (report.original_tokens == 0) return finish("no text to compress");
  if (report.original_tokens < policy.min_prompt_tokens) {
    return finish(absl::StrCat("prompt has ", report.original_tokens,
                               " tokens, under min_prompt_tokens ", policy.min_prompt_tokens));
  }
  const std::optional<double> rate = RateFor(policy, report.original_tokens);
  if (!rate) return finish("no rate or target_tokens for this prompt");
  if (*rate >= 1.0) return finish("the budget already holds the whole prompt");

  // Stable parts first, at the route's rate (never at a rate that depends on this request).
  const double budget = *rate * report.original_tokens;
  double spent = 0;
  size_t stable_parts = 0, stable_hits = 0;
  Unit* documents = nullptr;
  std::vector<Unit*> stable;
  for (Unit& unit : units) {
    switch (unit.kind) {
      case UnitKind::kFixed:
        spent += unit.tokens;
        break;
      case UnitKind::kDocuments:
        documents = &unit;
        break;
      case UnitKind::kStable:
      case UnitKind::kToolJson:
        stable.push_back(&unit);
        break;
    }
  }
  // The stable parts do not depend on each other: compressed at once, their scoring shares the
  // language model's batches instead of queueing one part behind the other.
  auto compress_stable = [&](const Unit& unit) {
    CompressOptions options = PartOptions(policy, *rate);
    options.compress_json_strings = unit.kind == UnitKind::kToolJson;
    return compressor.CompressText(unit.text, options);
  };
  std::vector<std::future<absl::StatusOr<CompressResult>>> pending;
  for (size_t i = 1; i < stable.size(); ++i) {
    try {
      pending.push_back(std::async(std::launch::async, compress_stable, std::cref(*stable[i])));
    } catch (const std::system_error&) {  // no thread to be had: run it here, later
      pending.push_back(std::async(std::launch::deferred, compress_stable, std::cref(*stable[i])));
    }
  }
  std::vector<absl::StatusOr<CompressResult>> results;
  if (!stable.empty()) results.push_back(compress_stable(*stable[0]));
  for (auto& f : pending) results.push_back(f.get());  // every thread joined before any return
  for (size_t i = 0; i < stable.size(); ++i) {
    if (!results[i].ok()) return results[i].status();
    ++stable_parts;
    stable_hits += results[i]->cache_hit ? 1 : 0;
    stable[i]->text = std::move(results[i]->prompt);
    stable[i]->tokens = results[i]->compressed_tokens;
    spent += stable[i]->tokens;
  }

  // The per-request part takes what is left: its documents are compressed (ranked by the
  // question when asked), its question is kept whole.
  if (documents != nullptr) {
    ASSIGN_OR_RETURN(SplitMessage split,
                     SplitDocuments(documents->text, policy.document_delimiter));
    if (split.documents.empty()) {
      spent += documents->tokens;  // a message that is all question stays whole
    } else {
      size_t document_tokens = 0;
      for (const std::string& d : split.documents) document_tokens += tokenizer->Count(d);
      const double question_tokens = static_cast<double>(documents->tokens) - document_tokens;
      const double left = budget - spent - question_tokens;
      const double document_rate =
          std::clamp(left / std::max<size_t>(document_tokens, 1), kMinDocumentRate, 1.0);
      if (document_rate < 1.0) {
        CompressOptions options = PartOptions(policy, 1.0);
        options.rank = policy.question_aware ? RankMethod::kQuestion : RankMethod::kPerplexity;
        options.contrastive = policy.question_aware && policy.options.contrastive;
        options.question_rate = 1.0;
        options.instruction_rate = 1.0;
        const double q = tokenizer->Count(split.question);
        options.rate =
            std::clamp((document_rate * document_tokens + q) / (document_tokens + q), 0.01, 1.0);
        Prompt prompt{.instruction = "", .context = split.documents, .question = split.question};
        ASSIGN_OR_RETURN(CompressResult result, compressor.Compress(prompt, options));
        std::string text;
        for (const CompressResult::Item& item : result.context) {
          if (!item.kept || item.text.empty()) continue;
          std::string separator = split.separators[item.original_index];
          if (separator.empty()) separator = "\n\n";
          absl::StrAppend(&text, item.text, separator);
        }
        absl::StrAppend(&text, split.question);  // verbatim, whatever the compressor did
        documents->text = std::move(text);
        documents->tokens = tokenizer->Count(documents->text);
      }
      spent += documents->tokens;
    }
  }

  // Catch-up: when the parts kept whole (the question, short turns) leave the prompt over its
  // budget, history turns absorb the excess, newest first: a first sweep takes each down to at
  // most half the route's rate, a second as far as needed. The turns before the first one
  // shortened here stay as the stable pass made them, so providers' prefix caches keep them.
  for (const double floor_rate : {0.5 * *rate, 0.0}) {
    for (size_t u = units.size(); u-- > 0 && spent > budget + 0.5;) {
      Unit& unit = units[u];
      if (!unit.history) continue;
      const double floor = std::max(1.0, floor_rate * tokenizer->Count(unit.original));
      const double want = std::max(floor, static_cast<double>(unit.tokens) - (spent - budget));
      if (want >= static_cast<double>(unit.tokens)) continue;
      CompressOptions options = PartOptions(policy, 1.0);
      options.rate.reset();
      options.target_tokens = static_cast<size_t>(std::floor(want));
      ASSIGN_OR_RETURN(CompressResult result, compressor.CompressText(unit.original, options));
      if (result.compressed_tokens >= unit.tokens) continue;
      spent -= static_cast<double>(unit.tokens) - static_cast<double>(result.compressed_tokens);
      unit.text = std::move(result.prompt);
      unit.tokens = result.compressed_tokens;
      unit.kind = UnitKind::kStable;
    }
  }

  store();
  report.applied = report.compressed_tokens < report.original_tokens;
  report.rate = static_cast<double>(report.compressed_tokens) / report.original_tokens;
  report.cache_hit = stable_parts > 0 && stable_hits == stable_parts;
  return finish(report.applied ? "" : "nothing compressible under this policy");
}

absl::StatusOr<ChatReport> CompressCompletionPromptOrThrow(Compressor& compressor, Json& prompt,
                                                           const ChatPolicy& policy) {
  // One message per prompt string, all "stable": the same machinery, one code path.
  Json messages = Json::array();
  if (prompt.is_string()) {
    messages.push_back({{"role", "system"}, {"content", prompt}});
  } else if (prompt.is_array() && std::all_of(prompt.begin(), prompt.end(),
                                              [](const Json& p) { return p.is_string(); })) {
    for (const Json& p : prompt) messages.push_back({{"role", "system"}, {"content", p}});
  } else {
    return InvalidRequest("prompt must be a string or an array of strings", "prompt");
  }
  ChatPolicy plain = policy;
  plain.roles = {"system"};
  plain.keep_last_turns = 0;
  ASSIGN_OR_RETURN(ChatReport report, CompressChatOrThrow(compressor, messages, plain));
  if (prompt.is_string()) {
    prompt = messages[0]["content"];
  } else {
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = messages[i]["content"];
  }
  return report;
}

}  // namespace

absl::StatusOr<ChatReport> CompressChat(Compressor& compressor, Json& messages,
                                        const ChatPolicy& policy) {
  return CatchExceptions("chat compression failed",
                         [&] { return CompressChatOrThrow(compressor, messages, policy); });
}

absl::StatusOr<ChatReport> CompressCompletionPrompt(Compressor& compressor, Json& prompt,
                                                    const ChatPolicy& policy) {
  return CatchExceptions("prompt compression failed", [&] {
    return CompressCompletionPromptOrThrow(compressor, prompt, policy);
  });
}

}  // namespace terse::compressor
