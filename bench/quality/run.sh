#!/usr/bin/env bash
# Compression quality: `terse eval` on every task family at the route defaults (chat face) and the
# prompt face, beside the truncation and random-drop baselines, for the build and optionally a
# baseline binary in the same run. Figures go to bench/RESULTS.md.
#
#   bench/quality/run.sh                                   # this build
#   BASELINE_BIN=/path/to/old/terse bench/quality/run.sh   # and an older build, same items
#   ITEMS=20 RATES=0.5,0.33,0.2,0.1 OUT=/tmp/quality bench/quality/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build}
TERSE_BIN=${TERSE_BIN:-$BUILD_DIR/proxy/terse}
ITEMS=${ITEMS:-10}
RATES=${RATES:-0.5,0.33,0.2,0.1}
SEED=${SEED:-1}
OUT=${OUT:-$(mktemp -d)}
export OMP_WAIT_POLICY=PASSIVE

run() {  # label binary
  echo "== $1 ($2): $ITEMS items per family, seed $SEED, rates $RATES"
  "$2" eval --items "$ITEMS" --seed "$SEED" --rates "$RATES" --no-progress \
    --json "$OUT/$1.json" --svg "$OUT/$1.svg"
  echo
}

[ -n "${BASELINE_BIN:-}" ] && run baseline "$BASELINE_BIN"
run build "$TERSE_BIN"
echo "JSON and SVG in $OUT"
