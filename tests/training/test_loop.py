import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from lmtune.config import TrainingSection
from lmtune.data.sources import DataSpec
from lmtune.data.tokenized import build_cache
from lmtune.protocol import TrialSpec, decode_decision
from lmtune.training.loop import TrainingDiverged, train
from lmtune.training.optim import lr_lambda
from lmtune.training.session import cpu_has_amx, pick_precision


@pytest.fixture(scope="module")
def cache(tiny_model: Path, tiny_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    spec = DataSpec(dataset=str(tiny_csv), dataset_config=None, text_column="text", text_pair_column=None,
                    label_column="label", sizes={"train": 128, "validation": 64, "test": 64}, seed=0)
    return build_cache(spec, AutoTokenizer.from_pretrained(tiny_model), str(tiny_model), 16,
                       tmp_path_factory.mktemp("cache"))


def make_spec(model: Path, cache: Path, out: Path, **hp: Any) -> TrialSpec:
    hparams = {**TrainingSection().model_dump(), "learning_rate": 3e-3, "batch_size": 16, **hp}
    return TrialSpec(trial=0, model=str(model), task_type="classification", data_cache=str(cache),
                     hparams=hparams, examples_per_unit=64, total_examples=256, output_dir=str(out),
                     interactive=True)


def run(spec: TrialSpec, decisions: list[str] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    answers = iter(decisions or [])
    result = train(spec, events.append, lambda: decode_decision(next(answers, "continue")))
    return result, events


def test_trial_evaluates_at_equal_data_whatever_the_batch_size(tiny_model: Path, cache: Path,
                                                               tmp_path: Path) -> None:
    curves = {}
    for bs in (8, 32):
        result, events = run(make_spec(tiny_model, cache, tmp_path, batch_size=bs))
        evals = [e for e in events if e["event"] == "eval"]
        curves[bs] = [(e["units"], e["examples"]) for e in evals]
        assert result["examples"] == 256 and result["step"] == 256 // bs
        assert {"eval_loss", "eval_accuracy", "eval_f1", "train_loss"} <= set(evals[-1]["metrics"])
        assert result["train_tokens"] > 256 * 3  # real tokens, no padding
    assert curves[8] == curves[32] == [(1, 64), (2, 128), (3, 192), (4, 256)]


def test_training_learns_the_toy_task(tiny_model: Path, cache: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model, cache, tmp_path)
    spec = TrialSpec(**{**spec.__dict__, "total_examples": 768})
    result, events = run(spec)
    evals = [e["metrics"]["eval_loss"] for e in events if e["event"] == "eval"]
    assert evals[-1] < evals[0]
    assert result["metrics"]["eval_accuracy"] > 0.7


def test_stop_decision_prunes(tiny_model: Path, cache: Path, tmp_path: Path) -> None:
    result, _events = run(make_spec(tiny_model, cache, tmp_path), ["continue", "stop"])
    assert result["stopped_by"] == "pruned" and result["units"] == 2 and result["examples"] == 128


def test_nan_loss_is_a_clear_failure(tiny_model: Path, cache: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model, cache, tmp_path, learning_rate=1e12, optimizer="sgd", max_grad_norm=None)
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        run(spec)


def test_early_stopping_reports_best_point(tiny_model: Path, cache: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model, cache, tmp_path, learning_rate=1e-9, early_stopping_patience=1,
                     early_stopping_min_delta=0.5)
    result, events = run(spec)
    evals = [e for e in events if e["event"] == "eval"]
    assert result["stopped_by"] == "early_stopping" and result["units"] == 2 and len(evals) == 2
    assert result["metrics"] == evals[0]["metrics"]  # the best point (first eval), not the last
    assert result["last_metrics"] == evals[1]["metrics"]


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd", "adafactor"])
def test_every_optimizer_trains(optimizer: str, tiny_model: Path, cache: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model, cache, tmp_path, optimizer=optimizer, nesterov=True, lr_scheduler="cosine",
                     warmup_ratio=0.2)
    spec = TrialSpec(**{**spec.__dict__, "total_examples": 64})
    result, _ = run(spec)
    assert result["step"] == 4


def test_bf16_autocast_runs_and_is_recorded(tiny_model: Path, cache: Path, tmp_path: Path) -> None:
    result, events = run(make_spec(tiny_model, cache, tmp_path, precision="bf16"))
    assert result["precision"] == "bf16" and events[0]["precision"] == "bf16"
    assert events[0]["precision_reason"] == result["precision_reason"] == "bf16: as set in training.precision"


def test_auto_precision_says_what_it_chose_and_why(tiny_model: Path, cache: Path, tmp_path: Path) -> None:
    result, events = run(make_spec(tiny_model, cache, tmp_path, precision="auto"))
    assert result["precision"] == events[0]["precision"] == "fp32"  # on a CPU: bf16 quality is not measured yet
    assert result["precision_reason"].startswith("auto: fp32 on a CPU with")
    assert ("without AMX" in result["precision_reason"]) == (not cpu_has_amx())


@pytest.mark.parametrize(("requested", "device", "parameters", "ran", "why"), [
    ("auto", "cuda", 22_000_000, "fp32", "measured slower than fp32 for models up to 135M"),
    ("auto", "cuda", 135_000_000, "fp32", "model of 135M parameters"),
    ("fp16", "cpu", 22_000_000, "bf16", "fp16 asked on a CPU"),
    ("fp32", "cuda", 10**9, "fp32", "as set"),
])
def test_precision_choices(requested: str, device: str, parameters: int, ran: str, why: str) -> None:
    """What `auto` picks on a GPU for the model sizes where autocast was measured slower (the H200 check),
    and what replaces fp16 on a CPU; the choice rule needs no GPU to be checked."""
    chosen, reason = pick_precision(requested, torch.device(device), parameters=parameters)
    assert chosen == ran and why in reason


def test_schedules() -> None:
    lin, cos, const = (lr_lambda(k, 100, 10) for k in ("linear", "cosine", "constant"))
    assert lin(0) == pytest.approx(0.1) and lin(9) == pytest.approx(1.0)
    assert lin(55) == pytest.approx(0.5) and cos(55) == pytest.approx(0.5)
    assert const(90) == 1.0 and lin(100) == 0.0


def test_dropout_reaches_the_model_config(tiny_model: Path) -> None:
    from lmtune.training.models import load_classifier

    net = load_classifier(str(tiny_model), num_labels=2, dropout=0.3, attention_dropout=0.0)
    assert net.config.hidden_dropout_prob == 0.3 and net.config.attention_probs_dropout_prob == 0.0


def test_half_precision_checkpoint_trains_in_fp32(tiny_model: Path, tmp_path: Path) -> None:
    """Hub checkpoints are often stored in bf16; transformers 5 would load them as bf16 by default."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification

    from lmtune.training.models import load_classifier

    folder = tmp_path / "bf16"
    shutil.copytree(tiny_model, folder)
    AutoModelForSequenceClassification.from_pretrained(tiny_model, dtype=torch.bfloat16).save_pretrained(folder)
    net = load_classifier(str(folder), num_labels=2, dropout=None, attention_dropout=None)
    assert {p.dtype for p in net.parameters()} == {torch.float32}


def test_worker_process_protocol(tiny_model: Path, cache: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model, cache, tmp_path)
    path = tmp_path / "trial.json"
    spec.write(path)
    proc = subprocess.Popen([sys.executable, "-m", "lmtune.training.worker", str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdin and proc.stdout
    events = []
    for line in proc.stdout:
        ev = json.loads(line)
        events.append(ev)
        if ev["event"] == "eval":
            proc.stdin.write("stop\n")
            proc.stdin.flush()
    assert proc.wait() == 0
    assert [e["event"] for e in events if e["event"] != "progress"] == ["start", "eval", "end"]
    assert events[-1]["stopped_by"] == "pruned"


def test_worker_reports_errors(tmp_path: Path) -> None:
    spec = TrialSpec(trial=0, model=str(tmp_path / "missing"), task_type="classification",
                     data_cache=str(tmp_path / "nocache"), hparams=TrainingSection().model_dump(),
                     examples_per_unit=1, total_examples=1)
    spec.write(tmp_path / "t.json")
    out = subprocess.run([sys.executable, "-m", "lmtune.training.worker", str(tmp_path / "t.json")],
                         capture_output=True, text=True)
    assert out.returncode == 1
    ev = json.loads(out.stdout.strip().splitlines()[-1])
    assert ev["event"] == "error" and ev["reason"]


def test_serving_cost_is_measured_on_the_trained_model_and_a_larger_rank_costs_more(tiny_model: Path, cache: Path,
                                                                                  tmp_path: Path) -> None:
    measured = {}
    for r in (2, 16):
        spec = make_spec(tiny_model, cache, tmp_path / str(r), lora_enabled=True, lora_r=r, lora_alpha=2 * r)
        spec = TrialSpec(**{**spec.__dict__, "measure_serving": True})
        result, events = run(spec)
        evals = [e["metrics"] for e in events if e["event"] == "eval"]
        assert all(m["serve_params"] == result["metrics"]["serve_params"] for m in evals)  # every evaluation
        assert 0 < result["metrics"]["serve_latency_ms"] < 10_000
        measured[r] = result["metrics"]
    # the adapter sits beside the base: 14 ranks more add 14 x (in + out) per adapted matrix
    assert measured[16]["serve_params"] > measured[2]["serve_params"]
    assert measured[16]["serve_trainable_params"] - measured[2]["serve_trainable_params"] == \
        measured[16]["serve_params"] - measured[2]["serve_params"]
    assert measured[2]["serve_trainable_params"] < measured[2]["serve_params"]  # the base is frozen
    plain, _ = run(make_spec(tiny_model, cache, tmp_path / "plain"))
    assert "serve_params" not in plain["metrics"]  # measured only when a study objective needs it
