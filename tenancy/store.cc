// What every store shares: row validation and usage grouping.
#include "tenancy/store.h"

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace terse::tenancy {

void Store::SettleAsync(UsageRow row, SettleDone done) { std::move(done)(Settle(row)); }

absl::Status ValidateRow(const UsageRow& row) {
  if (row.request_id.empty()) return absl::InvalidArgumentError("usage row without request id");
  if (row.tenant_id.empty()) {
    return absl::InvalidArgumentError("usage row " + row.request_id + " without tenant id");
  }
  if (row.original_prompt_tokens < 0 || row.sent_prompt_tokens < 0 || row.completion_tokens < 0 ||
      row.cached_tokens < 0 || row.cost < 0 || row.latency_ms < 0) {
    return absl::InvalidArgumentError("usage row " + row.request_id + " has a negative count");
  }
  return absl::OkStatus();
}

std::string GroupOf(const UsageRow& row, const UsageQuery& query) {
  switch (query.group_by) {
    case GroupBy::kNone:
      return "";
    case GroupBy::kDay: {
      const absl::CivilDay day = absl::ToCivilDay(row.time, query.time_zone);
      return absl::StrFormat("%04d-%02d-%02d", day.year(), day.month(), day.day());
    }
    case GroupBy::kModel:
      return row.model;
    case GroupBy::kRoute:
      return row.route;
    case GroupBy::kKey:
      return row.key_id;
  }
  return "";
}

void AddToBucket(const UsageRow& row, UsageBucket& bucket) {
  bucket.requests += 1;
  bucket.original_prompt_tokens += row.original_prompt_tokens;
  bucket.sent_prompt_tokens += row.sent_prompt_tokens;
  bucket.completion_tokens += row.completion_tokens;
  bucket.cached_tokens += row.cached_tokens;
  bucket.cost += row.cost;
  bucket.savings += row.savings;
}

}  // namespace terse::tenancy
