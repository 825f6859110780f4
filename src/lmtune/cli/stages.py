"""What the CLI shows for a two-stage (proxy → target) study: pure functions to text lines and payloads."""

from __future__ import annotations

from typing import Any

from lmtune.cli.views import best_payload
from lmtune.report import TransferSummary, transfer_summary
from lmtune.study import Stage
from lmtune.study.stages import stages

__all__ = ["proxy_best", "stages", "transfer_lines", "transfer_of", "tune_two_stage"]


def transfer_of(stage_list: list[Stage]) -> TransferSummary | None:
    """The transfer summary of a two-stage study (None for a single-stage one)."""
    by_role = {s.role: s for s in stage_list}
    if "proxy" not in by_role or "target" not in by_role:
        return None
    return transfer_summary(by_role["proxy"].study.get_trials(deepcopy=False),
                            by_role["target"].study.get_trials(deepcopy=False))


def _cost(label: str, cost: dict[str, Any]) -> str:
    return (f"  {label}: {cost['trials']} trials, {int(cost['train_tokens']):,} train tokens, "
            f"{cost['wall_time_s']:.0f}s trial wall time")


def transfer_lines(tr: TransferSummary) -> list[str]:
    """Rank correlation, each stage's compute and the target-only estimate, as printed after `tune`."""
    rho = "undefined" if tr.rho != tr.rho else f"{tr.rho:.3f}"
    lines = [f"transfer: Spearman rank correlation (proxy vs target) = {rho} over {len(tr.pairs)} configurations",
             _cost("proxy stage", tr.proxy_cost), _cost("target stage", tr.target_cost)]
    est = tr.target_only
    if est is not None:
        spent = tr.proxy_cost["wall_time_s"] + tr.target_cost["wall_time_s"]
        share = f"; proxy + transfer used {100 * spent / est['wall_time_s']:.0f}% of that" if est["wall_time_s"] else ""
        lines.append(f"  a target-only search of {est['trials']} trials: ~{int(est['train_tokens']):,} train tokens, "
                     f"~{est['wall_time_s']:.0f}s (estimated from the target's mean cost per trial){share}")
    if tr.warning:
        lines.append(f"warning: {tr.warning}")
    return lines


def proxy_best(stage_list: list[Stage], meta: dict[str, Any]) -> dict[str, Any] | None:
    """The proxy stage's best trial as a `best_payload`, or None for a single-stage study."""
    proxy = next((s for s in stage_list if s.role == "proxy"), None)
    if proxy is None:
        return None
    return best_payload(proxy.study, {**meta, "study_name": proxy.name})



def tune_two_stage(cfg: Any, n_trials: int | None) -> tuple[list[str], dict[str, Any], bool]:
    """Run (or resume) a two-stage study; returns the lines to print, the target's best payload, and
    whether the command should exit non-zero (a stage stopped early or nothing completed)."""
    from lmtune.study import read_meta
    from lmtune.tuner import TwoStageTuner, make_reporter

    run = TwoStageTuner(cfg, n_trials=n_trials, reporter=make_reporter).run()
    meta = read_meta(cfg.study.dir)
    stage_list = stages(run.target_study, meta)
    skipped = " (finished before; not redone)" if run.proxy is None else ""
    lines = [f"proxy stage '{run.proxy_study.study_name}': {len(run.proxy_study.trials)} trials{skipped}",
             f"target stage '{run.target_study.study_name}': {run.stop_reason}; study at {cfg.study.dir} "
             f"({run.wall_time_s:.0f}s this run)"]
    tr = transfer_of(stage_list)
    if tr is not None:
        lines += transfer_lines(tr)
    payload = best_payload(run.target_study, meta)
    failed = payload.get("best", 1) is None or run.stop_kind.failed
    return lines, payload, failed
