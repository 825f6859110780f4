"""Several objectives (study.objectives): a score against costs, a Pareto front in the study, pruning by
multi-objective successive halving (`lmtune.pareto`), and the front shown and usable (best, export --trial)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import optuna
import pytest

from conftest import run_lmtune, tiny_overrides
from lmtune.config import load_config, validate
from lmtune.errors import ConfigError
from lmtune.execution.simulated import SimulatedExecutor
from lmtune.pareto import dominates, fronts, hypervolume, order, oriented, promotable
from lmtune.study import front, load_study, record
from lmtune.tuner import Tuner

QUICKSTART = str(Path(__file__).parents[2] / "examples" / "quickstart.yaml")
LORA_SPACE = ("search.space={learning_rate: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}, "
              "lora_r: {type: categorical, choices: [1, 2, 4, 8, 16, 32, 64]}}")
TWO = "study.objectives=[{metric: eval_accuracy}, {metric: serve_params}]"


# -- the rules ------------------------------------------------------------------------------------------
def test_fronts_sort_points_by_domination_and_order_keeps_the_ends_of_a_front() -> None:
    points = [(1.0, 5.0), (2.0, 2.0), (5.0, 1.0), (3.0, 3.0), (4.0, 4.0), (2.5, 2.5)]
    assert fronts(points) == [[0, 1, 2], [5], [3], [4]]
    assert dominates((1, 1), (1, 2)) and not dominates((1, 2), (2, 1)) and not dominates((1, 1), (1, 1))
    # inside the first front the ends come first (infinite crowding distance), then the inner point
    assert order(points)[:3] == [0, 2, 1]
    assert oriented([0.9, 100], ["maximize", "minimize"]) == (-0.9, 100.0)


def test_promotion_keeps_a_third_of_a_rung_and_reduces_to_successive_halving_with_one_objective() -> None:
    one = [(0.5,), (0.2,), (0.9,), (0.4,), (0.3,), (0.8,)]
    kept = [i for i in range(len(one)) if promotable(one, i, 3)]
    assert kept == [1, 4]  # the two lowest of six (6 // 3)
    assert promotable([(0.3,)], 0, 3)  # alone at its rung: it goes on
    assert not promotable([(0.2,), (0.3,)], 1, 3)  # two at a rung, factor 3: only the better goes on
    # two objectives: a trial on the front goes on even when its score is the worst
    two = [(-0.9, 100.0), (-0.8, 90.0), (-0.7, 80.0), (-0.5, 10.0), (-0.6, 95.0), (-0.4, 99.0)]
    assert promotable(two, 3, 3) and not promotable(two, 4, 3)


def test_rungs_are_laid_from_the_end_so_none_sits_just_before_it() -> None:
    from lmtune.config import SearchSection
    from lmtune.schedulers.search import halving_of

    assert halving_of(SearchSection(strategy="asha"), 10) == ([3], 3)  # not 3 and 9 (of 10)
    assert halving_of(SearchSection(strategy="asha", min_units=1), 27) == ([1, 3, 9], 3)
    assert halving_of(SearchSection(strategy="hyperband", min_units=2, reduction_factor=2), 16) == ([2, 4, 8], 2)
    assert halving_of(SearchSection(strategy="random"), 27) is None  # no pruner, no rungs
    assert halving_of(SearchSection(strategy="random", pruner="asha"), 27) == ([9], 3)


def test_hypervolume_is_exact_in_two_and_three_dimensions() -> None:
    assert hypervolume([(1.0, 1.0)], (2.0, 2.0)) == pytest.approx(1.0)
    assert hypervolume([(0.0, 1.0), (1.0, 0.0)], (2.0, 2.0)) == pytest.approx(3.0)
    assert hypervolume([(0.0, 1.0), (1.0, 0.0), (1.5, 1.5)], (2.0, 2.0)) == pytest.approx(3.0)  # dominated adds 0
    assert hypervolume([(3.0, 0.0)], (2.0, 2.0)) == 0.0  # beyond the reference
    rng = random.Random(0)
    pts = [(rng.random(), rng.random(), rng.random()) for _ in range(6)]
    inside = sum(any(all(q[k] <= x[k] for k in range(3)) for q in pts)
                 for x in ((rng.random(), rng.random(), rng.random()) for _ in range(20000)))
    assert hypervolume(pts, (1.0, 1.0, 1.0)) == pytest.approx(inside / 20000, abs=0.02)  # Monte Carlo check


# -- the config -----------------------------------------------------------------------------------------
def test_the_first_objective_is_the_study_metric_and_bad_objectives_are_refused(tmp_path: Path) -> None:
    cfg = load_config(QUICKSTART, [f"study.dir={tmp_path}", TWO])
    assert cfg.study.metric == "eval_accuracy" and cfg.study.direction == "maximize" and cfg.study.multi_objective
    assert cfg.study.objective_list() == [("eval_accuracy", "maximize"), ("serve_params", "minimize")]
    lm = validate({"task": {"type": "causal_lm", "model": "builtin:smollm2-135m", "dataset": "builtin:chatterbot"},
                   "study": {"objectives": [{"metric": "eval_loss"}, {"metric": "train_tokens"}]}})
    assert lm.study.metric == "eval_loss" and lm.study.direction == "minimize"
    for bad, said in (
        ("study.objectives=[{metric: eval_accuracy}, {metric: latency, direction: minimize}]",
         "'latency' is not reported"),
        ("study.objectives=[{metric: eval_accuracy}, {metric: latency}]", "say whether 'latency' is maximized"),
        ("study.objectives=[{metric: eval_accuracy}, {metric: eval_accuracy}]", "listed twice"),
        ("study.objectives=[{metric: eval_accuracy}, {metric: serve_params, direction: up}]", "direction"),
    ):
        with pytest.raises(ConfigError, match=said):
            load_config(QUICKSTART, [f"study.dir={tmp_path}", bad])
    with pytest.raises(ConfigError, match="differ from the first objective"):
        load_config(QUICKSTART, [f"study.dir={tmp_path}", TWO, "study.metric=eval_f1"])
    with pytest.raises(ConfigError, match="PBT copies the best member by one score"):
        load_config(QUICKSTART, [f"study.dir={tmp_path}", TWO, "search.strategy=pbt"])
    with pytest.raises(ConfigError, match="median compares one value"):
        load_config(QUICKSTART, [f"study.dir={tmp_path}", TWO, "search.pruner=median"])


# -- a study --------------------------------------------------------------------------------------------
def _study(tiny_model: Path, tiny_csv: Path, folder: Path, *extra: str) -> list[str]:
    return [*tiny_overrides(tiny_model, tiny_csv, folder), "training.max_steps=27", "training.eval_every=1",
            "training.lora_enabled=true", LORA_SPACE, TWO, "search.strategy=asha", *extra]


def test_a_two_objective_study_prunes_tells_both_objectives_and_keeps_a_front(tiny_model: Path, tiny_csv: Path,
                                                                            tmp_path: Path) -> None:
    cfg = load_config(QUICKSTART, _study(tiny_model, tiny_csv, tmp_path / "s"))
    Tuner(cfg, n_trials=14, backend=SimulatedExecutor(workers=1)).run()
    study, _meta = load_study(tmp_path / "s")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["eval_accuracy", "serve_params"]  # optuna-dashboard shows them by name
    states = [t.state.name for t in study.trials]
    assert "PRUNED" in states and states.count("COMPLETE") >= 2
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    for t in done:  # serve_params as the trainer measured it (the stand-in: 1M + 10k per rank)
        assert t.values[1] == 1_000_000 + 10_000 * t.params.get("lora_r", 8)
    ours = {t.number for t in front(study)}
    assert ours == {t.number for t in study.best_trials}  # Optuna's own front agrees
    assert len(ours) >= 2
    for t in study.trials:  # a pruned trial was behind a third of its rung's trials, on both objectives
        if t.state.name == "PRUNED":
            assert record.read(t).pruned_at_units is not None
    from lmtune.cli.views import trial_rows

    rows = {r["number"]: r for r in trial_rows(study, "eval_accuracy", ["eval_accuracy", "serve_params"])}
    for t in study.trials:  # lmtune status: a pruned trial's objectives where it stopped, marked as such
        if t.state.name == "PRUNED":
            assert rows[t.number]["values_at_end"]
            assert rows[t.number]["values"][1] == 1_000_000 + 10_000 * t.params.get("lora_r", 8)
        else:
            assert rows[t.number]["values"] == t.values and not rows[t.number]["values_at_end"]


def test_without_pruning_nothing_is_pruned_and_costs_are_told_as_measured(tiny_model: Path, tiny_csv: Path,
                                                                          tmp_path: Path) -> None:
    cfg = load_config(QUICKSTART, _study(tiny_model, tiny_csv, tmp_path / "s", "search.strategy=random",
                                         "study.objectives=[{metric: eval_accuracy}, {metric: train_tokens}, "
                                         "{metric: train_gpu_hours}]"))
    Tuner(cfg, n_trials=4, backend=SimulatedExecutor(workers=1)).run()
    study, _ = load_study(tmp_path / "s")
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    for t in study.trials:
        r = record.read(t)
        assert t.values[1] == r.train_tokens
        assert t.values[2] == pytest.approx((r.wall_time_s or 0) / 3600, rel=1e-6)


@pytest.mark.slow
def test_the_front_is_listed_and_any_front_trial_exports(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    cfg = load_config(QUICKSTART, _study(tiny_model, tiny_csv, tmp_path / "s"))
    Tuner(cfg, n_trials=10, backend=SimulatedExecutor(workers=1)).run()
    study, _ = load_study(tmp_path / "s")
    members = front(study)
    first = max(members, key=lambda t: t.values[0])
    other = next(t for t in members if t.number != first.number)
    r = run_lmtune("best", str(tmp_path / "s"), "--json")
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    assert [m["trial"] for m in payload["front"]] == [t.number for t in members]
    assert payload["front"][0]["values"] == {"eval_accuracy": members[0].values[0],
                                             "serve_params": members[0].values[1]}
    text = run_lmtune("best", str(tmp_path / "s")).stdout
    assert "Pareto front" in text and f"trial {other.number}" in text
    r = run_lmtune("export", str(tmp_path / "s"), "--trial", str(other.number), "--format", "yaml",
                   "--out", str(tmp_path / "x.yaml"))
    assert r.returncode == 0, r.stderr
    exported = (tmp_path / "x.yaml").read_text()
    assert f"lora_r: {other.params['lora_r']}" in exported and f"trial {other.number}" in exported
    r = run_lmtune("export", str(tmp_path / "s"), "--trial", "999", "--format", "yaml")
    assert r.returncode == 2 and "trial 999" in r.stderr and "Traceback" not in r.stderr
    assert not math.isnan(first.values[0])


def test_a_study_cannot_be_resumed_with_other_objectives(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    cfg = load_config(QUICKSTART, _study(tiny_model, tiny_csv, tmp_path / "s", "search.strategy=random"))
    Tuner(cfg, n_trials=1, backend=SimulatedExecutor(workers=1)).run()
    other = load_config(QUICKSTART, _study(tiny_model, tiny_csv, tmp_path / "s", "search.strategy=random",
                                           "study.objectives=[{metric: eval_accuracy}, {metric: train_tokens}]"))
    with pytest.raises(ConfigError, match="has the objectives"):
        Tuner(other, n_trials=2, backend=SimulatedExecutor(workers=1)).run()
    assert len(optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 's' / 'study.db'}").trials) == 1


def test_the_report_draws_the_front_with_the_default_marked(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    from lmtune.report import write_report
    from lmtune.report.content import collect
    from lmtune.report.figures import build_figures
    from lmtune.report.load import load_study_dir

    cfg = load_config(QUICKSTART, _study(tiny_model, tiny_csv, tmp_path / "s"))
    Tuner(cfg, n_trials=8, backend=SimulatedExecutor(workers=1)).run()
    study, _ = load_study(tmp_path / "s")
    content = collect(load_study_dir(tmp_path / "s"))
    assert content.front is not None
    assert {p.number for p in content.front.members} == {t.number for t in front(study)}
    assert any(p.is_default for p in content.front.points)
    fig = build_figures(study, content)["front"]
    assert {tr.name for tr in fig.data} >= {"Pareto front", "default settings"}
    html, md = write_report(tmp_path / "s")
    text = md.read_text()
    assert "## Pareto front" in text and "serve_params" in text
    assert "Pareto front" in html.read_text()


def test_final_retrains_the_front_trial_asked_for(tiny_model: Path, tiny_csv: Path, tmp_path: Path) -> None:
    from lmtune.errors import StudyError
    from lmtune.tuner import FinalRunner

    cfg = load_config(QUICKSTART, _study(tiny_model, tiny_csv, tmp_path / "s"))
    Tuner(cfg, n_trials=8, backend=SimulatedExecutor(workers=1)).run()
    study, _ = load_study(tmp_path / "s")
    members = front(study)
    chosen = members[-1]
    summary = FinalRunner(tmp_path / "s", seeds=1, log=lambda _m: None, backend=SimulatedExecutor(workers=1),
                          trial=chosen.number).run()
    assert summary.results["best_trial"] == chosen.number
    assert summary.best.hparams["lora_r"] == chosen.params["lora_r"]
    pruned = next(t for t in study.trials if t.state.name == "PRUNED")
    with pytest.raises(StudyError, match=f"--trial {pruned.number}: it is PRUNED"):
        FinalRunner(tmp_path / "s", seeds=1, log=lambda _m: None, backend=SimulatedExecutor(workers=1),
                    trial=pruned.number).run()


def test_a_multi_objective_study_warm_starts_another_by_its_score(tiny_model: Path, tiny_csv: Path,
                                                                   tmp_path: Path) -> None:
    """search.prior_studies reads an earlier multi-objective study's best configurations by its first objective."""
    from lmtune.tuner.transfer import top_configs

    cfg = load_config(QUICKSTART, _study(tiny_model, tiny_csv, tmp_path / "s", "search.strategy=random"))
    Tuner(cfg, n_trials=3, backend=SimulatedExecutor(workers=1)).run()
    study, _ = load_study(tmp_path / "s")
    top = top_configs(study, 2, with_default=False)
    done = sorted((t for t in study.trials if t.state.name == "COMPLETE" and not record.read(t).is_default),
                  key=lambda t: -t.values[0])
    assert [t.proxy_trial for t in top] == [t.number for t in done[:2]]
