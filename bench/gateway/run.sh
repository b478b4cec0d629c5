#!/usr/bin/env bash
# Pass-through overhead of terse, measured in one run on this machine:
#   (a) direct:      wrk -> nginx answering a fixed chat completion / a fixed SSE stream
#   (b) nginx-proxy: wrk -> nginx as a plain reverse proxy (keep-alive upstream) -> (a)
#   (c) terse:       wrk -> terse -> (a), over terse's own HTTP/1.1 client
#   (d) terse-libcurl: the same through a provider with `libcurl_only: true`
# each non-streaming and streaming. Prints requests/s, p50/p99 latency, and CPU time (with the
# kernel's share) and context switches per request of the answering process, per concurrency level,
# then the same targets at one fixed request rate of half terse's peak (sent by paced_load,
# bench/gateway/paced_load.cc, each request at its own Poisson time), nginx-proxy and direct at
# half of nginx-proxy's own peak, and the ratios.
#
# Environment: TERSE (binary), DURATION (per measurement), LEVELS (connection counts),
# IO_THREADS (terse listeners.io_threads; 0 = one per core), PROXY_WORKERS (nginx proxy workers),
# HALF_LOAD (paced, the default: the half-load rounds' requests sent by paced_load at Poisson
# times; wrk: by wrk connections pausing DELAY_MS), PACED_LOAD (its binary), PACED_CONNECTIONS
# (its pool), PACED_TIMELINE (a path prefix: paced_load writes each request's due time and latency
# to PREFIX.<target>), DELAY_MS (half-load pause with wrk), HALF_LOAD_RUNS (interleaved half-load
# rounds; medians compared),
# OWN_HALF_LOAD (1, the default: nginx-proxy at half of its own peak too), BEHIND_P50_MS (a proxy
# with a higher p50 in a paced round has fallen behind the rate and is left out of the later
# rounds; one whose peak is below the rate is left out of all),
# CALM_STEAL_MS (a half-load round is calm when no target in it lost more to the hypervisor's
# steal; the calm rounds' medians are printed too),
# TERSE_WRAP (command prefix for terse), PROMPT_BYTES (the user message's length; 0, the default,
# is a short question), PROFILE (see below), TARGETS (which of the eight targets to measure; all
# by default, and direct, nginx-proxy and terse of both kinds always), BASELINE (another terse
# binary, say of an earlier commit: measured as the targets `baseline` and `baseline-stream`,
# always, beside terse and interleaved with it, for an A/B comparison in one run on a machine
# whose speed drifts), PIN (1: each proxy measured, nginx or terse, runs on a core of its own, the
# last one, and wrk and the upstream on the others, as a gateway runs on a machine of its own; the
# proxies then default to one worker and one I/O thread each; this script and all it starts but the
# proxies run on the others too), SHIELD (1, with PIN=1 and as root: for the run, every other task
# of the machine that may move is moved off the proxies' core, and put back at the end, as
# `cset shield` would; on a shared machine, a daemon's burst on that core otherwise stalls the
# proxy being measured for milliseconds; see the README).
# Run from anywhere; needs nginx, wrk, curl and paced_load (built with the benchmarks; perf or
# valgrind to profile; taskset to pin).
set -euo pipefail
cd "$(dirname "$0")/../.."
TERSE=${TERSE:-build/proxy/terse}
DURATION=${DURATION:-5s}
LEVELS=${LEVELS:-"1 8 32 128"}
PIN=${PIN:-0}
PROXY_CPUS='' LOAD_CPUS=''
CORES=$(nproc)  # before the script is pinned, after which nproc counts the load cores only
if [[ $PIN == 1 ]]; then
  (( CORES >= 2 )) || { echo "bench/gateway: PIN=1 needs two cores or more" >&2; exit 1; }
  PROXY_CPUS=$((CORES - 1)) LOAD_CPUS=0-$((CORES - 2))
  IO_THREADS=${IO_THREADS:-1} PROXY_WORKERS=${PROXY_WORKERS:-1}
  taskset -cp "$LOAD_CPUS" $$ >/dev/null  # the script, and so wrk, curl, awk...: off the proxy core
fi
SHIELD=${SHIELD:-0}
if [[ $SHIELD == 1 && $PIN != 1 ]]; then
  echo "bench/gateway: SHIELD=1 needs PIN=1" >&2; exit 2
fi
IO_THREADS=${IO_THREADS:-0}
PROXY_WORKERS=${PROXY_WORKERS:-auto}
# Command prefixes that put a process on the proxies' cores or on the load's (none unpinned).
on_proxy_cpus=${PROXY_CPUS:+taskset -c $PROXY_CPUS}
on_load_cpus=${LOAD_CPUS:+taskset -c $LOAD_CPUS}
DELAY_MS=${DELAY_MS:-10}
HALF_LOAD=${HALF_LOAD:-paced}
PACED_LOAD=${PACED_LOAD:-build/bench/paced_load}
PACED_CONNECTIONS=${PACED_CONNECTIONS:-256}
HALF_LOAD_RUNS=${HALF_LOAD_RUNS:-5}
CALM_STEAL_MS=${CALM_STEAL_MS:-10}
PROMPT_BYTES=${PROMPT_BYTES:-0}
TERSE_WRAP=${TERSE_WRAP:-}
BASELINE=${BASELINE:-}

for tool in nginx wrk curl ${PROXY_CPUS:+taskset}; do
  command -v "$tool" >/dev/null || { echo "bench/gateway: $tool is not installed" >&2; exit 1; }
done
[[ -x $TERSE ]] || { echo "bench/gateway: no terse binary at $TERSE (build it first)" >&2; exit 1; }
case $HALF_LOAD in
  paced)
    [[ -x $PACED_LOAD ]] ||
      { echo "bench/gateway: no paced_load at $PACED_LOAD (build it first)" >&2; exit 1; } ;;
  wrk) ;;
  *) echo "bench/gateway: HALF_LOAD must be paced or wrk" >&2; exit 2 ;;
esac

work=$(mktemp -d)
# SHIELD=1: `shield on` moves every task that may run on the proxy core and elsewhere too off
# it, writing what each may run on to $work/shielded; `shield off` puts each back. Per-core kernel
# threads cannot move, and a task that may run nowhere else stays.
shield() {  # on | off
  python3 - "$1" "$PROXY_CPUS" "$work/shielded" <<'PY'
import os, sys
mode, proxy, saved = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "off":
    for line in open(saved):
        tid, cpus = line.split()
        try:
            os.sched_setaffinity(int(tid), {int(c) for c in cpus.split(",")})
        except OSError:
            pass  # the task has ended
    sys.exit(0)
moved = 0
with open(saved, "w") as out:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in map(int, tids):
            try:
                cpus = os.sched_getaffinity(tid)
                if proxy not in cpus or len(cpus) == 1:
                    continue
                os.sched_setaffinity(tid, cpus - {proxy})
            except OSError:
                continue  # a per-core kernel thread, or gone
            out.write(f"{tid} {','.join(map(str, sorted(cpus)))}\n")
            moved += 1
print(moved)
PY
}
cleanup() {
  for f in "$work"/*.pid; do
    [[ -s $f ]] && kill "$(cat "$f")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  [[ -s $work/shielded ]] && shield off
  rm -rf "$work"
}
trap cleanup EXIT

# Seven free ports, all held until all are chosen (one at a time, the same port could come twice).
read -r UP UPS PROXY HTTP GRPC BASE_HTTP BASE_GRPC < <(python3 -c '
import socket
held = [socket.socket() for _ in range(7)]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))')

# ---- The fixed answers. nginx's quoted strings take \" \\ \n escapes, so both bodies are written
# once here as plain text and escaped for nginx below.
answer='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"fixed","choices":[{"index":0,"message":{"role":"assistant","content":"The answer is 42."},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":6,"total_tokens":26}}'
chunk() {  # delta-json finish-reason
  printf 'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"fixed","choices":[{"index":0,"delta":%s,"finish_reason":%s}]}\n\n' "$1" "$2"
}
sse=$(
  chunk '{"role":"assistant","content":""}' null
  for w in The ' answer' ' is' ' 42.'; do chunk "{\"content\":\"$w\"}" null; done
  chunk '{}' '"stop"'
  printf 'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"fixed","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":4,"total_tokens":24}}\n\n'
  printf 'data: [DONE]\n\n'
  printf x  # keeps the trailing newlines through $( )
)
sse=${sse%x}
nginx_string() {  # text -> the inside of an nginx "..." string
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//\$/\\\$}
  printf '%s' "${s//$'\n'/\\n}"
}

common_http='access_log off;
  client_body_temp_path body; proxy_temp_path proxy; fastcgi_temp_path fcgi;
  uwsgi_temp_path uwsgi; scgi_temp_path scgi;
  keepalive_requests 1000000; client_body_buffer_size 1m;'

# The upstream: one worker, as a fast fixed-answer server.
mkdir -p "$work/up" "$work/proxy"
cat >"$work/up/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx-up.pid;
error_log $work/up/error.log warn;
events { worker_connections 8192; }
http {
  $common_http
  server {
    listen 127.0.0.1:$UP backlog=4096;
    location / { default_type application/json; return 200 "$(nginx_string "$answer")"; }
  }
  server {
    listen 127.0.0.1:$UPS backlog=4096;
    location / {
      default_type text/event-stream;
      add_header cache-control no-cache;
      return 200 "$(nginx_string "$sse")";
    }
  }
}
NGINX

# The reference proxy: a separate nginx with as many workers as terse has I/O threads by default.
cat >"$work/proxy/nginx.conf" <<NGINX
worker_processes $PROXY_WORKERS;
pid $work/nginx-proxy.pid;
error_log $work/proxy/error.log warn;
events { worker_connections 8192; }
http {
  $common_http
  upstream fixed { server 127.0.0.1:$UP; keepalive 512; keepalive_requests 1000000; }
  upstream fixed_sse { server 127.0.0.1:$UPS; keepalive 512; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$PROXY backlog=4096;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    location / { proxy_pass http://fixed; }
    location /stream/ { proxy_pass http://fixed_sse/; }
  }
}
NGINX
if [[ $SHIELD == 1 ]]; then
  (( EUID == 0 )) || { echo "bench/gateway: SHIELD=1 needs root" >&2; exit 2; }
  echo "shield: $(shield on) tasks moved off cpu $PROXY_CPUS for the run" >&2
fi
$on_load_cpus nginx -c "$work/up/nginx.conf" -p "$work/up" -e "$work/up/error.log"
$on_proxy_cpus nginx -c "$work/proxy/nginx.conf" -p "$work/proxy" -e "$work/proxy/error.log"

# ---- terse: keys as in proto/terse/v1/config.proto.
cat >"$work/terse.yaml" <<YAML
listeners:
  http: { host: 127.0.0.1, port: $HTTP }
  grpc: { host: 127.0.0.1, port: $GRPC }
  io_threads: $IO_THREADS
providers:
  - { name: fixed, kind: openai_compatible, base_url: "http://127.0.0.1:$UP/v1", max_connections: 512, retry: { max_attempts: 1 } }
  - { name: fixed-sse, kind: openai_compatible, base_url: "http://127.0.0.1:$UPS/v1", max_connections: 512, retry: { max_attempts: 1 } }
  - { name: fixed-libcurl, kind: openai_compatible, base_url: "http://127.0.0.1:$UP/v1", max_connections: 512, retry: { max_attempts: 1 }, libcurl_only: true }
  - { name: fixed-sse-libcurl, kind: openai_compatible, base_url: "http://127.0.0.1:$UPS/v1", max_connections: 512, retry: { max_attempts: 1 }, libcurl_only: true }
routes:
  - { name: fixed, model: fixed, provider: fixed }
  - { name: fixed-stream, model: fixed-stream, provider: fixed-sse }
  - { name: fixed-libcurl, model: fixed-libcurl, provider: fixed-libcurl }
  - { name: fixed-libcurl-stream, model: fixed-libcurl-stream, provider: fixed-sse-libcurl }
logging: { level: error }
YAML
case ${PROFILE:-} in
  "") ;;
  perf | callgrind | syscalls | faults | sched | none)
    [[ $PROFILE != sched || $PIN == 1 ]] || { echo "bench/gateway: PROFILE=sched needs PIN=1" >&2; exit 2; }
    PROFILE_DIR=${PROFILE_DIR:-build/bench-profile}
    PROFILE_CONNS=${PROFILE_CONNS:-16}
    mkdir -p "$PROFILE_DIR"
    if [[ $PROFILE == callgrind ]]; then
      export OMP_WAIT_POLICY=PASSIVE  # terse would re-execute itself to set it (proxy/main.cc)
      TERSE_WRAP="valgrind --tool=callgrind --instr-atstart=no
        --callgrind-out-file=$PROFILE_DIR/valgrind.out"
    fi ;;
  *) echo "bench/gateway: PROFILE must be perf, callgrind, syscalls, faults, sched or none" >&2; exit 2 ;;
esac
# A private copy, so that a rebuild during the run neither changes nor deletes what is measured.
cp "$TERSE" "$work/terse"
# shellcheck disable=SC2086
$on_proxy_cpus $TERSE_WRAP "$work/terse" serve --config "$work/terse.yaml" 2>"$work/terse.log" &
echo $! >"$work/terse.pid"
if [[ -n $BASELINE ]]; then
  [[ -x $BASELINE ]] || { echo "bench/gateway: no terse binary at $BASELINE" >&2; exit 1; }
  cp "$BASELINE" "$work/baseline"
  sed "s/port: $HTTP }/port: $BASE_HTTP }/; s/port: $GRPC }/port: $BASE_GRPC }/" "$work/terse.yaml" \
    >"$work/baseline.yaml"
  $on_proxy_cpus "$work/baseline" serve --config "$work/baseline.yaml" 2>"$work/baseline.log" &
  echo $! >"$work/baseline.pid"
fi

# The prompt: a short question, or PROMPT_BYTES bytes of prose (what a long prompt costs a proxy).
prompt="What is the answer?"
if (( PROMPT_BYTES > 0 )); then
  prompt=$(python3 -c 'import sys; n = int(sys.argv[1]); w = "the quick brown fox jumps over the lazy dog. "
print((w * (n // len(w) + 1))[:n])' "$PROMPT_BYTES")
fi
body='{"model":"fixed","messages":[{"role":"user","content":"'$prompt'"}]}'
stream_body='{"model":"fixed-stream","stream":true,"messages":[{"role":"user","content":"'$prompt'"}]}'
chat=/v1/chat/completions
declare -A URL BODY
URL[direct]=http://127.0.0.1:$UP$chat;                BODY[direct]=$body
URL[nginx-proxy]=http://127.0.0.1:$PROXY$chat;        BODY[nginx-proxy]=$body
URL[terse]=http://127.0.0.1:$HTTP$chat;               BODY[terse]=$body
URL[direct-stream]=http://127.0.0.1:$UPS$chat;        BODY[direct-stream]=$stream_body
URL[nginx-proxy-stream]=http://127.0.0.1:$PROXY/stream$chat; BODY[nginx-proxy-stream]=$stream_body
URL[terse-stream]=http://127.0.0.1:$HTTP$chat;        BODY[terse-stream]=$stream_body
URL[terse-libcurl]=http://127.0.0.1:$HTTP$chat;       BODY[terse-libcurl]=${body/\"fixed\"/\"fixed-libcurl\"}
URL[terse-libcurl-stream]=http://127.0.0.1:$HTTP$chat
BODY[terse-libcurl-stream]=${stream_body/\"fixed-stream\"/\"fixed-libcurl-stream\"}
URL[baseline]=http://127.0.0.1:$BASE_HTTP$chat;       BODY[baseline]=$body
URL[baseline-stream]=http://127.0.0.1:$BASE_HTTP$chat; BODY[baseline-stream]=$stream_body
TARGETS=${TARGETS:-"direct nginx-proxy terse terse-libcurl direct-stream nginx-proxy-stream terse-stream terse-libcurl-stream"}
# The ratios and the added latency are taken against these: always measured, and the baseline's
# beside terse's when there is one.
always="direct nginx-proxy terse direct-stream nginx-proxy-stream terse-stream"
[[ -n $BASELINE ]] && always+=" baseline baseline-stream"
for t in $always; do
  [[ " $TARGETS " == *" $t "* ]] || TARGETS+=" $t"
done

# ---- Every target must give the right answer before anything is timed.
for http in $HTTP ${BASELINE:+$BASE_HTTP}; do
  for _ in $(seq 1200); do curl -sf "http://127.0.0.1:$http/healthz" >/dev/null && break; sleep 0.1; done
done
for t in $TARGETS; do
  got=$(curl -sS --max-time 10 -H 'content-type: application/json' -d "${BODY[$t]}" "${URL[$t]}")
  case $t in
    *-stream)
      text=$(printf '%s\n' "$got" | sed -n 's/^data: {.*"content":"\([^"]*\)".*/\1/p' | tr -d '\n')
      [[ $text == "The answer is 42." && $got == *"data: [DONE]"* ]] ;;
    *) [[ $got == *'"content":"The answer is 42."'* ]] ;;
  esac || { echo "bench/gateway: $t answered wrongly: $got" >&2; cat "$work/terse.log" >&2; exit 1; }
done

# CPU time (clock ticks: all, and in the kernel) and context switches (voluntary and not, of all
# its threads) so far of the process that answers `target` directly: terse, or the workers of the
# nginx instance.
clk_tck=$(getconf CLK_TCK)
cpu_and_switches() {  # target
  local pids
  case $1 in
    terse*) pids=$(cat "$work/terse.pid") ;;
    baseline*) pids=$(cat "$work/baseline.pid") ;;
    nginx-proxy*) pids=$(pgrep -P "$(cat "$work/nginx-proxy.pid")" | tr '\n' ' ') ;;
    direct*) pids=$(pgrep -P "$(cat "$work/nginx-up.pid")" | tr '\n' ' ') ;;
  esac
  local ticks=0 sys_ticks=0 switches=0 major=0 p n
  for p in $pids; do
    # Fields after the command name: majflt is the 10th, utime and stime the 12th and 13th.
    read -r -a f < <(sed 's/.*) //' "/proc/$p/stat")
    ticks=$((ticks + f[11] + f[12]))
    sys_ticks=$((sys_ticks + f[12]))
    major=$((major + f[9]))
    for n in $(awk '/ctxt_switches/ { print $2 }' /proc/"$p"/task/*/status 2>/dev/null); do
      switches=$((switches + n))
    done
  done
  echo "$ticks $sys_ticks $switches $major"
}

# Time the hypervisor ran something else while this machine's CPUs had work (steal, the 8th
# number of each cpu line of /proc/stat), in clock ticks, summed over the CPUs. The vCPU stops
# outright meanwhile: 50 ms of it in a round puts 1% of the round's requests that much late.
steal_ticks() { awk '/^cpu[0-9]/ { s += $9 } END { print s + 0 }' /proc/stat; }

# One line of a results table: target conns req/s p50 p99 errors cpu kernel switches major-faults
# steal [run].
row() { printf '%-20s %6s %10s %9s %9s %7s %12s %7s %10s %6s %8s %4s\n' "$@"; }

# One load run -> "rps p50_ms p99_ms errors cpu_us_per_request kernel_share switches_per_request
# major_faults steal_ms" (errors: non-2xx answers plus socket errors; CPU, the kernel's share of
# it, context switches and major page faults (a page read back from disk, which stalls the process
# for as long): of the process answering, see cpu_and_switches; steal: of all CPUs, see
# steal_ticks).
# measure: wrk with `connections`, each pausing 0.5-1.5 x delay_ms between requests when given;
# measure_paced: paced_load at `rate` requests/s, each due at a Poisson time (paced_load.cc).
measure() {  # target connections [delay_ms]
  load_stats "$1" wrk_load "$1" "$2" "${3:-}"
}
measure_paced() {  # target rate
  load_stats "$1" paced_load_run "$1" "$2"
}
wrk_load() {  # target connections delay_ms -> the wrk.out figures as "n rps p50 p99 errors"
  BODY="${BODY[$1]}" DELAY_MS="$3" $on_load_cpus wrk -t1 -c "$2" -d "$DURATION" --latency \
    -s bench/gateway/post.lua "${URL[$1]}" >"$work/wrk.out" 2>&1
  awk '
    function ms(v) {
      if (v ~ /us$/) return v / 1000
      if (v ~ /ms$/) return v + 0
      if (v ~ /s$/) return v * 1000
      return v + 0
    }
    /requests in/ { n = $1 }
    /Requests\/sec/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /Non-2xx/ { err += $NF }
    /Socket errors/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    END { print n + 0, rps + 0, p50 + 0, p99 + 0, err + 0 }' "$work/wrk.out"
}
paced_load_run() {  # target rate -> "n rps p50 p99 errors"
  local url=${URL[$1]#http://}
  local host_port=${url%%/*}
  printf '%s' "${BODY[$1]}" >"$work/paced.body"
  $on_load_cpus "$PACED_LOAD" --host "${host_port%:*}" --port "${host_port##*:}" \
    --path "/${url#*/}" \
    --body-file "$work/paced.body" --header 'Authorization: Bearer sk-bench' --rate "$2" \
    --duration "${DURATION%s}" --connections "$PACED_CONNECTIONS" \
    ${PACED_TIMELINE:+--timeline "$PACED_TIMELINE.$1"} \
    >"$work/paced.out" 2>&1 ||
    { cat "$work/paced.out" >&2; return 1; }
  awk '{ v[$1] = $2 } END { print v["requests"] + 0, v["rate"] + 0, v["p50_ms"] + 0,
       v["p99_ms"] + 0, v["errors"] + 0 }' "$work/paced.out"
}
load_stats() {  # target load-function args...
  local target=$1 t0 k0 s0 m0 t1 k1 s1 m1 st0 st1 n rps p50 p99 err
  shift
  read -r t0 k0 s0 m0 < <(cpu_and_switches "$target")
  st0=$(steal_ticks)
  read -r n rps p50 p99 err < <("$@")
  echo "$n" >"$work/requests"
  st1=$(steal_ticks)
  read -r t1 k1 s1 m1 < <(cpu_and_switches "$target")
  awk -v n="$n" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v err="$err" \
    -v ticks=$((t1 - t0)) -v sys=$((k1 - k0)) -v switches=$((s1 - s0)) -v hz="$clk_tck" \
    -v major=$((m1 - m0)) -v steal=$((st1 - st0)) 'BEGIN {
    printf "%.0f %.3f %.3f %d %.0f %.0f%% %.2f %d %.0f\n", rps, p50, p99, err,
           n ? ticks * 1e6 / hz / n : 0, ticks ? 100 * sys / ticks : 0, n ? switches / n : 0,
           major, steal * 1000 / hz }'
}

# PROFILE=perf|callgrind|syscalls|faults|sched|none: instead of the benchmark, a CPU profile of terse
# while wrk drives it with PROFILE_CONNS connections, non-streaming then streaming, written to
# PROFILE_DIR. With PROFILE_DELAY_MS, each connection pauses that long on average between
# requests, as wrk's half-load rounds do (HALF_LOAD=wrk); with PROFILE_RATE, paced_load sends
# that many requests/s instead, as the default half-load rounds do (say PROFILE_RATE=11000 for
# the rate a run printed).
#   perf: samples on cpu-clock (works without hardware counters), summarised by component with
#         profile_summary.py; the raw data stays in PROFILE_DIR for `perf report`.
#   callgrind: exact instruction counts (slow: terse runs ~50x slower), per request.
#   syscalls: system calls per request by kind (perf stat counting tracepoints in the kernel,
#             which, unlike strace or perf trace, leaves terse's pace as it is), and page faults.
#   sched: (PIN=1) the scheduler's switches on every core, summarised by busy_periods.py: how
#          long terse's stretches on its core last, and whether the long ones follow a quiet
#          spell of the load (a clump of requests sent together).
#   faults: every page fault of terse (perf record), by the mapping its address lies in and by
#           the code that touched it, minor and major apart (fault_summary.py).
#   none: the same load without a tool beside terse, to compare a profiled run's figures with.
# Measures terse$kind with a profiling tool beside it: `tool... -- sleep N` in the background,
# attached before the load starts and running until after it ends.
profile_load() {
  if [[ -n ${PROFILE_RATE:-} ]]; then
    measure_paced "terse$kind" "$PROFILE_RATE"
  else
    measure "terse$kind" "$PROFILE_CONNS" "${PROFILE_DELAY_MS:-}"
  fi
}
measure_beside() {  # tool...
  "$@" -- sleep $((${DURATION%s} + 2)) &
  local tool_pid=$!
  sleep 0.5
  read -r rps p50 p99 err cpu sys cs major steal < <(profile_load)
  wait "$tool_pid" || true
}
if [[ -n ${PROFILE:-} ]]; then
  terse_pid=$(cat "$work/terse.pid")
  for kind in "" -stream; do
    out="$PROFILE_DIR/terse$kind.$PROFILE"
    case $PROFILE in
      perf)
        measure_beside perf record -q -e cpu-clock -F "${PROFILE_HZ:-500}" \
          --call-graph dwarf,16384 -p "$terse_pid" -o "$out.data"
        perf script -i "$out.data" -F comm,ip,sym,dso 2>/dev/null |
          python3 bench/gateway/profile_summary.py >"$out.txt" ;;
      callgrind)
        # Instrumented from the first measurement on; counters zeroed before each.
        callgrind_control -i on "$terse_pid" >/dev/null 2>&1
        callgrind_control -z "$terse_pid" >/dev/null 2>&1
        read -r rps p50 p99 err cpu sys cs major steal < <(profile_load)
        callgrind_control -d "$terse_pid" >/dev/null 2>&1
        mv "$(ls -t "$PROFILE_DIR"/valgrind.out.* | head -1)" "$out.out"
        requests=$(cat "$work/requests")
        callgrind_annotate "$out.out" 2>/dev/null | awk -v n="$requests" '
          /PROGRAM TOTALS/ { gsub(/,/, "", $1); printf "%d requests, %.0f instructions per request\n", n, $1 / n }
        ' >"$out.txt"
        callgrind_annotate --threshold=90 "$out.out" 2>/dev/null | awk '/^Ir/ { on = 1 } on && n++ < 40' >>"$out.txt" ;;
      syscalls)
        events=$(printf 'syscalls:sys_enter_%s,' recvfrom sendto sendmsg recvmsg read write readv \
          writev epoll_wait epoll_ctl timerfd_settime futex accept4 clock_gettime madvise mmap munmap \
          brk)
        measure_beside perf stat -x, -e "${events}page-faults" -p "$terse_pid" -o "$out.stat"
        requests=$(cat "$work/requests")
        # perf stat -x, lines: count,,event,...; counted in the kernel, so terse is not slowed.
        awk -F, -v n="$requests" '
          $3 ~ /sys_enter_/ {
            sub(/.*sys_enter_/, "", $3); total += $1; printf "%-16s %7.2f\n", $3, $1 / n
          }
          $3 == "page-faults" { faults = $1 }
          END {
            printf "%-16s %7.2f\n", "all these", total / n
            printf "%-16s %7.2f (not a system call)\n", "page faults", faults / n
          }' "$out.stat" |
          sort -k2 -gr | { echo "system calls per request (of $requests requests):"; cat; } >"$out.txt" ;;
      faults)
        # Every page fault, with the faulting address and the code that touched it: the mapping
        # each lands in (a library's text, the heap, a thread's stack), minor and major apart.
        measure_beside perf record -q -c 1 -d -e minor-faults -e major-faults -p "$terse_pid" \
          -o "$out.data"
        requests=$(cat "$work/requests")
        cat "/proc/$terse_pid/maps" >"$work/terse.maps"
        perf script -i "$out.data" -F event,ip,sym,dso,addr 2>/dev/null |
          python3 bench/gateway/fault_summary.py "$requests" "$work/terse.maps" >"$out.txt" ;;
      none)
        read -r rps p50 p99 err cpu sys cs major steal < <(profile_load)
        echo "no profile: the same load's figures without a tool beside terse" >"$out.txt" ;;
      sched)
        # CLOCK_MONOTONIC: the clock of paced_load's timeline (PACED_TIMELINE), to line them up.
        measure_beside perf record -q -a -k CLOCK_MONOTONIC -e sched:sched_switch \
          -e sched:sched_wakeup -o "$out.data"
        perf sched timehist -i "$out.data" 2>/dev/null |
          python3 bench/gateway/busy_periods.py "$PROXY_CPUS" >"$out.txt" ;;
    esac
    if [[ -n ${PROFILE_RATE:-} ]]; then
      load="paced at $PROFILE_RATE req/s"
    else
      load="at $PROFILE_CONNS connections${PROFILE_DELAY_MS:+ pausing ~$PROFILE_DELAY_MS ms}"
    fi
    echo "profiled terse$kind $load: $rps req/s, p50 $p50 ms," \
      "p99 $p99 ms, $err errors, $cpu us CPU per request"
    [[ -n ${PROFILE_RATE:-} ]] && echo "paced_load: $(awk '/_ms/ { printf "%s %s  ", $1, $2 }
      /^(late|starved)/ { printf "%s %s  ", $1, $2 }' "$work/paced.out")"
    cat "$out.txt"
    echo
  done
  exit 0
fi

echo "gateway pass-through benchmark: $(date -u +%FT%TZ), $CORES cores, nginx $(nginx -v 2>&1 |
  sed 's/.*nginx\///'), terse io_threads=$IO_THREADS, nginx proxy workers=$PROXY_WORKERS${PROXY_CPUS:+,
  the proxies on cpu $PROXY_CPUS, wrk and the upstream on cpu $LOAD_CPUS}"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $DURATION per measurement"
echo
row target conns req/s p50_ms p99_ms errors cpu_us/req kernel switch/req majflt steal_ms
declare -A RPS P50
for c in $LEVELS; do
  for t in $TARGETS; do
    read -r rps p50 p99 err cpu sys cs major steal < <(measure "$t" "$c")
    RPS[$t,$c]=$rps; P50[$t,$c]=$p50
    row "$t" "$c" "$rps" "$p50" "$p99" "$err" "$cpu" "$sys" "$cs" "$major" "$steal"
  done
  echo
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
best() { local m=0; for c in $LEVELS; do (( RPS[$1,$c] > m )) && m=${RPS[$1,$c]}; done; echo "$m"; }
declare -A PEAK
for t in $TARGETS; do PEAK[$t]=$(best "$t"); done
echo "peak req/s: direct ${PEAK[direct]}, nginx-proxy ${PEAK[nginx-proxy]}, terse ${PEAK[terse]};" \
  "streaming: direct ${PEAK[direct-stream]}, nginx-proxy ${PEAK[nginx-proxy-stream]}," \
  "terse ${PEAK[terse-stream]}"
awk -v a="${PEAK[terse]}" -v b="${PEAK[nginx-proxy]}" -v c="${PEAK[terse-stream]}" \
  -v d="${PEAK[nginx-proxy-stream]}" -v e="${PEAK[terse-libcurl]:-0}" \
  -v f="${PEAK[terse-libcurl-stream]:-0}" -v g="${PEAK[baseline]:-0}" \
  -v h="${PEAK[baseline-stream]:-0}" 'BEGIN {
  printf "throughput ratio terse / nginx-proxy: %.2f non-streaming, %.2f streaming (goal >= 0.50)\n",
         a / b, c / d
  if (e > 0) printf "throughput ratio terse-libcurl / nginx-proxy: %.2f non-streaming, %.2f streaming\n",
                    e / b, f / d
  if (g > 0) printf "throughput ratio baseline / nginx-proxy: %.2f non-streaming, %.2f streaming\n",
                    g / b, h / d }'

# ---- Half load: the same offered rate for every target, half of terse's peak, so that the added
# latency is measured at equal load, not at each target's own saturation. HALF_LOAD=paced (the
# default): paced_load sends at that rate, each request due at a Poisson time and timed from it.
# HALF_LOAD=wrk: each wrk connection pauses DELAY_MS (uniform in [0.5, 1.5] x DELAY_MS) between
# requests, so the rate is about conns / (DELAY_MS + latency) whichever target answers; wrk's
# pauses have a resolution of 1 ms, so each millisecond's requests arrive together. Then, with
# OWN_HALF_LOAD=1 (the default), nginx-proxy and direct again at half of nginx-proxy's own peak:
# the goal's measure applied to the reference, whose half load is a higher rate than terse's.
# The targets of the half-load rounds, in the order each round measures them (those of TARGETS).
half_load_targets="direct nginx-proxy terse baseline terse-libcurl"
OWN_HALF_LOAD=${OWN_HALF_LOAD:-1}
# A proxy whose p50 in a paced round is above this has fallen behind the rate (its queue grows for
# the whole measurement): it is left out of the later rounds, which its backlog would disturb.
BEHIND_P50_MS=${BEHIND_P50_MS:-20}

# The medians over the rounds given of each target's half-load p50 and p99, and the latency each
# proxy measured adds over direct; of half_load's targets and results (targets, R50, R99).
report() {  # label round...
  local label=$1 t r line=""
  shift
  declare -A H50 H99
  for t in "${targets[@]}"; do
    local p50s=() p99s=()
    for r in "$@"; do
      [[ -n ${R99[$t,$r]:-} ]] || continue 2  # not measured in every round given
      p50s+=("${R50[$t,$r]}"); p99s+=("${R99[$t,$r]}")
    done
    H50[$t]=$(median "${p50s[@]}"); H99[$t]=$(median "${p99s[@]}")
    line+="${line:+, }$t ${H50[$t]} / ${H99[$t]}"
  done
  echo "$label (p50 / p99 ms): $line"
  for t in "${targets[@]}"; do
    [[ $t != direct && -n ${H99[$t]:-} ]] || continue
    awk -v name="$t" -v t="${H99[$t]}" -v d="${H99[direct]}" -v t5="${H50[$t]}" \
      -v d5="${H50[direct]}" 'BEGIN {
      printf "added latency over direct: %s p50 %+.3f ms p99 %+.3f ms%s\n", name, t5 - d5, t - d,
             name == "terse" ? " (goal: terse p99 <= 1 ms)" : "" }'
  done
}

# HALF_LOAD_RUNS rounds at half of `proxy`'s peak, of the targets given (those of TARGETS), kind
# "" or -stream, each round measuring them one after another so that a slow spell of the machine
# hits all of them alike; the median of each target's rounds is compared. A round is calm when no
# target lost more than CALM_STEAL_MS to steal in it: the medians of the calm rounds alone follow,
# when there are three or more and some round was not calm.
half_load() {  # proxy kind target...
  local proxy=$1 kind=$2 t run worst
  shift 2
  local targets=("$@")
  local half=$(( PEAK[$proxy$kind] / 2 ))
  local lat=${P50[$proxy$kind,${LEVELS%% *}]}
  local conns
  if [[ $HALF_LOAD == paced ]]; then
    conns=paced
    echo "half load of $proxy${kind:+ (streaming)}: $half req/s, each request due at a Poisson" \
      "time (paced_load, $PACED_CONNECTIONS connections)"
  else
    conns=$(awk -v r="$half" -v d="$DELAY_MS" -v l="$lat" \
      'BEGIN { c = int(r * (d + l) / 1000 + 0.5); print (c < 1 ? 1 : c) }')
    echo "half load of $proxy${kind:+ (streaming)}: target ~$half req/s = $conns connections x" \
      "mean ${DELAY_MS} ms pause (wrk)"
  fi
  # A target whose own peak is below the rate would only queue without bound, and its backlog
  # would still be draining (its process busy, the upstream's connections taken) while the next
  # target is measured: it is left out of these rounds.
  declare -A left_out
  for t in "${targets[@]}"; do
    if (( ${PEAK[$t$kind]:-0} > 0 && PEAK[$t$kind] < half )); then
      echo "$t$kind left out of these rounds: its peak, ${PEAK[$t$kind]} req/s, is below $half"
      left_out[$t]=1
    fi
  done
  row target conns req/s p50_ms p99_ms errors cpu_us/req kernel switch/req majflt steal_ms run
  declare -A R50 R99
  local calm=()
  for ((run = 1; run <= HALF_LOAD_RUNS; ++run)); do
    worst=0
    for t in "${targets[@]}"; do
      [[ " $TARGETS " == *" $t$kind "* && -z ${left_out[$t]:-} ]] || continue
      if [[ $HALF_LOAD == paced ]]; then
        read -r rps p50 p99 err cpu sys cs major steal < <(measure_paced "$t$kind" "$half")
      else
        read -r rps p50 p99 err cpu sys cs major steal < <(measure "$t$kind" "$conns" "$DELAY_MS")
      fi
      R50[$t,$run]=$p50; R99[$t,$run]=$p99
      (( steal > worst )) && worst=$steal
      row "$t$kind" "$conns" "$rps" "$p50" "$p99" "$err" "$cpu" "$sys" "$cs" "$major" "$steal" "$run"
      if [[ $t != direct && $HALF_LOAD == paced ]] &&
         awk -v p="$p50" -v m="$BEHIND_P50_MS" 'BEGIN { exit !(p > m) }'; then
        echo "$t$kind fell behind the rate (p50 $p50 ms > $BEHIND_P50_MS): left out of the rest"
        left_out[$t]=1
      fi
    done
    (( worst <= CALM_STEAL_MS )) && calm+=("$run")
  done
  report "medians of $HALF_LOAD_RUNS rounds" $(seq "$HALF_LOAD_RUNS")
  if (( ${#calm[@]} >= 3 && ${#calm[@]} < HALF_LOAD_RUNS )); then
    report "medians of the ${#calm[@]} calm rounds (${calm[*]}; steal <= $CALM_STEAL_MS ms)" "${calm[@]}"
  fi
  echo
}

echo
for kind in "" -stream; do
  # shellcheck disable=SC2086
  half_load terse "$kind" $half_load_targets
done
if [[ $OWN_HALF_LOAD == 1 ]]; then
  for kind in "" -stream; do half_load nginx-proxy "$kind" direct nginx-proxy; done
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if ! kill -0 "$(cat "$work/terse.pid")" 2>/dev/null; then
  echo "bench/gateway: terse died during the run:" >&2; cat "$work/terse.log" >&2; exit 1
fi
