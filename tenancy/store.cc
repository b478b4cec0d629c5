// What every store shares: row validation and usage grouping.
#include "tenancy/store.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
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

namespace {
constexpr int64_t kQuarterHourUs = 15 * 60 * int64_t{1'000'000};
}  // namespace

std::string UsageQuerySql(GroupBy group_by, std::string_view table,
                          const std::string_view (&params)[3], std::string_view as_text) {
  std::string group = "''";
  switch (group_by) {
    case GroupBy::kNone:
      break;
    case GroupBy::kDay:
      group = absl::StrCat("(time_us / ", kQuarterHourUs, ")", std::string(as_text));
      break;
    case GroupBy::kModel:
      group = "model";
      break;
    case GroupBy::kRoute:
      group = "route";
      break;
    case GroupBy::kKey:
      group = "key_id";
      break;
  }
  return absl::StrCat(
      "SELECT ", group, ", COUNT(*), SUM(original_prompt_tokens), SUM(sent_prompt_tokens), ",
      "SUM(completion_tokens), SUM(cached_tokens), SUM(cost_micros), SUM(savings_micros) FROM ",
      std::string(table), " WHERE tenant_id = ", std::string(params[0]),
      " AND time_us >= ", std::string(params[1]), " AND time_us < ", std::string(params[2]),
      " GROUP BY 1");
}

void UsageFolder::Add(int64_t group_number, std::string group_text, const int64_t (&sums)[7]) {
  UsageRow first;  // stands for the group's rows: only its grouped field is read
  first.time = absl::FromUnixMicros(group_number * kQuarterHourUs);
  first.model = first.route = first.key_id = std::move(group_text);
  std::string name = GroupOf(first, query_);
  UsageBucket& bucket = groups_[name];
  bucket.group = std::move(name);
  bucket.requests += sums[0];
  bucket.original_prompt_tokens += sums[1];
  bucket.sent_prompt_tokens += sums[2];
  bucket.completion_tokens += sums[3];
  bucket.cached_tokens += sums[4];
  bucket.cost += sums[5];
  bucket.savings += sums[6];
}

std::vector<UsageBucket> UsageFolder::Buckets() && {
  std::vector<UsageBucket> buckets;
  for (auto& [name, bucket] : groups_) buckets.push_back(std::move(bucket));
  return buckets;
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
