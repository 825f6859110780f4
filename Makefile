# All set-up happens here, so a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow test-all lint typecheck docs bench-synetune bench-synetune013 clean

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

# Two tiers (docs/development.md): `make test` is the everyday one (the docs build, ruff and every test but
# the long end-to-end ones marked `slow`, under 15 minutes on 2 cores: about 11 on 2026-12-07); `make test-slow`
# runs those; CI (.ci/run) runs both, so the whole suite is still run on every change.
test: $(STAMP)
	$(MAKE) docs  # the site builds with warnings as errors, so a broken docs page fails CI
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(PY) -m pytest -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

test-all: test test-slow

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/mypy

# The documentation site (mkdocs.yml; the config reference is generated from the schema at build time).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# Syne Tune, a benchmark peer (benchmarks/tables/synetune_peer.py), in its own environment: its pins are not lmtune's.
STVENV := benchmarks/.venv-synetune
ST13VENV := benchmarks/.venv-synetune013
bench-synetune: $(STVENV)/.installed
$(STVENV)/.installed: benchmarks/tables/synetune-requirements.txt
	$(PYTHON) -m venv $(STVENV)
	$(STVENV)/bin/python -m pip install --quiet --disable-pip-version-check -r benchmarks/tables/synetune-requirements.txt
	touch $@

# Syne Tune 0.13: MOBSTER, Hyper-Tune and DyHPO, which later versions no longer ship
bench-synetune013: $(ST13VENV)/.installed
$(ST13VENV)/.installed: benchmarks/tables/synetune013-requirements.txt
	$(PYTHON) -m venv $(ST13VENV)
	$(ST13VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r benchmarks/tables/synetune013-requirements.txt
	touch $@

clean:
	rm -rf $(VENV) $(STVENV) $(ST13VENV) site runs .pytest_cache .mypy_cache .ruff_cache
