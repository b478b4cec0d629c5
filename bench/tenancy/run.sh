#!/usr/bin/env bash
# What tenancy costs a pass-through request: the same terse binary with tenancy off and on (one
# tenant whose key every request carries, limits and a budget that never refuse, the SQLite
# ledger: authentication, admission, settlement and its group-committed row per request) in front
# of nginx answering a fixed chat completion. Both run side by side and are measured in
# interleaved wrk rounds, in both orders; prints each round's requests/s and the median ratio on/off.
#
# Environment: TERSE (binary), ROUNDS (rounds per configuration, default 6), DURATION (per round,
# default 5s), CONNECTIONS (default 32), IO_THREADS (terse listeners.io_threads; 0, the default: one
# per core), STREAM (1: a streamed answer instead), STORE (sqlite, the default, or memory),
# DURABILITY (tenancy.durability: process, the default, or power).
set -euo pipefail
cd "$(dirname "$0")/../.."
TERSE=${TERSE:-build/proxy/terse}
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
IO_THREADS=${IO_THREADS:-0}
STREAM=${STREAM:-0}
STORE=${STORE:-sqlite}
DURABILITY=${DURABILITY:-process}
for tool in nginx wrk curl; do
  command -v "$tool" >/dev/null || { echo "bench/tenancy: $tool is not installed" >&2; exit 1; }
done
[[ -x $TERSE ]] || { echo "bench/tenancy: no terse binary at $TERSE (build it first)" >&2; exit 1; }

work=$(mktemp -d)
cleanup() {
  for f in "$work"/*.pid; do
    [[ -s $f ]] && kill "$(cat "$f")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

read -r UP OFF ON OFF_GRPC ON_GRPC < <(python3 -c '
import socket
held = [socket.socket() for _ in range(5)]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))')

# The upstream: nginx with a fixed answer (as bench/gateway/run.sh), its usage 20 + 6 tokens.
answer='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"fixed","choices":[{"index":0,"message":{"role":"assistant","content":"The answer is 42."},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":6,"total_tokens":26}}'
sse='data: {"id":"c","object":"chat.completion.chunk","created":1700000000,"model":"fixed","choices":[{"index":0,"delta":{"role":"assistant","content":"The answer is 42."},"finish_reason":null}]}\n\ndata: {"id":"c","object":"chat.completion.chunk","created":1700000000,"model":"fixed","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: {"id":"c","object":"chat.completion.chunk","created":1700000000,"model":"fixed","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":6,"total_tokens":26}}\n\ndata: [DONE]\n\n'
if [[ $STREAM == 1 ]]; then
  location="default_type text/event-stream; return 200 \"${sse//\"/\\\"}\";"
else
  location="default_type application/json; return 200 \"${answer//\"/\\\"}\";"
fi
mkdir -p "$work/up"
cat >"$work/up/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx-up.pid;
error_log $work/up/error.log warn;
events { worker_connections 8192; }
http {
  access_log off; keepalive_requests 1000000;
  client_body_temp_path body; proxy_temp_path proxy; fastcgi_temp_path fcgi;
  uwsgi_temp_path uwsgi; scgi_temp_path scgi;
  server { listen 127.0.0.1:$UP backlog=4096; location / { $location } }
}
NGINX
nginx -c "$work/up/nginx.conf" -p "$work/up" -e "$work/up/error.log"

eval "$("$TERSE" keygen --env)"
config() {  # http-port grpc-port [tenancy]
  cat <<YAML
listeners:
  http: { host: 127.0.0.1, port: $1 }
  grpc: { host: 127.0.0.1, port: $2 }
  io_threads: $IO_THREADS
providers:
  - { name: fixed, kind: openai_compatible, base_url: "http://127.0.0.1:$UP/v1", max_connections: 512, retry: { max_attempts: 1 } }
routes:
  - { name: fixed, model: fixed, provider: fixed }
logging: { level: error }
YAML
  [[ ${3:-} == tenancy ]] || return 0
  cat <<YAML
tenancy:
  data_dir: $work/data
  durability: $DURABILITY
  store: { kind: $STORE }
  prices:
    openai_compatible/*: { litellm_provider: openai_compatible, input_cost_per_token: 1.0e-7, output_cost_per_token: 4.0e-7 }
  tenants:
    - id: bench
      limits: { requests_per_minute: 1000000000, tokens_per_minute: 1000000000000 }
      budgets: [{ period: month, usd: 1000000000 }]
      keys: [{ id: $TERSE_KEY_ID, hash: "$TERSE_KEY_HASH" }]
YAML
}
config "$OFF" "$OFF_GRPC" >"$work/off.yaml"
config "$ON" "$ON_GRPC" tenancy >"$work/on.yaml"
cp "$TERSE" "$work/terse"  # a rebuild during the run changes nothing measured
for side in off on; do
  "$work/terse" serve --config "$work/$side.yaml" 2>"$work/$side.log" &
  echo $! >"$work/$side.pid"
done

body='{"model":"fixed","messages":[{"role":"user","content":"What is the answer?"}]}'
[[ $STREAM == 1 ]] && body='{"model":"fixed","stream":true,"messages":[{"role":"user","content":"What is the answer?"}]}'
declare -A PORT=([off]=$OFF [on]=$ON) KEYS=([off]="" [on]=$TERSE_KEY)
for side in off on; do
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:${PORT[$side]}/healthz" >/dev/null && break; sleep 0.1; done
  code=$(curl -s -o "$work/check" -w '%{http_code}' -H 'content-type: application/json' \
    ${KEYS[$side]:+-H "authorization: Bearer ${KEYS[$side]}"} -d "$body" \
    "http://127.0.0.1:${PORT[$side]}/v1/chat/completions")
  [[ $code == 200 ]] && grep -q 'answer is 42' "$work/check" ||
    { echo "bench/tenancy: $side answered $code: $(head -c 300 "$work/check")" >&2; exit 1; }
done

cpu_ticks() {  # pid -> user + system clock ticks so far
  awk '{print $14 + $15}' "/proc/$1/stat"
}
measure() {  # side -> "requests/s cpu-µs-per-request" (terse's own CPU, all its threads)
  local pid before
  pid=$(cat "$work/$1.pid")
  before=$(cpu_ticks "$pid")
  BODY=$body KEY=${KEYS[$1]} wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s bench/tenancy/post.lua \
    "http://127.0.0.1:${PORT[$1]}/v1/chat/completions" >"$work/wrk.out"
  if grep -q 'Non-2xx' "$work/wrk.out"; then
    echo "bench/tenancy: $1 had errors: $(grep Non-2xx "$work/wrk.out")" >&2; exit 1
  fi
  local ticks=$(( $(cpu_ticks "$pid") - before ))
  awk -v ticks="$ticks" -v hz="$(getconf CLK_TCK)" '
    /requests in/ { n = $1 }
    /Requests\/sec/ { rps = $2 }
    END { printf "%s %.1f\n", rps, ticks / hz * 1e6 / n }' "$work/wrk.out"
}
echo "terse tenancy off/on, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "$CONNECTIONS connections, $DURATION rounds, stream=$STREAM, store=$STORE," \
  "durability=$DURABILITY"
measure off >/dev/null  # warm-up of both
measure on >/dev/null
off=() on=() off_cpu=() on_cpu=()
for ((r = 0; r < ROUNDS; r++)); do
  if ((r % 2 == 0)); then order="off on"; else order="on off"; fi
  for side in $order; do
    read -r rps cpu < <(measure "$side")
    if [[ $side == off ]]; then off+=("$rps") off_cpu+=("$cpu"); else on+=("$rps") on_cpu+=("$cpu"); fi
    printf 'round %d %-3s %10.0f req/s %8.1f CPU-µs/request\n' "$r" "$side" "$rps" "$cpu"
  done
done
rows=$(curl -s -H "authorization: Bearer $TERSE_KEY" "http://127.0.0.1:$ON/v1/terse/usage" |
  python3 -c 'import json, sys; d = json.load(sys.stdin)["data"]; print(d[0]["requests"] if d else 0)')
python3 - "${off[*]}" "${on[*]}" "${off_cpu[*]}" "${on_cpu[*]}" "$rows" <<'PY'
import statistics, sys
off, on, off_cpu, on_cpu = ([float(x) for x in a.split()] for a in sys.argv[1:5])
pairs = [b / a for a, b in zip(off, on)]
m = statistics.median
print(f"median req/s: off {m(off):.0f}, on {m(on):.0f}; ratio on/off {m(on) / m(off):.3f} "
      f"(per round {min(pairs):.3f}-{max(pairs):.3f}); CPU-µs/request: off {m(off_cpu):.1f}, "
      f"on {m(on_cpu):.1f}; ledger rows {sys.argv[5]}")
PY
