// The run of one compression: parse each part into units and the scoring model's tokens, decide
// whether there is anything to do, chain the coarse step, the fine step and the exact count, and
// assemble the result.
#include "compressor/lingua_run.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "base/status_macros.h"

namespace terse::compressor::lingua {
namespace {

// Token -> units it touches. A token of spaces alone right before a plain unit belongs to that
// unit: a word's first piece carries its leading space ("▁bus"), and a number's space is a piece
// of its own ("▁" "1" "7" "9") whose surprise is the number's as much as the digits'. Other
// whitespace tokens (newlines, indentation) touch no unit.
void MapTokensToUnits(Part& p) {
  const std::vector<Unit>& units = p.layout.units;
  const size_t n = units.size();
  p.token_unit.assign(p.tokens.size(), -1);
  p.token_units.assign(p.tokens.size(), 0);
  p.unit_tokens.assign(n, 0);
  size_t u = 0;
  for (size_t t = 0; t < p.tokens.size(); ++t) {
    const LmToken& tok = p.tokens[t];
    while (u < n && units[u].end <= tok.begin) ++u;
    size_t v = u;
    while (v < n && units[v].begin < tok.end) ++v;
    if (v > u) {
      p.token_unit[t] = static_cast<int32_t>(u);
      p.token_units[t] = static_cast<int32_t>(v - u);
      ++p.unit_tokens[u];
    } else if (u < n && units[u].begin == tok.end && !(units[u].flags & kUnitVerbatim) &&
               std::all_of(p.marked.text.begin() + tok.begin, p.marked.text.begin() + tok.end,
                           [](char c) { return c == ' '; })) {
      p.token_unit[t] = static_cast<int32_t>(u);
      p.token_units[t] = 1;
    }
  }
}

}  // namespace

bool IsBlank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  });
}

double DigitScale(int32_t vocab_size) {
  return vocab_size > 10 ? std::log(static_cast<double>(vocab_size)) / std::log(10.0) : 1.0;
}

std::string Join(const std::vector<std::string_view>& parts) {
  std::string out;
  for (std::string_view p : parts) {
    if (p.empty()) continue;
    if (!out.empty()) out.append(kJoin);
    out.append(p);
  }
  return out;
}

absl::StatusOr<CompressResult> Run::Compress() {
  // Parts: instruction, items by index, question.
  RETURN_IF_ERROR(BuildPart(PartKind::kInstruction, 0, prompt_.instruction));
  for (size_t i = 0; i < prompt_.context.size(); ++i) {
    RETURN_IF_ERROR(BuildPart(PartKind::kItem, i, prompt_.context[i]));
  }
  RETURN_IF_ERROR(BuildPart(PartKind::kQuestion, 0, prompt_.question));

  std::vector<std::string_view> originals;
  for (const Part& p : parts_) {
    originals.push_back(p.blank ? std::string_view() : std::string_view(p.marked.text));
  }
  origin_ = target_.Count(Join(originals));
  const size_t target = SetTarget();
  if (std::optional<std::string> reason = WhyUnchanged()) return Unchanged(*std::move(reason));
  const Part& question = parts_.back();
  if (!question.blank) {
    for (const LmToken& t : question.tokens) question_ids_.push_back(t.id);
  }

  ASSIGN_OR_RETURN(const std::vector<double> part_target, SelectItems(target));
  for (size_t k = 0; k < parts_.size(); ++k) {
    if (parts_[k].present) SetGroups(parts_[k], part_target[k]);
  }
  RETURN_IF_ERROR(CompressFine());
  if (budgeted_) Correct(target);
  KeepJsonValid();
  return Finish();
}

absl::StatusOr<std::vector<int32_t>> Run::Encode(std::string_view text) const {
  ASSIGN_OR_RETURN(std::vector<LmToken> tokens, tok_.Encode(text));
  std::vector<int32_t> ids;
  ids.reserve(tokens.size());
  for (const LmToken& t : tokens) ids.push_back(t.id);
  return ids;
}

double Run::UnitCost(const Part& p, size_t u) {
  const Unit& x = p.layout.units[u];
  const std::string_view text = p.UnitText(u);
  if (x.flags & kUnitVerbatim) return static_cast<double>(target_.Count(text));
  // Most BPE tokens carry their leading space, so a word costs what " word" costs.
  const bool spaced =
      x.begin > 0 && (p.marked.text[x.begin - 1] == ' ' || p.marked.text[x.begin - 1] == '\t');
  std::string key = spaced ? " " : "";
  key.append(text);
  auto it = cost_cache_.find(key);
  if (it != cost_cache_.end()) return it->second;
  const double c = std::max<double>(1.0, static_cast<double>(target_.Count(key)));
  cost_cache_.emplace(std::move(key), c);
  return c;
}

absl::Status Run::BuildPart(PartKind kind, size_t item, std::string_view text) {
  Part& p = parts_.emplace_back();
  p.kind = kind;
  p.item = item;
  ASSIGN_OR_RETURN(p.marked, ParseMarkup(text));
  p.blank = IsBlank(p.marked.text);
  if (p.blank) return absl::OkStatus();
  StructureOptions structure;
  structure.force_tokens = o_.force_tokens;
  structure.keep_digits = o_.keep_digits;
  structure.compress_json_strings = o_.compress_json_strings;
  structure.keep_markers = o_.keep_markers;
  p.layout = SplitUnits(p.marked, structure);
  RETURN_IF_ERROR(EncodePiecewise(p));
  MapTokensToUnits(p);
  const float digit_scale = static_cast<float>(DigitScale(tok_.vocab_size()));
  p.token_scale.resize(p.tokens.size());
  const auto text_of = [&](size_t t) {
    const LmToken& k = p.tokens[t];
    return std::string_view(p.marked.text).substr(k.begin, k.end - k.begin);
  };
  const auto digits = [](std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), absl::ascii_isdigit);
  };
  // The lone space piece the tokenizer splits off before a digit run belongs to the number.
  for (size_t t = 0; t < p.tokens.size(); ++t) {
    const bool number = digits(text_of(t)) ||
                        (text_of(t) == " " && t + 1 < p.tokens.size() && digits(text_of(t + 1)));
    p.token_scale[t] = number ? digit_scale : 1.0f;
  }

  const size_t n = p.layout.units.size();
  p.cost.resize(n);
  for (size_t i = 0; i < n; ++i) {
    p.cost[i] = UnitCost(p, i);
    p.estimate += p.cost[i];
  }
  p.score.assign(n, 0.0);
  p.scored.assign(n, false);
  p.group.assign(n, -1);
  p.active.assign(n, true);
  p.kept.assign(n, false);
  p.exact = target_.Count(p.marked.text);
  p.present = true;
  return absl::OkStatus();
}

// LM tokens, encoded piecewise so no token straddles a verbatim block or a markup span.
absl::Status Run::EncodePiecewise(Part& p) const {
  std::vector<size_t> cuts = {0, p.marked.text.size()};
  for (const Unit& u : p.layout.units) {
    if (u.flags & kUnitVerbatim) {
      cuts.push_back(u.begin);
      cuts.push_back(u.end);
    }
  }
  for (const MarkupSpan& s : p.marked.spans) {
    cuts.push_back(s.begin);
    cuts.push_back(s.end);
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  for (size_t c = 0; c + 1 < cuts.size(); ++c) {
    const std::string_view piece =
        std::string_view(p.marked.text).substr(cuts[c], cuts[c + 1] - cuts[c]);
    ASSIGN_OR_RETURN(std::vector<LmToken> tokens, tok_.Encode(piece));
    for (LmToken& t : tokens) {
      t.begin += static_cast<uint32_t>(cuts[c]);
      t.end += static_cast<uint32_t>(cuts[c]);
      p.tokens.push_back(t);
    }
  }
  return absl::OkStatus();
}

size_t Run::SetTarget() {
  size_t target = origin_;
  if (o_.rate.has_value()) {
    target = static_cast<size_t>(std::llround(*o_.rate * static_cast<double>(origin_)));
  } else if (o_.target_tokens.has_value()) {
    target = *o_.target_tokens;
  }
  budgeted_ = target < origin_;
  return target;
}

std::optional<std::string> Run::WhyUnchanged() const {
  if (std::all_of(parts_.begin(), parts_.end(), [](const Part& p) { return p.blank; })) {
    return "empty prompt: nothing to compress";
  }
  if (origin_ < o_.min_tokens) {
    return absl::StrCat("prompt has ", origin_, " tokens, below min_tokens ", o_.min_tokens);
  }
  bool rate_spans = false;
  for (const Part& p : parts_) {
    for (const MarkupSpan& s : p.marked.spans) rate_spans = rate_spans || !s.keep;
  }
  if (!budgeted_ && !rate_spans) {
    return o_.rate.has_value() || o_.target_tokens.has_value()
               ? "the budget is not below the prompt's size"
               : "no rate or target_tokens given and no <terse rate> spans";
  }
  bool elastic = false;
  for (const Part& p : parts_) {
    for (size_t u = 0; u < p.layout.units.size() && !elastic; ++u) elastic = !p.Forced(u);
  }
  if (!elastic) {
    return "nothing compressible: all of it is kept by structure (code, JSON, keep spans, forced "
           "text)";
  }
  return std::nullopt;
}

std::vector<size_t> Run::OutputParts() const {
  std::vector<size_t> out;
  if (parts_[0].present) out.push_back(0);
  for (size_t i : item_order_) {
    if (parts_[1 + i].present) out.push_back(1 + i);
  }
  if (parts_.back().present) out.push_back(parts_.size() - 1);
  return out;
}

void Run::KeepJsonValid() {
  for (Part& p : parts_) {
    for (size_t j = 0; j < p.layout.json.size(); ++j) {
      const auto [b, e] = p.layout.json[j];
      std::vector<Unit> units;
      std::vector<bool> kept;
      std::vector<size_t> index;
      for (size_t u = 0; u < p.layout.units.size(); ++u) {
        Unit x = p.layout.units[u];
        if (x.json != static_cast<int32_t>(j)) continue;
        x.begin -= b;
        x.end -= b;
        units.push_back(x);
        kept.push_back(p.active[u] && p.kept[u]);
        index.push_back(u);
      }
      const std::string out =
          Assemble(std::string_view(p.marked.text).substr(b, e - b), units, kept);
      if (Json::accept(out)) continue;
      for (size_t u : index) p.kept[u] = p.active[u];
    }
  }
}

CompressResult Run::Unchanged(std::string reason) const {
  CompressResult r;
  r.reason = std::move(reason);
  const bool empty =
      std::all_of(parts_.begin(), parts_.end(), [](const Part& p) { return p.blank; });
  // An empty prompt comes back byte for byte; otherwise tags are removed.
  r.instruction = empty ? prompt_.instruction : parts_[0].marked.text;
  r.question = empty ? prompt_.question : parts_.back().marked.text;
  for (size_t i = 0; i < prompt_.context.size(); ++i) {
    CompressResult::Item item;
    item.original_index = i;
    item.text = empty ? prompt_.context[i] : parts_[1 + i].marked.text;
    item.kept = true;
    r.context.push_back(std::move(item));
  }
  Total(r);
  if (o_.explain) r.explanation.push_back({r.prompt, true});
  return r;
}

void Run::Total(CompressResult& r) const {
  std::vector<std::string_view> views = {r.instruction};
  for (const auto& item : r.context) views.push_back(item.text);
  views.push_back(r.question);
  r.prompt = Join(views);
  r.origin_tokens = origin_;
  r.compressed_tokens = target_.Count(r.prompt);
  r.rate = origin_ > 0 ? static_cast<double>(r.compressed_tokens) / origin_ : 1.0;
}

std::vector<CompressResult::Piece> Run::Explain() const {
  std::vector<CompressResult::Piece> out;
  const auto add = [&](std::string_view text, bool kept) {
    if (text.empty()) return;
    if (!out.empty() && out.back().kept == kept) {
      out.back().text.append(text);
    } else {
      out.push_back({std::string(text), kept});
    }
  };
  bool first = true;
  for (const Part& p : parts_) {
    if (p.blank) continue;
    if (!first) add(kJoin, true);
    first = false;
    const std::string_view t = p.marked.text;
    if (!p.present) {
      add(t, false);
      continue;
    }
    size_t pos = 0;
    for (size_t u = 0; u < p.layout.units.size(); ++u) {
      const Unit& x = p.layout.units[u];
      add(t.substr(pos, x.begin - pos), true);
      add(t.substr(x.begin, x.end - x.begin), p.active[u] && p.kept[u]);
      pos = x.end;
    }
    add(t.substr(pos), true);
  }
  return out;
}

CompressResult Run::Finish() {
  CompressResult r;
  const auto text_of = [&](const Part& p) {
    if (!p.present) return std::string();
    std::vector<bool> kept(p.layout.units.size());
    for (size_t u = 0; u < kept.size(); ++u) kept[u] = p.active[u] && p.kept[u];
    std::string s = Assemble(p.marked.text, p.layout.units, kept);
    return IsBlank(s) ? std::string() : s;
  };
  r.instruction = text_of(parts_[0]);
  r.question = text_of(parts_.back());
  std::vector<bool> listed(prompt_.context.size(), false);
  for (size_t i : item_order_) {
    CompressResult::Item item;
    item.original_index = i;
    item.text = text_of(parts_[1 + i]);
    item.kept = !item.text.empty();
    if (!item.kept) continue;
    listed[i] = true;
    r.context.push_back(std::move(item));
  }
  for (size_t i = 0; i < prompt_.context.size(); ++i) {
    if (!listed[i]) r.context.push_back({i, std::string(), false});
  }
  Total(r);
  if (o_.explain) r.explanation = Explain();
  return r;
}

}  // namespace terse::compressor::lingua
