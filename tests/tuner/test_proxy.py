"""Two-stage proxy studies: config validation, stage derivation, transfer selection, and one real
two-stage study on the tiny model (proxy = its first block) with a resume."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from conftest import tiny_overrides
from lmtune.config import load_config
from lmtune.errors import ConfigError
from lmtune.execution import TrialHandle
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.protocol import TrialSpec
from lmtune.study.store import carried_attrs as _carry_attrs
from lmtune.tuner.progress import PlainReporter
from lmtune.tuner.proxy import (
    TwoStageTuner,
    _linked,
    check_truncation,
    enqueue_transfers,
    proxy_config,
    top_configs,
)
from lmtune.tuner.search import Tuner

ROOT = Path(__file__).parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


# -- config ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "words"), [
    (["proxy.truncate_layers=2", "proxy.model=builtin:minilm-l6"], ["not both", "proxy.model"]),
    (["proxy.top_k=2"], ["proxy.model", "proxy.truncate_layers", "set one"]),
    (["proxy.truncate_layers=0"], ["proxy.truncate_layers", "at least 1", "e.g."]),
    (["proxy.truncate_layers=2", "proxy.data_fraction=1.5"], ["proxy.data_fraction", "(0, 1]"]),
    (["proxy.truncate_layers=2", "proxy.top_k=0"], ["proxy.top_k"]),
    (["proxy.truncate_layers=2", "proxy.strategy=pbt"], ["proxy.strategy"]),
    (["proxy.truncate_layer=2"], ["proxy.truncate_layer", "unknown key", "truncate_layers"]),
])
def test_config_errors_name_the_field_and_fix(overrides: list[str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(QUICKSTART, overrides)
    for word in words:
        assert word in str(err.value)


def test_proxy_config_applies_the_proxy_section() -> None:
    cfg = load_config(QUICKSTART, ["study.dir=/tmp/s", "proxy.truncate_layers=2", "proxy.data_fraction=0.25",
                                   "proxy.max_steps=7", "proxy.strategy=random", "proxy.n_trials=9"])
    p = proxy_config(cfg, storage="sqlite:////tmp/s/study.db")
    assert p.proxy is None and p.study.name == "quickstart-proxy" and p.study.dir == "/tmp/s/proxy"
    assert p.study.storage == "sqlite:////tmp/s/study.db" and p.task.model == cfg.task.model
    assert p.task.train_size == 500 and p.training.max_steps == 7
    assert p.search.strategy == "random" and p.search.n_trials == 9 and p.search.space == cfg.search.space
    unset = load_config(QUICKSTART, ["task.train_size=null", "proxy.model=/m", "proxy.data_fraction=0.1"])
    q = proxy_config(unset, storage="sqlite://", train_rows=1000)
    assert q.task.train_size == 100 and q.task.model == "/m" and q.search.strategy == "bayes"


def test_pbt_target_needs_another_proxy_strategy_and_no_refine() -> None:
    cfg = load_config(QUICKSTART, ["search.strategy=pbt", "proxy.truncate_layers=2"])
    with pytest.raises(ConfigError, match=r"proxy\.strategy"):
        proxy_config(cfg, storage="sqlite://")
    random_proxy = load_config(QUICKSTART, ["search.strategy=pbt", "proxy.truncate_layers=2", "proxy.strategy=random"])
    assert proxy_config(random_proxy, storage="sqlite://").search.strategy == "random"
    refine = load_config(QUICKSTART, ["search.strategy=pbt", "proxy.truncate_layers=2", "proxy.strategy=random",
                                      "proxy.refine_trials=2"])
    with pytest.raises(ConfigError, match=r"proxy\.refine_trials"):
        proxy_config(refine, storage="sqlite://")


def test_truncation_must_keep_fewer_blocks_than_the_target(tiny_model: Path) -> None:
    cfg = load_config(QUICKSTART, [f"task.model={tiny_model}", "proxy.truncate_layers=2"])
    with pytest.raises(ConfigError, match=r"proxy.truncate_layers: 2, .* has 2 transformer blocks.*1\.\.1"):
        check_truncation(cfg.task, str(tiny_model), truncate_layers=2)
    check_truncation(cfg.task, str(tiny_model), truncate_layers=1)
    check_truncation(cfg.task, str(tiny_model), truncate_layers=None)


# -- transfer selection ---------------------------------------------------------------------------
def _study(values: list[tuple[float, float | None, bool]],
           direction: Literal["maximize", "minimize"] = "maximize") -> optuna.Study:
    study = optuna.create_study(direction=direction)
    for lr, value, is_default in values:
        state = TrialState.COMPLETE if value is not None else TrialState.PRUNED
        study.add_trial(create_trial(params={"lr": lr}, distributions={"lr": FloatDistribution(0.0, 1.0)},
                                     value=value, state=state, user_attrs={"is_default": is_default}))
    return study


def test_top_configs_put_the_default_first_then_the_best_others() -> None:
    study = _study([(0.5, 0.9, True), (0.1, 0.8, False), (0.2, 0.95, False), (0.1, 0.7, False),
                    (0.3, None, False), (0.4, 0.6, False)])
    got = top_configs(study, 2)
    assert [(t.proxy_trial, t.params["lr"], t.is_default) for t in got] == [(0, 0.5, True), (2, 0.2, False),
                                                                             (1, 0.1, False)]
    assert got[0].user_attrs() == {"proxy_value": 0.9, "proxy_trial": 0, "is_default": True}
    assert [t.proxy_trial for t in top_configs(study, 5, with_default=False)] == [2, 1, 5]
    low = _study([(0.1, 0.3, False), (0.2, 0.1, False)], direction="minimize")
    assert [t.proxy_trial for t in top_configs(low, 1)] == [1]


def test_enqueue_transfers_is_idempotent() -> None:
    proxy = _study([(0.1, 0.8, False), (0.2, 0.9, True)])
    target = optuna.create_study()
    assert enqueue_transfers(target, top_configs(proxy, 1)) == 2
    assert enqueue_transfers(target, top_configs(proxy, 1)) == 0
    waiting = target.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs.get("proxy_trial") for t in waiting] == [1, 0]
    assert _linked(target) == {0: False, 1: True}
    assert [t.user_attrs.get("is_default", False) for t in waiting] == [True, False]  # the baseline first


def test_interrupted_trials_keep_their_link_to_the_proxy() -> None:
    def trial(**attrs: object) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=attrs)

    assert _carry_attrs(trial(is_default=False, proxy_value=0.7, proxy_trial=0, curve=[], config={})) == {
        "proxy_value": 0.7, "proxy_trial": 0}
    assert _carry_attrs(trial(is_default=True, curve=[])) == {"is_default": True}
    assert _carry_attrs(trial(is_default=False)) is None


# -- a real two-stage study -----------------------------------------------------------------------
def _cfg(model: Path, data: Path, study_dir: Path, *extra: str) -> Any:
    return load_config(QUICKSTART, [*tiny_overrides(model, data, study_dir), "proxy.truncate_layers=1",
                                    "proxy.n_trials=3", "proxy.top_k=1", *extra])


def _quiet() -> PlainReporter:
    return PlainReporter(io.StringIO())


@pytest.fixture(scope="module")
def two_stage(tiny_model: Path, tiny_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("proxy") / "run"
    run = TwoStageTuner(_cfg(tiny_model, tiny_csv, d), reporter=_quiet).run()
    assert run.stop_reason == "n_trials reached" and run.proxy is not None
    return d


def _trials(d: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{d / 'study.db'}").trials


def test_proxy_trials_train_a_k_block_model(two_stage: Path) -> None:
    proxy = _trials(two_stage, "quickstart-proxy")
    assert len(proxy) == 3 and all(t.state == TrialState.COMPLETE for t in proxy)
    for t in proxy:
        trial_dir = Path(t.user_attrs["trial_dir"])
        assert trial_dir.parent.parent == two_stage / "proxy"
        assert json.loads((trial_dir / "trial.json").read_text())["extra"] == {"truncate_layers": 1}
        assert "proxy: kept 1 of 2 transformer blocks" in (trial_dir / "trainer.log").read_text()
    for t in _trials(two_stage, "quickstart"):
        assert "proxy:" not in (Path(t.user_attrs["trial_dir"]) / "trainer.log").read_text()


def test_target_trials_link_to_the_proxy_trials(two_stage: Path) -> None:
    proxy = {t.number: t for t in _trials(two_stage, "quickstart-proxy")}
    target = _trials(two_stage, "quickstart")
    assert len(target) == 2 and all(t.state == TrialState.COMPLETE for t in target)
    for t in target:  # the best non-default proxy configuration and the default settings
        source = proxy[t.user_attrs["proxy_trial"]]
        assert t.user_attrs["proxy_value"] == source.value and t.params == source.params
        assert t.user_attrs["is_default"] == source.user_attrs["is_default"]
    assert [t.user_attrs["is_default"] for t in target] == [True, False]  # trial 0 is the baseline
    best_other = max((p for p in proxy.values() if not p.user_attrs["is_default"]), key=lambda p: p.value or 0.0)
    assert best_other.number in {t.user_attrs["proxy_trial"] for t in target}


def test_lmtune_json_lists_both_stages(two_stage: Path) -> None:
    meta = json.loads((two_stage / "lmtune.json").read_text())
    assert meta["study_name"] == "quickstart" and meta["config"]["proxy"]["truncate_layers"] == 1
    assert [(s["name"], s["role"]) for s in meta["stages"]] == [("quickstart-proxy", "proxy"),
                                                                ("quickstart", "target")]
    assert meta["stages"][0]["truncate_layers"] == 1 and meta["stages"][1]["top_k"] == 1
    from lmtune.report.load import load_study_dir

    record = load_study_dir(two_stage)
    assert record.proxy_trials is not None and len(record.proxy_trials) == 3 and len(record.trials) == 2


def _lmtune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lmtune", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def test_status_and_best_show_both_stages(two_stage: Path) -> None:
    status = _lmtune("status", str(two_stage))
    assert status.returncode == 0, status.stderr
    assert "proxy stage: quickstart-proxy" in status.stdout and "target stage: quickstart" in status.stdout
    best = json.loads(_lmtune("best", str(two_stage), "--json").stdout)
    assert best["study"] == "quickstart" and best["proxy"]["study"] == "quickstart-proxy"
    target_values = [t.value or 0.0 for t in _trials(two_stage, "quickstart")]
    proxy_values = [t.value or 0.0 for t in _trials(two_stage, "quickstart-proxy")]
    assert best["value"] == max(target_values) and best["proxy"]["value"] == max(proxy_values)


def test_report_shows_transfer_and_the_target_only_estimate(two_stage: Path) -> None:
    from lmtune.report.render import write_report

    _, md = write_report(two_stage)
    text = md.read_text()
    assert "Spearman rank correlation" in text and "target-only search (estimate" in text
    assert "Warning: only 2 proxy/target pairs" in text


@pytest.mark.slow
def test_rerun_skips_the_finished_proxy_stage_and_refines(two_stage: Path, tiny_model: Path,
                                                          tiny_csv: Path) -> None:
    before = {t.number: (t.datetime_complete, t.value) for t in _trials(two_stage, "quickstart-proxy")}
    run = TwoStageTuner(_cfg(tiny_model, tiny_csv, two_stage, "proxy.refine_trials=1"), reporter=_quiet).run()
    assert run.proxy is None and run.stop_reason == "n_trials reached"
    assert {t.number: (t.datetime_complete, t.value) for t in _trials(two_stage, "quickstart-proxy")} == before
    target = _trials(two_stage, "quickstart")
    assert len(target) == 3 and target[-1].state == TrialState.COMPLETE
    assert "proxy_trial" not in target[-1].user_attrs  # a refine trial, sampled on the target


# -- transfer quality as printed after `tune` -----------------------------------------------------
def _cost_trial(number: int, value: float | None, proxy_value: float | None, tokens: int,
                wall: float) -> optuna.trial.FrozenTrial:
    attrs: dict[str, Any] = {"train_tokens": tokens, "wall_time_s": wall}
    if proxy_value is not None:
        attrs["proxy_value"] = proxy_value
    state = TrialState.COMPLETE if value is not None else TrialState.PRUNED
    trial = create_trial(value=value, state=state, user_attrs=attrs)
    trial.number = number
    return trial


def test_target_only_estimate_and_printed_lines() -> None:
    from lmtune.cli.stages import transfer_lines
    from lmtune.report.series import transfer_summary

    proxy = [_cost_trial(i, 0.1 * i, None, 10, 1.0) for i in range(8)]
    target = [_cost_trial(0, 0.5, 0.1, 100, 10.0), _cost_trial(1, 0.7, 0.3, 300, 30.0),
              _cost_trial(2, None, 0.2, 50, 5.0)]  # a pruned trial does not set the per-trial cost
    tr = transfer_summary(proxy, target)
    assert tr.target_only == {"trials": 8, "train_tokens": 1600, "wall_time_s": 160.0}
    lines = transfer_lines(tr)
    assert lines[0].startswith("transfer: Spearman rank correlation (proxy vs target) = 1.000 over 2")
    assert "proxy stage: 8 trials, 80 train tokens, 8s" in lines[1]
    assert "target stage: 3 trials, 450 train tokens, 45s" in lines[2]
    assert "target-only search of 8 trials: ~1,600 train tokens, ~160s" in lines[3] and "33% of that" in lines[3]
    assert lines[-1].startswith("warning: only 2 proxy/target pairs")
    reversed_target = [_cost_trial(i, -0.1 * i, 0.1 * i, 1, 1.0) for i in range(4)]
    assert "Spearman rho = -1.00 < 0.5" in transfer_lines(transfer_summary(proxy, reversed_target))[-1]


# -- the transfers are fixed configurations -------------------------------------------------------
class _KillsOne(SimulatedExecutor):
    """Kills the trainer of the trial whose learning rate is ``lr`` as soon as it launches."""

    def __init__(self, lr: float) -> None:
        super().__init__(workers=1)
        self.lr = lr

    def launch(self, spec: TrialSpec, trial_dir: Path, slot: int) -> TrialHandle:
        handle = super().launch(spec, trial_dir, slot)
        if spec.hparams["learning_rate"] == self.lr:
            handle.kill()
        return handle


def test_queued_only_runs_the_queue_and_replaces_no_failed_transfer(tiny_model: Path, tiny_csv: Path,
                                                                    tmp_path: Path) -> None:
    d = tmp_path / "fixed"
    d.mkdir()
    study = optuna.create_study(study_name="quickstart", storage=f"sqlite:///{d / 'study.db'}", direction="maximize")
    for lr in (3e-4, 7e-4):
        study.enqueue_trial({"learning_rate": lr, "batch_size": 16, "weight_decay": 0.0, "optimizer": "adamw"})
    cfg = load_config(QUICKSTART, [*tiny_overrides(tiny_model, tiny_csv, d), "search.include_default=false"])
    run = Tuner(cfg, n_trials=5, reporter=_quiet(), backend=_KillsOne(3e-4), queued_only=True).run()
    trials = _trials(d, "quickstart")
    assert run.stop_reason == "queued configurations done"
    assert [(t.params["learning_rate"], t.state) for t in trials] == [(3e-4, TrialState.FAIL),
                                                                      (7e-4, TrialState.COMPLETE)]
    assert "killed" in trials[0].user_attrs["fail_reason"]
    # the same queue in an ordinary run: the sampler fills the failed slot and the n_trials after it
    plain = Tuner(cfg, n_trials=3, reporter=_quiet(), backend=SimulatedExecutor()).run()
    assert plain.stop_reason == "n_trials reached" and len(_trials(d, "quickstart")) == 4
