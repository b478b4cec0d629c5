#!/usr/bin/env bash
# Every benchmark of terse, one after the other, each printing its own figures (`make bench`):
# the gateway's pass-through overhead (sharing the cores with the load, then on a core of its
# own, and what tenancy adds to it; `SHIELD=1 make bench`, as root, keeps the machine's other
# tasks off that core), target-token counting, the tenancy stores, the scoring LM, the compressor,
# and compression through the
# gateway when those are present. A benchmark that fails is reported and the others still run;
# the exit code says whether all of them passed.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
export TERSE_SOURCE_DIR=$PWD
failed=()

run() {  # name command...
  local name=$1
  shift
  echo "======== $name"
  local start=$SECONDS
  if "$@"; then
    echo "======== $name: done in $((SECONDS - start)) s"
  else
    echo "======== $name: FAILED (exit $?)"
    failed+=("$name")
  fi
  echo
}

skip() { echo "======== $1: skipped ($2)"; echo; }

echo "terse benchmarks, $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo

if [[ -x $BUILD_DIR/proxy/terse ]]; then
  # SHIELD=1 (make bench's caller may set it) applies to the pinned set-up only.
  run gateway env TERSE="$BUILD_DIR/proxy/terse" SHIELD=0 bash bench/gateway/run.sh
  if (($(nproc) >= 2)); then
    run "gateway, pinned" env TERSE="$BUILD_DIR/proxy/terse" PIN=1 bash bench/gateway/run.sh
  fi
  run "tenancy off/on" env TERSE="$BUILD_DIR/proxy/terse" bash bench/tenancy/run.sh
else
  skip gateway "no $BUILD_DIR/proxy/terse"
fi
for bench in json_bench target_tokenizer_bench tenancy_store_bench language_model_bench compressor_bench; do
  if [[ -x $BUILD_DIR/bench/$bench ]]; then
    run "$bench" "$BUILD_DIR/bench/$bench"
  else
    skip "$bench" "not built"
  fi
done
if [[ -f bench/compression_gateway/run.sh ]]; then
  run compression_gateway env TERSE="$BUILD_DIR/proxy/terse" bash bench/compression_gateway/run.sh
else
  skip compression_gateway "no bench/compression_gateway/run.sh"
fi

echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}"
  exit 1
fi
echo "all benchmarks ran"
