#!/usr/bin/env bash
# Line and branch coverage of the test tiers (docs/development.md): each tier under coverage.py, trainer
# and CLI subprocesses included (coverage's `patch = subprocess`), then each tier's total and both together.
#   scripts/coverage.sh            # both tiers (about as long as make test-all, plus coverage's overhead)
#   scripts/coverage.sh fast       # the everyday tier only
# Data and reports in .coverage-data/ (the HTML report of both tiers: .coverage-data/html/index.html).
# Not measured: code that runs in Ray workers (started by the raylet, not by a measured process).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT="$PWD/.coverage-data"
tiers=("${@:-fast slow}")
read -r -a tiers <<< "${tiers[*]}"
rm -rf "$OUT" && mkdir -p "$OUT"
rc() {  # $1: the tier; an absolute data file, so trainers started in other folders write to it too
  # [report]: tests that copy the package into a temporary folder (tests/test_imports.py) are not the source
  printf '[run]\nbranch = True\nparallel = True\nsource = lmtune\npatch = subprocess\ndata_file = %s/%s/.coverage\n[report]\nomit = */pytest-of-*/*\nignore_errors = True\n' \
    "$OUT" "$1" > "$OUT/$1.rc"
  mkdir -p "$OUT/$1"
}
for tier in "${tiers[@]}"; do
  rc "$tier"
  marker=$([ "$tier" = fast ] && echo "not slow" || echo slow)
  start=$(date +%s)
  "$PY" -m coverage run --rcfile="$OUT/$tier.rc" -m pytest -p no:cacheprovider -m "$marker" || echo "[coverage] $tier: some tests failed"
  echo "[coverage] $tier tier: $(( $(date +%s) - start )) s under coverage"
  # the files by name: given a folder, combine looks for files named after --data-file
  "$PY" -m coverage combine --rcfile="$OUT/$tier.rc" --keep -q --data-file="$OUT/$tier.data" "$OUT/$tier"/.coverage.*
done
all=()
for tier in "${tiers[@]}"; do all+=("$OUT/$tier"/.coverage.*); done
"$PY" -m coverage combine --rcfile="$OUT/${tiers[0]}.rc" --keep -q --data-file="$OUT/all.data" "${all[@]}"
for name in "${tiers[@]}" all; do
  echo "[coverage] $name: $("$PY" -m coverage report --rcfile="$OUT/${tiers[0]}.rc" --data-file="$OUT/$name.data" \
    --format=total --precision=1) % of lines and branches"
done
"$PY" -m coverage html --rcfile="$OUT/${tiers[0]}.rc" --data-file="$OUT/all.data" -q -d "$OUT/html"
