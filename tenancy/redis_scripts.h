// The Lua scripts of the Redis store: each change to a tenant's state is one of them, so it is
// atomic. Every key a script touches starts with the tenant's prefix, `<p>:{<tenant>}:`, whose
// hash tag puts all of one tenant in one cluster slot; KEYS[1] is always the tenant's epoch key.
//
// A tenant's keys (after the prefix):
//   epoch        marker: its absence means the state was lost (a Redis restart); the scripts
//                then start the tenant afresh and counters are rebuilt from the ledger
//   counters     set of installed budget counters, as members `key_id|start_us|end_us`
//   b:<member>   hash {settled, held}: micros in the window
//   r:<key_id>|<kind>|<per_minute>|<shadow>   a rate's theoretical arrival time, "s ns rem"
//                (seconds, nanoseconds, and rem/per_minute of a nanosecond: exact in doubles)
//   holds        hash request id -> "time_us deadline_us estimate nb member... nt ratekey
//                tokens per_minute ..." (budgets held, tokens-per-minute rates counted)
//   deadlines    sorted set of request ids by hold deadline (micros)
//   pending      hash request id -> "token|time_us|key_id|cost": rows counted in the counters
//                that the ledger may not hold yet (in flight, or spooled while PostgreSQL was
//                unreachable); a counter installed from the ledger adds them
#pragma once

#include "tenancy/redis_client.h"

namespace terse::tenancy::redis_scripts {

// Admits or refuses, holding on every budget and counting every rate at once.
// KEYS: epoch, the distinct budget counters, the distinct rate states.
// ARGV: id, now_us, now_s, now_ns, deadline_us, estimate, tokens, nb, nr, nl, nb members, then
// per limit: kind (b|r), index (1-based, among budgets or rates), amount, shadow (0|1), the cost
// as "s ns rem", never (0|1), tokens-per-minute (0|1).
// Returns {"exists", created}, {"missing", created, budget indexes (0-based)...}, or
// {"admitted"|"refused", created, settled and held per budget..., rate state or "" per rate}:
// the states before the admission, from which the caller computes the Decision.
const RedisScript& Admit();

// Books a row written to the ledger in this transaction (or spooled): releases its hold if it is
// still `expected`, corrects its tokens-per-minute rates, adds its cost to every installed counter
// that counts it and marks it pending. A row pending already was counted: nothing changes.
// ARGV: id, now_us, expected hold (or ""), time_us, key_id, cost, token, row_s, row_ns, then
// per tokens-per-minute rate of the hold, the correction "s ns rem". Returns {created, booked}.
const RedisScript& Book();

// After a spooled row reached the ledger: ARGV id, now_us, time_us, key_id, cost, token,
// inserted (0|1), ours (0|1: the ledger's row carries `token`). Counts the row unless it was
// counted, and takes back a spooled duplicate's cost. Returns created.
const RedisScript& Replay();

// Installs counters from ledger sums. ARGV: now_us, n, then member and sum per counter, then np
// and pairs (request id, token) of pending rows the ledger holds. Returns created.
const RedisScript& Install();

// ARGV: now_us, member. Returns {created} when not installed, else {created, settled, held}.
const RedisScript& Spend();

// Releases holds due at now_us (ARGV[1]) and forgets ended counters with nothing held. Returns
// the holds released. A tenant without an epoch is left alone.
const RedisScript& Expire();

}  // namespace terse::tenancy::redis_scripts
