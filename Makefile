# Two entry points; each sets up .venv first (idempotent).
#   make demo   train (or reuse) a small SST-2 MiniLM model, build it, compare full depth vs early exit
#   make test   the test suite (GLUE data from $PABEE_GLUE_DIR, default ../shared/data/glue)
PY := .venv/bin/python

.PHONY: setup demo test test-fast
setup:
	./scripts/setup.sh

demo: setup
	$(PY) -m benchmarks demo

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"
