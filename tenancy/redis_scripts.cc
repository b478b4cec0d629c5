// The scripts' Lua. Lua's numbers are doubles: times (micros, seconds) stay below 2^53 and are
// exact; budget amounts are compared as two-part integers (big), sums go through HINCRBY (64-bit
// integers), and values written back are formatted with %d, never with Lua's own %.14g.
#include "tenancy/redis_scripts.h"

#include <string>

namespace terse::tenancy::redis_scripts {
namespace {

constexpr char kPrelude[] = R"lua(
local P = string.sub(KEYS[1], 1, -6)  -- the tenant's prefix: KEYS[1] is '<prefix>epoch'

local function fields(s, sep)  -- split on a plain one-character separator, keeping empty fields
  local t, i = {}, 1
  while true do
    local j = string.find(s, sep, i, true)
    if not j then t[#t + 1] = string.sub(s, i) return t end
    t[#t + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end

local function neg(x)  -- negates an integer written as a string
  if x == '0' then return '0' end
  if string.sub(x, 1, 1) == '-' then return string.sub(x, 2) end
  return '-' .. x
end

local function ensure_epoch(stamp)  -- 1 when the tenant starts afresh
  if redis.call('EXISTS', P .. 'epoch') == 1 then return 0 end
  for _, m in ipairs(redis.call('SMEMBERS', P .. 'counters')) do redis.call('DEL', P .. 'b:' .. m) end
  redis.call('DEL', P .. 'counters', P .. 'holds', P .. 'deadlines')
  redis.call('SET', P .. 'epoch', stamp)
  return 1
end

local function release(hold)  -- gives a hold's estimate back to its counters; its fields
  local f = fields(hold, ' ')
  for i = 1, tonumber(f[4]) do
    local k = P .. 'b:' .. f[4 + i]
    if redis.call('EXISTS', k) == 1 then redis.call('HINCRBY', k, 'held', neg(f[3])) end
  end
  return f
end

local function drop_hold(id)
  redis.call('HDEL', P .. 'holds', id)
  redis.call('ZREM', P .. 'deadlines', id)
end

local function expire(now_us)
  local n = 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'deadlines', '-inf', now_us)) do
    local h = redis.call('HGET', P .. 'holds', id)
    if h then release(h) n = n + 1 end
    drop_hold(id)
  end
  return n
end

local function counts(member, key, t)  -- whether counter `member` counts a row of `key` at t
  local f = fields(member, '|')
  return (f[1] == '' or f[1] == key) and tonumber(f[2]) <= t and t < tonumber(f[3])
end

local function add_to_counters(key, t, cost)  -- cost: an integer string
  for _, m in ipairs(redis.call('SMEMBERS', P .. 'counters')) do
    if counts(m, key, t) then redis.call('HINCRBY', P .. 'b:' .. m, 'settled', cost) end
  end
end

-- Integers beyond 2^53 (budgets go to 1e18 micros) as {hi, lo}: hi * 1e9 + lo, 0 <= lo < 1e9.
local function big(x)
  local negative = string.sub(x, 1, 1) == '-'
  if negative then x = string.sub(x, 2) end
  local n = #x
  local hi = n > 9 and tonumber(string.sub(x, 1, n - 9)) or 0
  local lo = tonumber(string.sub(x, math.max(1, n - 8)))
  if negative then
    hi, lo = -hi, -lo
    if lo < 0 then lo = lo + 1e9 hi = hi - 1 end
  end
  return {hi, lo}
end
local function big_add(a, b)
  local hi, lo = a[1] + b[1], a[2] + b[2]
  if lo >= 1e9 then lo = lo - 1e9 hi = hi + 1 end
  return {hi, lo}
end
local function big_le(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] <= b[2]) end

-- Instants and durations as {s, ns, rem}: 0 <= ns < 1e9, 0 <= rem < per_minute.
local function t3(s)
  local f = fields(s, ' ')
  return {tonumber(f[1]), tonumber(f[2]), tonumber(f[3])}
end
local function less(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[3] < b[3]
end
local function plus(a, b, pm)
  local s, n, r = a[1] + b[1], a[2] + b[2], a[3] + b[3]
  if r >= pm then r = r - pm n = n + 1 end
  if n >= 1e9 then n = n - 1e9 s = s + 1 end
  return {s, n, r}
end
local function fmt(a) return string.format('%d %d %d', a[1], a[2], a[3]) end
local function ttl_ms(tat, now)  -- a rate state is kept a minute past the time it is full again
  return string.format('%d', math.max(0, (tat[1] - now[1]) * 1000 + math.floor((tat[2] - now[2]) / 1e6)) + 60000)
end
)lua";

constexpr char kAdmit[] = R"lua(
local created = ensure_epoch(ARGV[2])
expire(ARGV[2])
local id = ARGV[1]
if redis.call('HEXISTS', P .. 'holds', id) == 1 then return {'exists', created} end
local nb, nr, nl = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local state, missing = {}, {'missing', created}
for i = 1, nb do
  local v = redis.call('HMGET', KEYS[1 + i], 'settled', 'held')
  if v[1] then state[i] = v else missing[#missing + 1] = i - 1 end
end
if #missing > 2 then return missing end
local tats = {}
for i = 1, nr do tats[i] = redis.call('GET', KEYS[1 + nb + i]) end
local now = {tonumber(ARGV[3]), tonumber(ARGV[4]), 0}
local full_at = {now[1] + 60, now[2], 0}  -- a rate admits while its new state is within a minute
local estimate = big(ARGV[6])
local admitted, new = true, {}
for l = 1, nl do
  local b = 10 + nb + 7 * (l - 1)
  local idx, amount = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local ok
  if ARGV[b + 1] == 'b' then
    local used = big_add(big(state[idx][1]), big(state[idx][2]))
    ok = big_le(big_add(used, estimate), big(ARGV[b + 3]))
  elseif ARGV[b + 6] == '1' then
    ok = false
  else
    local base = now
    if tats[idx] then
      local t = t3(tats[idx])
      if less(now, t) then base = t end
    end
    local v = plus(base, t3(ARGV[b + 5]), amount)
    ok = not less(full_at, v)
    if ok then new[l] = v end
  end
  if not ok and ARGV[b + 4] ~= '1' then admitted = false end
end
local reply = {admitted and 'admitted' or 'refused', created}
for i = 1, nb do
  reply[#reply + 1] = state[i][1]
  reply[#reply + 1] = state[i][2]
end
for i = 1, nr do reply[#reply + 1] = tats[i] or '' end
if not admitted then return reply end
local hold = {ARGV[2], ARGV[5], ARGV[6], ARGV[8]}
for i = 1, nb do
  redis.call('HINCRBY', KEYS[1 + i], 'held', ARGV[6])
  hold[#hold + 1] = ARGV[10 + i]
end
local tpm = {}
for l = 1, nl do
  if new[l] then
    local b = 10 + nb + 7 * (l - 1)
    local key = KEYS[1 + nb + tonumber(ARGV[b + 2])]
    redis.call('SET', key, fmt(new[l]), 'PX', ttl_ms(new[l], now))
    if ARGV[b + 7] == '1' and tonumber(ARGV[7]) > 0 then
      tpm[#tpm + 1] = key
      tpm[#tpm + 1] = ARGV[7]
      tpm[#tpm + 1] = ARGV[b + 3]
    end
  end
end
hold[#hold + 1] = string.format('%d', #tpm / 3)
for _, x in ipairs(tpm) do hold[#hold + 1] = x end
redis.call('HSET', P .. 'holds', id, table.concat(hold, ' '))
redis.call('ZADD', P .. 'deadlines', ARGV[5], id)
return reply
)lua";

constexpr char kBook[] = R"lua(
local created = ensure_epoch(ARGV[2])
local id = ARGV[1]
if redis.call('HEXISTS', P .. 'pending', id) == 1 then return {created, 0} end
if ARGV[3] ~= '' and redis.call('HGET', P .. 'holds', id) == ARGV[3] then
  local f = release(ARGV[3])
  drop_hold(id)
  local nb = tonumber(f[4])
  local floor = {tonumber(ARGV[8]), tonumber(ARGV[9]), 0}
  for i = 1, tonumber(f[5 + nb]) do
    local key, pm = f[5 + nb + 3 * i - 2], tonumber(f[5 + nb + 3 * i])
    local cur = redis.call('GET', key)
    if cur then
      -- The estimate counted becomes the actual count, never before the admission itself.
      local v = plus(t3(cur), t3(ARGV[9 + i]), pm)
      if less(v, floor) then v = floor end
      redis.call('SET', key, fmt(v), 'PX', ttl_ms(v, floor))
    end
  end
end
add_to_counters(ARGV[5], tonumber(ARGV[4]), ARGV[6])
redis.call('HSET', P .. 'pending', id, ARGV[7] .. '|' .. ARGV[4] .. '|' .. ARGV[5] .. '|' .. ARGV[6])
return {created, 1}
)lua";

constexpr char kReplay[] = R"lua(
local created = ensure_epoch(ARGV[2])
local id = ARGV[1]
local pend = redis.call('HGET', P .. 'pending', id)
if ARGV[7] == '1' then
  if pend then
    redis.call('HDEL', P .. 'pending', id)  -- counted when it was spooled
  else
    local h = redis.call('HGET', P .. 'holds', id)
    if h then release(h) drop_hold(id) end
    add_to_counters(ARGV[4], tonumber(ARGV[3]), ARGV[5])
  end
elseif pend and fields(pend, '|')[1] == ARGV[6] then
  -- The ledger had the row: ours (a commit that looked failed) stays counted; another's makes
  -- this spooled copy a duplicate whose cost comes back out.
  if ARGV[8] ~= '1' then add_to_counters(ARGV[4], tonumber(ARGV[3]), neg(ARGV[5])) end
  redis.call('HDEL', P .. 'pending', id)
end
return created
)lua";

constexpr char kInstall[] = R"lua(
local created = ensure_epoch(ARGV[1])
local n = tonumber(ARGV[2])
local base = 3 + 2 * n
for i = 1, tonumber(ARGV[base]) do
  local id, token = ARGV[base + 2 * i - 1], ARGV[base + 2 * i]
  local pend = redis.call('HGET', P .. 'pending', id)
  -- In the ledger as this very booking: its sum counts it; the pending mark has done its work.
  if pend and fields(pend, '|')[1] == token then redis.call('HDEL', P .. 'pending', id) end
end
local rows = redis.call('HVALS', P .. 'pending')
local holds = redis.call('HVALS', P .. 'holds')
for i = 1, n do
  local m = ARGV[1 + 2 * i]
  local k = P .. 'b:' .. m
  if redis.call('EXISTS', k) == 0 then
    local extra, held = 0, 0
    for _, row in ipairs(rows) do
      local f = fields(row, '|')
      if counts(m, f[3], tonumber(f[2])) then extra = extra + tonumber(f[4]) end
    end
    for _, h in ipairs(holds) do
      local f = fields(h, ' ')
      for b = 1, tonumber(f[4]) do
        if f[4 + b] == m then held = held + tonumber(f[3]) end
      end
    end
    redis.call('HSET', k, 'settled', ARGV[2 + 2 * i], 'held', string.format('%d', held))
    if extra ~= 0 then redis.call('HINCRBY', k, 'settled', string.format('%d', extra)) end
    redis.call('SADD', P .. 'counters', m)
  end
end
return created
)lua";

constexpr char kSpend[] = R"lua(
local created = ensure_epoch(ARGV[1])
local v = redis.call('HMGET', P .. 'b:' .. ARGV[2], 'settled', 'held')
if not v[1] then return {created} end
return {created, v[1], v[2]}
)lua";

constexpr char kExpire[] = R"lua(
if redis.call('EXISTS', P .. 'epoch') == 0 then return 0 end
local n = expire(ARGV[1])
local now = tonumber(ARGV[1])
for _, m in ipairs(redis.call('SMEMBERS', P .. 'counters')) do
  local k = P .. 'b:' .. m
  if tonumber(fields(m, '|')[3]) <= now and tonumber(redis.call('HGET', k, 'held') or '0') == 0 then
    redis.call('DEL', k)
    redis.call('SREM', P .. 'counters', m)
  end
end
return n
)lua";

const RedisScript& Make(const char* body) {
  // One per call site (each caller below has its own static).
  return *new RedisScript(std::string(kPrelude) + body);
}

}  // namespace

const RedisScript& Admit() {
  static const RedisScript& script = Make(kAdmit);
  return script;
}
const RedisScript& Book() {
  static const RedisScript& script = Make(kBook);
  return script;
}
const RedisScript& Replay() {
  static const RedisScript& script = Make(kReplay);
  return script;
}
const RedisScript& Install() {
  static const RedisScript& script = Make(kInstall);
  return script;
}
const RedisScript& Spend() {
  static const RedisScript& script = Make(kSpend);
  return script;
}
const RedisScript& Expire() {
  static const RedisScript& script = Make(kExpire);
  return script;
}

}  // namespace terse::tenancy::redis_scripts
