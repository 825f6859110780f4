"""A saved classifier carries the data's class names (id2label / label2id), and an exported adapter folder
names its base model as the user gave it."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

from conftest import make_rows, tiny_overrides
from lmtune.config import load_config
from lmtune.execution import TRAINER, LocalExecutor
from lmtune.training.export import base_model_name, name_base_model
from lmtune.tuner.plan import make_plan, trial_spec

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")


def test_a_saved_model_answers_with_the_class_names(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoConfig, pipeline

    data = tmp_path / "named.csv"
    with data.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows({"text": r["text"], "label": "fresh" if int(r["label"]) else "rotten"} for r in make_rows(400))
    cfg = load_config(QUICKSTART, tiny_overrides(tiny_model, data, tmp_path / "run"))
    plan = make_plan(cfg)
    spec = trial_spec(plan, number=0, hparams=plan.defaults, device="cpu", threads=1, interactive=False,
                      save_model=True)
    ex = LocalExecutor(workers=1, device="cpu", threads=1, module=TRAINER)
    proc = ex.launch(replace(spec, output_dir=str(tmp_path / "t")), tmp_path / "t", ex.acquire())
    end = [ev for ev in proc.events() if ev["event"] == "end"]
    assert proc.wait() == 0 and end
    folder = Path(end[0]["model_dir"])
    config = AutoConfig.from_pretrained(folder)
    assert config.id2label == {0: "fresh", 1: "rotten"} and config.label2id == {"fresh": 0, "rotten": 1}
    clf = pipeline("text-classification", model=str(folder), tokenizer=str(tiny_model))
    assert clf("a good film")[0]["label"] in {"fresh", "rotten"}  # not LABEL_0 / LABEL_1


def test_an_adapter_folder_names_the_base_model_as_given(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/cache/hub/x/snap",
                                                              "peft_type": "LORA"}))
    name_base_model(tmp_path, base_model_name("HuggingFaceTB/SmolLM2-135M", "/cache/hub/x/snap"))
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved == {"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M", "peft_type": "LORA"}
    # a built-in name only lmtune resolves: the adapter names its installed folder
    assert base_model_name("builtin:smollm2-135m", "/site-packages/m") == "/site-packages/m"
    name_base_model(tmp_path / "nothing-here", "x")  # not an adapter folder: nothing happens
