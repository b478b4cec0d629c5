-- wrk: POST one chat completion; the body comes from $BODY. With $DELAY_MS set, each connection
-- pauses a random 0.5-1.5 x DELAY_MS before each request, so that a run offers a fixed rate
-- (about connections / (DELAY_MS + latency)) instead of saturating the target.
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"

local delay_ms = tonumber(os.getenv("DELAY_MS") or "")
if delay_ms and delay_ms > 0 then
  function delay()
    return math.floor(delay_ms * (0.5 + math.random()) + 0.5)
  end
end
