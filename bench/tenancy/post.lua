-- wrk: POST one chat completion ($BODY) with the key in $KEY (none when empty).
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("KEY") or ""
if key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
