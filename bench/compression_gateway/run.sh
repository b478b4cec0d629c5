#!/usr/bin/env bash
# The cost of compression on the request's path, end to end over HTTP (see bench.mjs): latency
# added for ~1k and ~4k-token chats (compression off vs on, cold and warm cache), and requests/s
# under 8 and 32 clients with LM batching on (max_batch_size 8) and off (1), cache cold and warm.
# Uses models/terse-small-en when its model.pt exists, else the tiny test model; says which.
#   bench/compression_gateway/run.sh [--quick] [--part latency|throughput]
# TERSE=path/to/terse picks the binary, MODEL_DIR=dir the model, THREADS=n LibTorch threads (2).
set -euo pipefail
cd "$(dirname "$0")/../.."
TERSE=${TERSE:-build/proxy/terse}
if [[ ! -x "$TERSE" ]]; then
  echo "no terse binary at $TERSE: build it first (cmake --build build --target terse)" >&2
  exit 1
fi
MODEL_DIR=${MODEL_DIR:-}
if [[ -z "$MODEL_DIR" ]]; then
  if [[ -f models/terse-small-en/model.pt ]]; then
    MODEL_DIR=models/terse-small-en
  else
    MODEL_DIR=tests/fixtures/tiny-lm
    echo "note: models/terse-small-en/model.pt not found; using the tiny test model" \
         "(random weights: the speeds are a floor, not the shipped model's)"
  fi
fi
exec node bench/compression_gateway/bench.mjs --terse "$TERSE" --model-dir "$MODEL_DIR" \
  --threads "${THREADS:-2}" "$@"
