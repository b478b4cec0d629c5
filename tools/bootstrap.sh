#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, run and test terse.
# Idempotent: when every package is present it only checks and returns.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(
  build-essential cmake ninja-build pkg-config ccache git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libcurl4-openssl-dev libssl-dev libboost-dev nlohmann-json3-dev libyaml-cpp-dev libjemalloc-dev
  libgtest-dev libgmock-dev libbenchmark-dev libsqlite3-dev
  # The replica store's clients; its tests start their own servers on loopback.
  libhiredis-dev libpq-dev redis-server postgresql-15
  libtorch-dev python3-torch libopenblas0-openmp libpcre2-dev
  sentencepiece python3-sentencepiece python3-grpcio
  nodejs npm nginx-light wrk curl ca-certificates
)

missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Node and npm may come from elsewhere than Debian; accept any working pair.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The npm test clients and the tiktoken rank files (pinned in tests/e2e/package.json).
if [ ! -f tests/e2e/node_modules/.terse-installed ] ||
   [ tests/e2e/package.json -nt tests/e2e/node_modules/.terse-installed ]; then
  echo "bootstrap: npm install in tests/e2e" >&2
  (cd tests/e2e && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  touch tests/e2e/node_modules/.terse-installed
fi

# The OpenAI BPE rank files TargetTokenizer counts target tokens with, read from models/tiktoken.
mkdir -p models/tiktoken
for encoding in cl100k_base o200k_base; do
  src=tests/e2e/node_modules/tiktoken/encoders/$encoding.json
  dst=models/tiktoken/$encoding.json
  if ! cmp -s "$src" "$dst"; then
    echo "bootstrap: copying $src to models/tiktoken" >&2
    cp "$src" "$dst"
  fi
done
