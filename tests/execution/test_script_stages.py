"""Script studies built on other studies: a proxy stage on a smaller model (``proxy.model``, handed to the
script as ``trial.model``) whose best configurations run on the target, and a warm start from an earlier
script study (``search.prior_studies``)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

import lmtune
from lmtune.errors import ConfigError

# A stand-in training program whose "model" is a folder with a config.json saying its size: the loss falls
# with the data seen, is lowest at lr = 1e-3 and lower on the larger model. It writes what it was given.
PROGRAM = textwrap.dedent("""
    import json, math, os
    import lmtune

    t = lmtune.trial()
    model = t.model if os.environ.get("SCRIPT_MODE") != "own-model" else os.environ["OWN_MODEL"]
    size = json.load(open(os.path.join(model, "config.json")))["size"]
    lr = t.params["learning_rate"]
    t.params["batch_size"]  # set in the config: its examples come in batches of it
    seen = 0
    while seen < t.total_examples:
        seen = min(t.total_examples, seen + t.examples_per_unit)
        loss = abs(math.log10(lr) + 3) + 1.0 / (1 + seen / 100) + 1.0 / size
        t.report({"eval_loss": loss}, examples=seen)
        if t.should_stop:
            break
    with open(os.path.join(t.output_dir, "script.json"), "w") as f:
        json.dump({"model": model, "size": size, "lr": lr, "seen": seen, "total": t.total_examples}, f)
""")


def _model(folder: Path, size: int) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"size": size}))
    return folder


def _study(tmp_path: Path, name: str, **search: Any) -> dict[str, Any]:
    (tmp_path / "train.py").write_text(PROGRAM)
    big = tmp_path / "big" if (tmp_path / "big").is_dir() else _model(tmp_path / "big", 8)
    return {
        "study": {"name": name, "dir": str(tmp_path / name), "metric": "eval_loss", "direction": "minimize"},
        "task": {"type": "script", "command": ["python", "train.py"], "workdir": str(tmp_path),
                 "metrics": ["eval_loss"], "train_size": 400, "model": str(big)},
        "training": {"batch_size": 10, "eval_every": 4, "epochs": 1},
        "search": {"strategy": "random",
                   "space": {"learning_rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}}, **search},
    }


def _told(trial_dir: str | None) -> dict[str, Any]:
    assert trial_dir is not None
    data: dict[str, Any] = json.loads((Path(trial_dir) / "script.json").read_text())
    return data


def test_a_script_studys_proxy_stage_trains_proxy_model_and_its_best_run_on_the_target(tmp_path: Path) -> None:
    small = _model(tmp_path / "small", 2)
    raw = _study(tmp_path, "two")
    raw["proxy"] = {"model": str(small), "n_trials": 4, "top_k": 2, "data_fraction": 0.5}
    result = lmtune.tune(raw, progress=False)
    proxy = lmtune.load(tmp_path / "two" / "proxy")
    assert proxy.study_name == "two-proxy" and len(proxy.trials) == 4
    assert {t.state for t in proxy.trials} == {"COMPLETE"}
    for t in proxy.trials:  # the proxy's model, and half the target's data (trial.total_examples)
        told = _told(t.trial_dir)
        assert told["model"] == str(small.resolve()) and told["size"] == 2
        assert told["total"] == told["seen"] == 200
    # the target ran the default and the proxy's 2 best others, each on the target model and all its data
    assert [t.state for t in result.trials] == ["COMPLETE"] * 3
    by_number = {t.number: t for t in proxy.trials}
    ranked = sorted((t for t in proxy.trials if not t.is_default), key=lambda t: t.value or 0.0)
    transferred = [t for t in result.trials if not t.is_default]
    assert sorted(t.proxy_trial for t in transferred if t.proxy_trial is not None) == \
        sorted(t.number for t in ranked[:2])
    for t in result.trials:
        told = _told(t.trial_dir)
        assert told["model"] == str((tmp_path / "big").resolve()) and told["size"] == 8
        assert told["total"] == told["seen"] == 400
        assert t.proxy_trial is not None  # the default is linked to the proxy's default trial
        source = by_number[t.proxy_trial]
        assert told["lr"] == pytest.approx(source.config["learning_rate"])
        assert t.proxy_value == pytest.approx(source.value)
        # same settings, larger model and twice the data: a lower loss than on the proxy
        assert t.value is not None and source.value is not None and t.value < source.value
    meta = json.loads((tmp_path / "two" / "lmtune.json").read_text())
    assert [s["role"] for s in meta["stages"]] == ["proxy", "target"]


def test_a_proxy_stage_script_that_never_reads_trial_model_fails_naming_it(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    small = _model(tmp_path / "small", 2)
    raw = _study(tmp_path, "two")
    raw["proxy"] = {"model": str(small), "n_trials": 1}
    raw["search"]["max_failures"] = 1
    monkeypatch.setenv("SCRIPT_MODE", "own-model")  # it loads a model of its own choosing, not the proxy
    monkeypatch.setenv("OWN_MODEL", str(tmp_path / "big"))
    result = lmtune.tune(raw, progress=False)
    assert result.trials == ()  # the proxy stage stopped: nothing was transferred
    (failed,) = lmtune.load(tmp_path / "two" / "proxy").trials
    assert failed.state == "FAIL"
    assert "the script never read trial.model" in (failed.fail_reason or "")
    assert "load the model from trial.model" in (failed.fail_reason or "")


@pytest.mark.parametrize(("proxy", "target", "message"), [
    ({"truncate_layers": 2}, True, "proxy.truncate_layers: lmtune cannot cut a script's model"),
    ({"model": "small"}, False, "set task.model to the target model"),
])
def test_a_script_proxy_lmtune_cannot_run_is_refused_saying_why(tmp_path: Path, proxy: dict[str, Any],
                                                               target: bool, message: str) -> None:
    raw = _study(tmp_path, "two")
    raw["proxy"] = proxy
    if not target:
        del raw["task"]["model"]
    with pytest.raises(ConfigError, match=message) as refused:
        lmtune.tune(raw, progress=False)
    if "truncate_layers" in proxy:
        assert "set proxy.model to a smaller model instead" in str(refused.value)
    assert not (tmp_path / "two").exists()


@pytest.mark.slow
def test_a_script_study_warm_starts_from_an_earlier_script_studys_best(tmp_path: Path) -> None:
    earlier = lmtune.tune(_study(tmp_path, "a"), n_trials=4, progress=False)
    top2 = sorted((t for t in earlier.trials if not t.is_default), key=lambda t: (t.value or 0.0, t.number))[:2]
    later = lmtune.tune(_study(tmp_path, "b", prior_studies=[str(tmp_path / "a")], prior_top_k=2), n_trials=3,
                        progress=False)
    trials = later.trials
    assert trials[0].is_default and [t.state for t in trials] == ["COMPLETE"] * 3
    assert [t.prior_trial for t in trials[1:]] == [t.number for t in top2]
    assert {t.prior_study for t in trials[1:]} == {str((tmp_path / "a").resolve())}
    for t, source in zip(trials[1:], top2, strict=True):  # the script trained the earlier study's settings
        assert _told(t.trial_dir)["lr"] == pytest.approx(source.config["learning_rate"])
        assert t.value == pytest.approx(source.value)  # the same stand-in, the same settings: the same score
