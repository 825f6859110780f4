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


def _three_files(folder: Path, names: tuple[str, str, str] = ("train", "validation", "test")) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": 40, "validation": 12, "test": 8}
    out = {}
    for split, name in zip(("train", "validation", "test"), names, strict=True):
        f = folder / f"{name}.csv"
        f.write_text("text,label\n" + "\n".join(f"{split} {i},{i % 2}" for i in range(sizes[split])))
        out[split] = f
    return out


def test_one_file_per_split_as_a_mapping_a_folder_or_a_glob(tmp_path: Path) -> None:
    files = _three_files(tmp_path / "d")
    mapped = load_splits(spec({k: str(v) for k, v in files.items()}, sizes={}))  # type: ignore[arg-type]
    assert [len(mapped[s]) for s in ("train", "validation", "test")] == [40, 12, 8]
    assert all(r["text"].startswith("validation") for r in mapped["validation"])  # each file is its split
    _three_files(tmp_path / "f", ("train", "dev", "test"))  # dev is the validation split
    folder = load_splits(spec(str(tmp_path / "f"), sizes={}))
    assert [len(folder[s]) for s in ("train", "validation", "test")] == [40, 12, 8]
    globbed = load_splits(spec(str(tmp_path / "d" / "*.csv"), sizes={"validation": 10, "test": 10}))
    assert sum(len(v) for v in globbed.values()) == 60  # all files are one pool, carved by the seed


def test_a_folder_without_split_files_says_what_works(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "reviews.csv").write_text("text,label\na,1\n")
    with pytest.raises(DataError, match=r"neither holds train/validation/test files.*mapping of split -> file"):
        load_splits(spec(str(tmp_path / "x")))
    with pytest.raises(DataError, match=r"the test split's .*nope\*\.csv matches no file"):
        load_splits(spec({"train": str(tmp_path / "x" / "reviews.csv"),  # type: ignore[arg-type]
                          "test": str(tmp_path / "nope*.csv")}))


def test_the_config_takes_a_mapping_and_refuses_unknown_splits(tmp_path: Path) -> None:
    from lmtune.config import load_config
    from lmtune.errors import ConfigError

    files = _three_files(tmp_path / "d")
    root = Path(__file__).parents[2]
    mapping = "{" + ", ".join(f"{k}: {v}" for k, v in files.items()) + "}"
    cfg = load_config(str(root / "examples" / "quickstart.yaml"), [f"task.dataset={mapping}"])
    assert cfg.task.dataset == {k: str(v) for k, v in files.items()}
    with pytest.raises(ConfigError, match="needs a 'train' key and takes only train, validation, test"):
        load_config(str(root / "examples" / "quickstart.yaml"), [f"task.dataset={{training: {files['train']}}}"])
