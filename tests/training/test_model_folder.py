"""A model folder is checked before the first trial: config, weights present and whole (#13 item 4)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run_lmtune, set_args, tiny_overrides
from lmtune.errors import ModelLoadError
from lmtune.training.models import check_model_folder

ROOT = Path(__file__).parents[2]


def _no_weights(d: Path) -> None:
    (d / "model.safetensors").unlink()


def _truncated(d: Path) -> None:
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])


def _header_cut(d: Path) -> None:
    (d / "model.safetensors").write_bytes(b"\x00\x10\x00\x00\x00\x00\x00\x00{")


def _empty(d: Path) -> None:
    (d / "model.safetensors").write_bytes(b"")


def _index_names_a_missing_shard(d: Path) -> None:
    (d / "model.safetensors").rename(d / "model-00001-of-00002.safetensors")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))


def _bad_config(d: Path) -> None:
    (d / "config.json").write_text("{not json")


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "no weights": (_no_weights, "has no weights"),
    "truncated": (_truncated, "is truncated"),
    "header cut off": (_header_cut, "header is cut off"),
    "empty file": (_empty, "header is cut off"),
    "index names a missing shard": (_index_names_a_missing_shard, "model-00002-of-00002.safetensors is missing"),
    "config not json": (_bad_config, "cannot be read as a model config"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_model_folder_is_refused_with_the_file_named(case: str, tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    check_model_folder(str(folder))  # whole: passes
    damage, message = CASES[case]
    damage(folder)
    with pytest.raises(ModelLoadError, match=message):
        check_model_folder(str(folder))


def test_shards_named_by_an_index_pass(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "w": "model-00001-of-00001.safetensors"}}))
    check_model_folder(str(folder))
    check_model_folder("some-org/some-hub-model")  # not a folder: the tokenizer's load checks hub ids


@pytest.mark.slow
def test_tune_refuses_a_truncated_model_before_any_trial(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    _truncated(folder)
    d = tmp_path / "study"
    out = run_lmtune("tune", str(ROOT / "examples" / "quickstart.yaml"),
                     *set_args(tiny_overrides(folder, tiny_csv, d)), "--n-trials", "1")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert f"{folder / 'model.safetensors'} cannot be loaded: it is truncated" in out.stderr
    assert not (d / "trials").exists()  # nothing trained
