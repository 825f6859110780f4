from pathlib import Path

import numpy as np
import pytest

from lmtune.data.sources import DataSpec
from lmtune.data.tokenized import build_cache, load_meta, load_split
from lmtune.errors import DataError


def _spec(path: Path, label: str = "label") -> DataSpec:
    return DataSpec(dataset=str(path), dataset_config=None, text_column="text", text_pair_column=None,
                    label_column=label, sizes={"train": 64, "validation": 16, "test": 16}, seed=0)


def test_cache_is_built_once_and_reused(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    folder = build_cache(_spec(tiny_csv), tok, str(tiny_model), 16, tmp_path)
    stamp = (folder / "train.ids.npy").stat().st_mtime_ns
    again = build_cache(_spec(tiny_csv), tok, str(tiny_model), 16, tmp_path)
    assert again == folder and (folder / "train.ids.npy").stat().st_mtime_ns == stamp
    other = build_cache(_spec(tiny_csv), tok, str(tiny_model), 8, tmp_path)
    assert other != folder  # max_length is part of the key
    split = load_split(folder, "train")
    assert len(split) == 64 and split.labels is not None and set(np.unique(split.labels)) <= {0, 1}
    assert split.lengths().max() <= 16
    assert split.row(0)[0] == tok.cls_token_id
    meta = load_meta(folder)
    assert meta["num_labels"] == 2 and meta["splits"]["test"]["rows"] == 16


def test_string_labels_are_mapped(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    csv = tmp_path / "s.csv"
    csv.write_text("text,label\n" + "\n".join(f"good film,{'pos' if i % 3 else 'neg'}" for i in range(60)))
    folder = build_cache(_spec(csv), AutoTokenizer.from_pretrained(tiny_model), "m", 16, tmp_path / "c")
    assert load_meta(folder)["label_names"] == ["neg", "pos"]


def test_single_label_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    csv = tmp_path / "s.csv"
    csv.write_text("text,label\n" + "\n".join("good film,1" for _ in range(60)))
    with pytest.raises(DataError, match="at least 2"):
        build_cache(_spec(csv), AutoTokenizer.from_pretrained(tiny_model), "m", 16, tmp_path / "c")


def test_fractional_labels_say_regression_is_not_supported(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    csv = tmp_path / "s.csv"
    csv.write_text("text,label\n" + "\n".join(f"good film,{(i % 9) / 2}" for i in range(120)))
    with pytest.raises(DataError, match="regression is not supported") as err:
        build_cache(_spec(csv), AutoTokenizer.from_pretrained(tiny_model), "m", 16, tmp_path / "c")
    assert "0.5" in str(err.value) and "lacks" not in str(err.value)


def test_whole_number_floats_are_one_class_in_every_split(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    csv = tmp_path / "s.csv"  # a float column (the pandas/CSV reading of 0..4 with a blank elsewhere)
    csv.write_text("text,label\n" + "\n".join(f"film {i},{float(i % 5)}" for i in range(120)))
    folder = build_cache(_spec(csv), AutoTokenizer.from_pretrained(tiny_model), "m", 16, tmp_path / "c")
    assert load_meta(folder)["label_names"] == ["0", "1", "2", "3", "4"]
    assert set(np.unique(load_split(folder, "validation").labels)) <= {0, 1, 2, 3, 4}


def test_empty_texts_are_counted_and_an_all_empty_split_refused(tiny_model: Path, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    csv = tmp_path / "s.csv"
    csv.write_text("text,label\n" + "\n".join(f"{'' if i % 4 == 0 else 'good film'},{i % 2}" for i in range(120)))
    with caplog.at_level("WARNING", logger="lmtune"):
        folder = build_cache(_spec(csv), tok, "m", 16, tmp_path / "c")
    empty = load_meta(folder)["splits"]["train"]["empty_texts"]
    assert 0 < empty < 64 and f"{empty} of 64 rows of the train split have an empty text" in caplog.text
    blank = tmp_path / "b.csv"
    blank.write_text("text,other,label\n" + "\n".join(f",x,{i % 2}" for i in range(120)))
    with pytest.raises(DataError, match="every text in the train split is empty"):
        build_cache(_spec(blank), tok, "m", 16, tmp_path / "c")
