# All set-up happens here, so a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck clean

setup: $(STAMP)

$(STAMP): requirements.lock requirements-offline.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build
	$(PIP) torch==2.13.0
	$(PIP) -r requirements.lock  # includes ray and psycopg2-binary (the ray/postgres extras), pinned
	$(PIP) --no-deps -r requirements-offline.txt
	$(PIP) --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lmtune tune examples/quickstart.yaml

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
