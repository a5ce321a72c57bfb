#!/usr/bin/env bash
# Create .venv with everything pabee-deploy needs (idempotent; re-runs only when pyproject.toml changes).
# torch is pinned to the CPU wheel 2.13.0 first: an unpinned torch pulls several GB of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
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
