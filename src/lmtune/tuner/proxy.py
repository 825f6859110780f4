"""Two-stage studies: search on a cheap proxy, then run the proxy's best configurations on the target.

Stage 1 is the study ``<name>-proxy``: the same search space searched on ``proxy.model`` (a script trial
gets it as ``trial.model`` and must read it) or on the target cut to its first ``proxy.truncate_layers``
blocks (``TrialSpec.extra``), with the proxy's own trial count, strategy, training length and share of
the train split. Its trial folders and its own
``lmtune.json`` live in ``<dir>/proxy/`` (so trial numbers of the two studies never share a folder);
it shares the storage and the tokenized-data cache of ``<dir>``. Stage 2 is the study ``<name>``:
the proxy's ``top_k`` best configurations other than the default settings, and the default settings
(the baseline, when ``search.include_default``), are enqueued on the target (each trial carries
``proxy_value`` and ``proxy_trial``) and run as fixed configurations (`Tuner`'s ``queued_only``: unpruned,
nothing sampled, a failed transfer stays failed); then ``refine_trials`` more trials of the
target's own strategy. Both studies live in one storage and one study directory; ``<dir>/lmtune.json``
names the target study and lists both under ``stages``.

Each stage is an ordinary `Tuner` run, so both resume: re-running skips a finished proxy stage and
enqueues only the transfers the target study does not hold yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from lmtune.config import StudyConfig, TaskSection, validate
from lmtune.errors import ConfigError
from lmtune.schedulers import waiting
from lmtune.space import Space
from lmtune.strategies import traits
from lmtune.study import PROXY_SUFFIX, StudyPaths, finished, read_meta, record, stage_entries, storage_for, write_meta
from lmtune.tuner.budget import RunSummary, StopKind
from lmtune.tuner.plan import make_plan
from lmtune.tuner.progress import PlainReporter, Reporter
from lmtune.tuner.search import Tuner
from lmtune.tuner.transfer import Transfer, top_configs

PROXY_DIR = "proxy"  # the proxy stage's folder inside the study directory

__all__ = ["PROXY_DIR", "PROXY_SUFFIX", "Transfer", "TwoStageSummary", "TwoStageTuner", "proxy_config", "top_configs"]


@dataclass
class TwoStageSummary:
    proxy_study: optuna.Study
    target_study: optuna.Study
    proxy: RunSummary | None = None  # None when a finished proxy stage was skipped
    target: list[RunSummary] | None = None  # transfer run, then refine run; None when stage 2 did not start
    stop_reason: str = ""
    stop_kind: StopKind = StopKind.FINISHED
    wall_time_s: float = 0.0


def proxy_config(cfg: StudyConfig, *, storage: str, train_rows: int | None = None) -> StudyConfig:
    """The proxy stage's own study config: the target's with the ``proxy`` section applied, in
    ``<dir>/proxy`` with the target's ``storage`` URL.

    ``train_rows`` (the target's train split size) is needed only for ``data_fraction`` when
    ``task.train_size`` is unset (all rows).
    """
    p = cfg.proxy
    if p is None:
        raise ValueError("proxy_config needs a config with a proxy section")
    task: dict[str, Any] = {"model": p.model or cfg.task.model}
    if p.data_fraction is not None:
        rows = cfg.task.train_size or train_rows
        if rows is None:
            raise ValueError("proxy.data_fraction with task.train_size unset needs train_rows")
        task["train_size"] = max(1, round(p.data_fraction * rows))
    raw = cfg.model_dump(mode="json")
    raw["proxy"] = None
    raw["study"].update(name=cfg.study.name + PROXY_SUFFIX, dir=str(Path(cfg.study.dir) / PROXY_DIR),
                        storage=storage)
    raw["task"].update(task)
    if p.max_steps is not None:
        raw["training"]["max_steps"] = p.max_steps
    raw["search"]["strategy"] = p.strategy or cfg.search.strategy
    raw["search"]["n_trials"] = p.n_trials or cfg.search.n_trials
    if traits(cfg.search.strategy).changes_settings and p.refine_trials:
        raise ConfigError("proxy.refine_trials: a PBT population cannot start from the transferred trials; set "
                          "proxy.refine_trials: 0, or search.strategy to bayes, random, asha or hyperband")
    if traits(raw["search"]["strategy"]).changes_settings:
        raise ConfigError("proxy.strategy: PBT changes a trial's settings while it trains, so its trials are no "
                          "single configuration to transfer; set proxy.strategy to bayes, random, asha, "
                          "hyperband or grid")
    try:
        return validate(raw, source="the proxy stage")
    except ConfigError as exc:
        raise ConfigError(f"{exc}\n  (the proxy stage's settings come from the proxy: section)") from None


def enqueue_transfers(study: optuna.Study, transfers: list[Transfer]) -> int:
    """Enqueue the transfers the target study does not hold yet (any state); returns how many."""
    held = {r.proxy_trial for r in record.records(study.get_trials(deepcopy=False))}
    todo = [tr for tr in transfers if tr.proxy_trial not in held]
    for tr in todo:
        study.enqueue_trial(tr.params, user_attrs=tr.user_attrs())
    return len(todo)


def _linked(study: optuna.Study) -> dict[int, bool]:
    """Proxy trial number → is_default, over the target trials that carry a proxy link."""
    return {r.proxy_trial: r.is_default for r in record.records(study.get_trials(deepcopy=False))
            if r.proxy_trial is not None}


def check_truncation(task: TaskSection, model_folder: str, *, truncate_layers: int | None) -> None:
    """``proxy.truncate_layers`` must keep fewer blocks than the target (``task.model``, in ``model_folder``)
    has (read from its config)."""
    k = truncate_layers
    if not k:
        return
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_folder, trust_remote_code=task.trust_remote_code)
    except Exception:  # unreadable here: the trainer's truncate_layers still refuses a bad k, with the reason
        return
    n = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    if isinstance(n, int) and k >= n:
        raise ConfigError(f"proxy.truncate_layers: {k}, but {task.model} has {n} transformer blocks; a proxy "
                          f"keeps fewer, set it to 1..{n - 1}")


class TwoStageTuner:
    """Runs (or resumes) a two-stage study. ``n_trials`` (the CLI's ``--n-trials``) overrides the proxy
    stage's trial count; ``reporter`` makes a fresh progress reporter for each `Tuner` run."""

    def __init__(self, cfg: StudyConfig, *, n_trials: int | None = None,
                 reporter: Callable[[], Reporter] = PlainReporter) -> None:
        if cfg.proxy is None:
            raise ValueError("TwoStageTuner needs a config with a proxy section")
        self.cfg, self.proxy = cfg, cfg.proxy
        self.n_trials = n_trials or cfg.proxy.n_trials or cfg.search.n_trials
        self.reporter = reporter
        self.stages = stage_entries(cfg.proxy, study_name=cfg.study.name, model=cfg.task.model,
                                    strategy=cfg.search.strategy, proxy_trials=self.n_trials)

    def run(self) -> TwoStageSummary:
        t0 = time.monotonic()
        plan = make_plan(self.cfg)  # the target's data, tokenized once; its train rows size data_fraction
        check_truncation(self.cfg.task, plan.model, truncate_layers=self.proxy.truncate_layers)
        pcfg = proxy_config(self.cfg, storage=plan.storage, train_rows=plan.train_rows)
        storage = storage_for(plan.storage)
        target = optuna.create_study(storage=storage, study_name=self.cfg.study.name,
                                     direction=self.cfg.study.direction, load_if_exists=True)
        self._link(plan.paths, plan.storage)
        proxy = optuna.create_study(storage=storage, study_name=pcfg.study.name,
                                    direction=self.cfg.study.direction, load_if_exists=True)
        summary = TwoStageSummary(proxy_study=proxy, target_study=target)
        try:
            early = self._proxy_stage(pcfg, proxy, summary)
            summary.stop_reason, summary.stop_kind = (early, StopKind.STAGE) if early else self._target_stage(
                target, proxy, summary, plan.space)
        finally:
            summary.wall_time_s = time.monotonic() - t0
        return summary

    def _link(self, paths: StudyPaths, storage: str) -> None:
        """Make ``<dir>`` a study directory of both stages from the start (``lmtune status`` works while
        stage 1 runs), and let the proxy stage reuse ``<dir>/cache`` (content-addressed, safe to share)."""
        meta = read_meta(paths.root) if paths.meta.is_file() else {}
        meta.update(study_name=self.cfg.study.name, storage=storage, metric=self.cfg.study.metric,
                    direction=self.cfg.study.direction, config=self.cfg.model_dump(mode="json"), stages=self.stages)
        write_meta(paths, meta)
        proxy_cache = paths.root / PROXY_DIR / paths.cache.name
        if not proxy_cache.exists():
            proxy_cache.parent.mkdir(parents=True, exist_ok=True)
            paths.cache.mkdir(exist_ok=True)
            proxy_cache.symlink_to(Path("..") / paths.cache.name, target_is_directory=True)

    def _proxy_stage(self, pcfg: StudyConfig, proxy: optuna.Study, summary: TwoStageSummary) -> str:
        """Run stage 1 unless it finished before; returns a stop reason when stage 2 must not start."""
        if finished(proxy) >= self.n_trials:
            return ""
        extra: dict[str, Any] = {"truncate_layers": self.proxy.truncate_layers} if self.proxy.truncate_layers else {}
        if pcfg.task.type == "script":  # a script loads its model itself: it must load trial.model (lmtune.script)
            extra["proxy_model"] = True
        run = Tuner(pcfg, n_trials=self.n_trials, reporter=self.reporter(), spec_extra=extra).run()
        summary.proxy = run
        if run.stop_kind is not StopKind.FINISHED:
            return f"proxy stage: {run.stop_reason}; re-run the same command to resume"
        return ""

    def _target_stage(self, target: optuna.Study, proxy: optuna.Study, summary: TwoStageSummary,
                      space: Space) -> tuple[str, StopKind]:
        wants_default = self._wants_default(space)
        transfers = top_configs(proxy, self.proxy.top_k, with_default=wants_default)
        if not transfers:
            return "proxy stage: no trial completed, nothing to transfer; see 'lmtune status'", StopKind.STAGE
        enqueue_transfers(target, transfers)
        linked = _linked(target)  # every transfer ever enqueued (a re-run with more proxy trials may add some)
        n_transfer = len(linked) + (wants_default and not any(linked.values()))  # the Tuner adds a missing default
        runs: list[RunSummary] = []
        summary.target = runs
        if waiting(target) or finished(target) < n_transfer:
            # The transfers are fixed configurations: the queue runs to the end, unpruned, and a transfer
            # that fails stays failed (nothing is drawn in its place). The sampler is never asked ("random"
            # only keeps grid/PBT target strategies out of this run: they apply to the refine run).
            unpruned = self.cfg.search.model_copy(update={"strategy": "random", "pruner": "none"})
            runs.append(self._target_run(self.cfg.model_copy(update={"search": unpruned}), n_transfer,
                                         queued_only=True))
            if runs[-1].stop_kind is not StopKind.FINISHED:
                return (f"target stage: {runs[-1].stop_reason}; re-run the same command to resume",
                        StopKind.STAGE)
        n_total = n_transfer - _failed_transfers(target) + self.proxy.refine_trials  # refine_trials more, exactly
        if finished(target) < n_total:
            runs.append(self._target_run(self.cfg, n_total))
            return runs[-1].stop_reason, runs[-1].stop_kind
        return "n_trials reached", StopKind.FINISHED

    def _target_run(self, cfg: StudyConfig, n_trials: int, *, queued_only: bool = False) -> RunSummary:
        return Tuner(cfg, n_trials=n_trials, reporter=self.reporter(), meta={"stages": self.stages},
                     queued_only=queued_only).run()

    def _wants_default(self, space: Space) -> bool:
        """Whether the Tuner runs the default settings as a trial (its rule: asked for and inside the target's
        space, ``plan.space``)."""
        return self.cfg.search.include_default and not space.outside(self.cfg.training.model_dump())


def _failed_transfers(study: optuna.Study) -> int:
    """Transfers (by proxy trial) that failed and are not queued, running or done again: a fixed
    configuration is not replaced, so the refine run does not count their slots."""
    states: dict[int, set[str]] = {}
    for r in record.records(study.get_trials(deepcopy=False)):
        if r.proxy_trial is not None:
            states.setdefault(r.proxy_trial, set()).add(r.state)
    return sum(1 for s in states.values() if s == {"FAIL"})
