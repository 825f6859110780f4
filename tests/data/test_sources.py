import json
from pathlib import Path

import pytest

from lmtune.data.sources import DataSpec, load_splits, rotten_tomatoes_rows
from lmtune.errors import DataError


def spec(path: str, **kw: object) -> DataSpec:
    base = dict(dataset=path, dataset_config=None, text_column="text", text_pair_column=None,
                label_column="label", sizes={"train": 50, "validation": 20, "test": 20}, seed=0)
    base.update(kw)
    return DataSpec(**base)  # type: ignore[arg-type]


def test_csv_is_split_disjointly_and_reproducibly(tiny_csv: Path) -> None:
    a, b = load_splits(spec(str(tiny_csv))), load_splits(spec(str(tiny_csv)))
    assert a == b
    assert [len(a[s]) for s in ("train", "validation", "test")] == [50, 20, 20]
    c = load_splits(spec(str(tiny_csv), seed=1))
    assert c["test"] != a["test"]


def test_jsonl_and_parquet(tmp_path: Path) -> None:
    import pandas as pd

    rows = [{"text": f"t{i}", "label": i % 2} for i in range(100)]
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows))
    pq = tmp_path / "d.parquet"
    pd.DataFrame(rows).to_parquet(pq)
    for path in (jl, pq):
        out = load_splits(spec(str(path)))
        assert len(out["train"]) == 50 and {"text", "label"} <= set(out["train"][0])


def test_save_to_disk_folder_keeps_its_splits(tmp_path: Path) -> None:
    import datasets

    rows = [{"text": f"t{i}", "label": i % 2} for i in range(60)]
    ds = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:40]),
                               "validation": datasets.Dataset.from_list(rows[40:50]),
                               "test": datasets.Dataset.from_list(rows[50:])})
    ds.save_to_disk(str(tmp_path / "saved"))
    out = load_splits(spec(str(tmp_path / "saved"), sizes={}))
    assert [len(out[s]) for s in ("train", "validation", "test")] == [40, 10, 10]


def test_missing_file_names_the_path() -> None:
    with pytest.raises(DataError, match=r"file not found: /nope/x\.csv"):
        load_splits(spec("/nope/x.csv"))


def test_missing_label_column_lists_columns(tiny_csv: Path) -> None:
    with pytest.raises(DataError, match=r"task\.label_column: column 'sentiment'.*text, label|label, text"):
        load_splits(spec(str(tiny_csv), label_column="sentiment"))


def test_builtin_rotten_tomatoes() -> None:
    rows = rotten_tomatoes_rows()
    labels = [r["label"] for r in rows]
    assert len(rows) == 7403 + 5405 and sum(labels) == 7403
