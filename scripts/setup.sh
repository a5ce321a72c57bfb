#!/usr/bin/env bash
# Create .venv with everything pabee-deploy needs (idempotent; re-runs only when pyproject.toml changes).
# torch is pinned to the CPU wheel 2.13.0 first: an unpinned torch pulls several GB of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
# WordNet 3.0 for the slowdown attacks' synonym swaps: Debian's wordnet-base (-> /usr/share/wordnet).
# Installed when missing and apt-get can run as root; otherwise WordNet-based attacks and tests are skipped.
if [ ! -f /usr/share/wordnet/data.noun ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wordnet-base >/dev/null; } \
      || echo "setup: could not install wordnet-base; WordNet-based attacks and their tests will be skipped" >&2
  else
    echo "setup: /usr/share/wordnet is missing (as root: apt-get install -y wordnet-base); WordNet attacks will be skipped" >&2
  fi
fi
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.pabee-setup-$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[test,attacks]"
rm -f "$VENV"/.pabee-setup-*
touch "$stamp"
echo "setup: $VENV ready"
