// The fine step: LLMLingua's iterative token-level compression. The output parts run in order
// through one LM session, segment by segment; each segment is scored against the compressed past,
// its units are kept by score within their group's share of the budget, and the past grows by
// what was kept. With contrastive scoring a second session, conditioned on the question, runs
// alongside.
#include <algorithm>
#include <future>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "base/status_macros.h"
#include "compressor/lingua_run.h"

namespace terse::compressor::lingua {
namespace {

// Verbatim units up to this many LM tokens are scored inside their segment (they condition the
// scores of their neighbours); longer ones (code, JSON) are appended to the past unscored.
constexpr int kInlineVerbatimTokens = 32;

// The fine step over one part. The two sessions run on two threads where both have work, so the
// model can batch their steps together.
class PartPass {
 public:
  PartPass(Part& p, std::vector<Group>& groups, const CompressOptions& o, int max_context,
           LanguageModel::Session& plain, LanguageModel::Session* conditioned)
      : p_(p),
        groups_(groups),
        o_(o),
        segment_tokens_(
            static_cast<size_t>(std::clamp(o.segment_tokens, 8, std::max(8, max_context / 2)))),
        append_chunk_(static_cast<size_t>(std::max(8, max_context / 2))),
        plain_(plain),
        conditioned_(conditioned),
        unit_si_(p.layout.units.size(), 0.0) {}

  // Walks the part's tokens: segments of about segment_tokens (cut only where a unit starts),
  // with long verbatim blocks going to the past unscored.
  absl::Status Run() {
    int32_t last_unit = -1;  // last unit touched by the pending segment
    for (size_t t = 0; t < p_.tokens.size(); ++t) {
      const int32_t u = p_.token_unit[t];
      if (u >= 0 && !p_.active[u]) continue;  // dropped by the sentence filter
      const bool starts_unit = u < 0 || u > last_unit;
      if (u >= 0 && (p_.layout.units[u].flags & kUnitVerbatim) &&
          p_.unit_tokens[u] > kInlineVerbatimTokens && starts_unit) {
        RETURN_IF_ERROR(Flush());
        ASSIGN_OR_RETURN(t, AppendVerbatim(t));
        last_unit = u;
        continue;
      }
      if (pending_.size() >= segment_tokens_ && starts_unit) RETURN_IF_ERROR(Flush());
      pending_.push_back(t);
      if (u >= 0) last_unit = std::max(last_unit, u + p_.token_units[t] - 1);
    }
    return Flush();
  }

 private:
  // Whether a unit needs a decision (its group keeps less than all of it).
  bool Undecided(int32_t u) const {
    if (u < 0 || !p_.active[u] || p_.group[u] < 0) return false;
    const Group& g = groups_[p_.group[u]];
    return g.target < g.elastic;
  }

  // Keeps the long verbatim unit whose first token is `t` and appends its tokens to the past as
  // they are, unscored; returns the index of its last token.
  absl::StatusOr<size_t> AppendVerbatim(size_t t) {
    const int32_t u = p_.token_unit[t];
    ids_.clear();
    size_t e = t;
    while (e < p_.tokens.size() && p_.token_unit[e] == u) ids_.push_back(p_.tokens[e++].id);
    p_.kept[u] = true;
    RETURN_IF_ERROR(Append(ids_));
    last_space_ = false;
    return e - 1;
  }

  // Appends `chunk` to the past of both sessions, in pieces that fit the context.
  absl::Status Append(const std::vector<int32_t>& chunk) {
    for (size_t b = 0; b < chunk.size(); b += append_chunk_) {
      const size_t e = std::min(chunk.size(), b + append_chunk_);
      std::span<const int32_t> piece(chunk.data() + b, e - b);
      std::future<absl::Status> other;
      if (conditioned_ != nullptr) {
        other = std::async(std::launch::async, [&] { return conditioned_->Append(piece); });
      }
      const absl::Status mine = plain_.Append(piece);
      if (other.valid()) RETURN_IF_ERROR(other.get());
      RETURN_IF_ERROR(mine);
    }
    return absl::OkStatus();
  }

  // Decides the pending segment and grows the past by what it keeps.
  absl::Status Flush() {
    if (pending_.empty()) return absl::OkStatus();
    std::vector<size_t> units;  // units touched, in order
    bool decide = false;
    for (size_t t : pending_) {
      const int32_t u = p_.token_unit[t];
      if (u < 0) continue;
      for (int32_t k = u; k < u + p_.token_units[t]; ++k) {
        if (units.empty() || units.back() < static_cast<size_t>(k)) units.push_back(k);
        decide = decide || Undecided(k);
      }
    }
    // Which sessions scored exactly this segment (their last Score), so can reuse its cache.
    bool plain_scored = false;
    bool conditioned_scored = false;
    if (decide) {
      conditioned_scored = conditioned_ != nullptr && p_.kind == PartKind::kItem;
      ASSIGN_OR_RETURN(std::vector<float> si, ScoreSegment(conditioned_scored));
      plain_scored = true;
      KeepBestOfSegment(units, si);
    }
    KeepTheUndecided(units);
    return GrowPast(plain_scored, conditioned_scored);
  }

  // Self-information of the segment's tokens; contrastive (minus the question-conditioned
  // score: how much the question makes the token more predictable) when `with_question`.
  absl::StatusOr<std::vector<float>> ScoreSegment(bool with_question) {
    ids_.clear();
    for (size_t t : pending_) ids_.push_back(p_.tokens[t].id);
    std::future<absl::StatusOr<std::vector<float>>> conditioned;
    if (with_question) {
      conditioned = std::async(std::launch::async, [&] { return conditioned_->Score(ids_); });
    }
    absl::StatusOr<std::vector<float>> scored = plain_.Score(ids_);
    if (conditioned.valid()) {
      absl::StatusOr<std::vector<float>> si_q = conditioned.get();
      RETURN_IF_ERROR(si_q.status());
      RETURN_IF_ERROR(scored.status());
      for (size_t k = 0; k < scored->size(); ++k) (*scored)[k] -= (*si_q)[k];
    }
    return scored;
  }

  // Unit scores from the segment's token scores (`si`), then, per group with undecided units
  // here, the best of them within this segment's share of the group's remaining target.
  void KeepBestOfSegment(const std::vector<size_t>& units, const std::vector<float>& si) {
    for (size_t k = 0; k < pending_.size(); ++k) {
      const size_t t = pending_[k];
      const int32_t u = p_.token_unit[t];
      if (u < 0) continue;
      const double share = si[k] * p_.token_scale[t] / p_.token_units[t];
      for (int32_t j = u; j < u + p_.token_units[t]; ++j) unit_si_[j] += share;
    }
    std::unordered_map<int, std::vector<size_t>> by_group;
    for (size_t u : units) {
      if (!p_.active[u]) continue;
      p_.score[u] = Quantize(unit_si_[u] / p_.cost[u]);
      p_.scored[u] = true;
      if (Undecided(static_cast<int32_t>(u))) by_group[p_.group[u]].push_back(u);
    }
    std::vector<int> group_ids;
    for (const auto& [g, _] : by_group) group_ids.push_back(g);
    std::sort(group_ids.begin(), group_ids.end());
    for (int g : group_ids) {
      Group& grp = groups_[g];
      double seg_cost = 0;
      for (size_t u : by_group[g]) seg_cost += p_.cost[u];
      const double remaining = std::max(0.0, grp.remaining_target);
      const double share =
          grp.remaining_cost > 0 ? remaining * std::min(1.0, seg_cost / grp.remaining_cost) : 0.0;
      const double kept = KeepBest(by_group[g], p_.score, p_.cost, share, &p_.kept);
      grp.remaining_target -= kept;
      grp.remaining_cost -= seg_cost;
      grp.kept += kept;
    }
  }

  // Everything not decided by score is kept: forced units and groups kept whole.
  void KeepTheUndecided(const std::vector<size_t>& units) {
    for (size_t u : units) {
      if (p_.active[u] && !Undecided(static_cast<int32_t>(u))) {
        p_.kept[u] = true;
        if (p_.group[u] >= 0) groups_[p_.group[u]].kept += p_.cost[u];
      }
    }
  }

  // The past grows by the kept tokens of the segment (whitespace-only tokens collapsed). Unless
  // exact_past asks for a fresh pass, a session that scored the segment reuses the cache entries
  // its scoring pass computed.
  absl::Status GrowPast(bool plain_scored, bool conditioned_scored) {
    ids_.clear();
    std::vector<bool> keep_flags;
    keep_flags.reserve(pending_.size());
    for (size_t t : pending_) {
      const int32_t u = p_.token_unit[t];
      bool keep;
      if (u < 0) {
        keep = !last_space_;
        last_space_ = true;
      } else {
        keep = false;
        for (int32_t j = u; j < u + p_.token_units[t]; ++j) keep = keep || p_.kept[j];
        if (keep) last_space_ = false;
      }
      if (keep) ids_.push_back(p_.tokens[t].id);
      keep_flags.push_back(keep);
    }
    pending_.clear();
    if (o_.exact_past || !plain_scored) return Append(ids_);
    std::future<absl::Status> other;
    if (conditioned_ != nullptr) {
      other = std::async(std::launch::async, [&] {
        return conditioned_scored ? conditioned_->AppendScored(keep_flags)
                                  : conditioned_->Append(ids_);
      });
    }
    const absl::Status mine = plain_.AppendScored(keep_flags);
    if (other.valid()) RETURN_IF_ERROR(other.get());
    return mine;
  }

  Part& p_;
  std::vector<Group>& groups_;
  const CompressOptions& o_;
  const size_t segment_tokens_;  // LM tokens per segment
  const size_t append_chunk_;    // most tokens appended to the past in one call
  LanguageModel::Session& plain_;
  LanguageModel::Session* const conditioned_;  // null without contrastive scoring

  std::vector<double> unit_si_;  // per unit: self-information of its tokens so far
  std::vector<size_t> pending_;  // token indices of the pending segment
  std::vector<int32_t> ids_;     // token ids being scored or appended
  bool last_space_ = true;       // collapse whitespace-only tokens in the appended past
};

}  // namespace

absl::Status Run::CompressFine() {
  std::unique_ptr<LanguageModel::Session> plain = lm_.NewSession();
  std::unique_ptr<LanguageModel::Session> conditioned;
  if (o_.contrastive && !question_ids_.empty() && !item_order_.empty()) {
    conditioned = lm_.NewSession();
    RETURN_IF_ERROR(conditioned->Append(question_ids_));
  }
  ASSIGN_OR_RETURN(std::vector<int32_t> join_ids, Encode(kJoin));
  bool first = true;
  for (size_t part : OutputParts()) {
    if (!first) {
      RETURN_IF_ERROR(plain->Append(join_ids));
      if (conditioned) RETURN_IF_ERROR(conditioned->Append(join_ids));
    }
    first = false;
    PartPass pass(parts_[part], groups_, o_, lm_.max_context(), *plain, conditioned.get());
    RETURN_IF_ERROR(pass.Run());
  }
  return absl::OkStatus();
}

}  // namespace terse::compressor::lingua
