#!/usr/bin/env bash
# Pass-through overhead of terse, measured in one run on this machine:
#   (a) wrk -> nginx answering a fixed chat completion            (the upstream alone)
#   (b) wrk -> nginx reverse proxy (keep-alive) -> (a)             (what a mature C proxy costs)
#   (c) wrk -> terse -> (a), non-streaming and streaming (fixed SSE body)
# Prints requests/s and p50/p99 latency per concurrency level, and the ratios the issue asks for.
set -euo pipefail
cd "$(dirname "$0")/../.."
TERSE=${TERSE:-build/proxy/terse}
DURATION=${DURATION:-8s}
LEVELS=${LEVELS:-"4 16 64 256"}
work=$(mktemp -d)
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(port); UPS=$(port); PROXY=$(port); HTTP=$(port); GRPC=$(port)

answer='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"fixed","choices":[{"index":0,"message":{"role":"assistant","content":"The answer is 42."},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":6,"total_tokens":26}}'
sse=""
for w in The " answer" " is" " 42."; do
  sse+="data: {\\\"id\\\":\\\"c\\\",\\\"object\\\":\\\"chat.completion.chunk\\\",\\\"created\\\":1,\\\"model\\\":\\\"fixed\\\",\\\"choices\\\":[{\\\"index\\\":0,\\\"delta\\\":{\\\"content\\\":\\\"$w\\\"},\\\"finish_reason\\\":null}]}\n\n"
done
sse+="data: {\\\"id\\\":\\\"c\\\",\\\"object\\\":\\\"chat.completion.chunk\\\",\\\"created\\\":1,\\\"model\\\":\\\"fixed\\\",\\\"choices\\\":[],\\\"usage\\\":{\\\"prompt_tokens\\\":20,\\\"completion_tokens\\\":4,\\\"total_tokens\\\":24}}\n\ndata: [DONE]\n\n"
json_escaped=${answer//\"/\\\"}

cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP;
    location / { default_type application/json; return 200 "$json_escaped"; }
  }
  server {
    listen 127.0.0.1:$UPS;
    location / { default_type text/event-stream; return 200 "$sse"; }
  }
  upstream fixed { server 127.0.0.1:$UP; keepalive 256; }
  server {
    listen 127.0.0.1:$PROXY;
    location / {
      proxy_pass http://fixed;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work" -e "$work/nginx-error.log"

cat >"$work/terse.yaml" <<YAML
listeners:
  http: { host: 127.0.0.1, port: $HTTP }
  grpc: { host: 127.0.0.1, port: $GRPC }
  io_threads: 1
providers:
  - { name: fixed, kind: openai_compatible, base_url: "http://127.0.0.1:$UP/v1", max_connections: 512 }
  - { name: fixed-sse, kind: openai_compatible, base_url: "http://127.0.0.1:$UPS/v1", max_connections: 512 }
routes:
  - { name: fixed, model: fixed, provider: fixed }
  - { name: fixed-stream, model: fixed-stream, provider: fixed-sse }
YAML
"$TERSE" serve --config "$work/terse.yaml" --log-level error 2>"$work/terse.log" &
echo $! >"$work/terse.pid"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null && break; sleep 0.1; done

body='{"model":"fixed","messages":[{"role":"user","content":"What is the answer?"}]}'
stream_body='{"model":"fixed-stream","stream":true,"messages":[{"role":"user","content":"What is the answer?"}]}'

# wrk's summary -> "rps p50_ms p99_ms"
measure() {  # url body connections
  BODY="$2" wrk -t1 -c "$3" -d "$DURATION" --latency -s bench/gateway/post.lua "$1" 2>&1 |
    awk '/Requests\/sec/ {rps=$2}
         /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
         /Non-2xx/ {err=$NF}
         END {
           function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
           printf "%.0f %.3f %.3f %s\n", rps, ms(p50), ms(p99), (err==""?0:err) }'
}

printf '%-22s %6s %10s %9s %9s %6s\n' target conns req/s p50_ms p99_ms non2xx
declare -A RPS P99
for c in $LEVELS; do
  for t in direct nginx-proxy terse terse-stream; do
    case $t in
      direct) url="http://127.0.0.1:$UP/v1/chat/completions"; b=$body ;;
      nginx-proxy) url="http://127.0.0.1:$PROXY/v1/chat/completions"; b=$body ;;
      terse) url="http://127.0.0.1:$HTTP/v1/chat/completions"; b=$body ;;
      terse-stream) url="http://127.0.0.1:$HTTP/v1/chat/completions"; b=$stream_body ;;
    esac
    read -r rps p50 p99 err < <(measure "$url" "$b" "$c")
    RPS[$t,$c]=$rps; P99[$t,$c]=$p99
    printf '%-22s %6s %10s %9s %9s %6s\n' "$t" "$c" "$rps" "$p50" "$p99" "$err"
  done
done

echo
best() { local m=0; for c in $LEVELS; do (( ${RPS[$1,$c]} > m )) && m=${RPS[$1,$c]}; done; echo $m; }
tp=$(best terse); np=$(best nginx-proxy); ts=$(best terse-stream)
echo "peak req/s: terse $tp, terse streaming $ts, nginx proxy $np, direct $(best direct)"
awk -v a="$tp" -v b="$np" 'BEGIN { printf "throughput ratio terse / nginx-proxy: %.2f (goal >= 0.50)\n", a/b }'
# Added p99 latency at the lowest concurrency (well below saturation for every target).
low=${LEVELS%% *}
awk -v t="${P99[terse,$low]}" -v d="${P99[direct,$low]}" -v n="${P99[nginx-proxy,$low]}" -v c="$low" \
  'BEGIN { printf "p99 added at %s connections: terse %.3f ms, nginx-proxy %.3f ms (goal terse <= 1 ms)\n", c, t-d, n-d }'
