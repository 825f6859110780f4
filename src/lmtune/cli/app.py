"""The ``lmtune`` command: thin commands over the layers. User errors exit 2 with one message."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lmtune.errors import LmtuneError, StudyFault

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hyperparameter optimization for language-model fine-tuning.")
# Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns; give them room instead.
# markup off: what is printed holds paths, failure reasons and config values, which may contain [brackets]
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config field: key.path=value")]
StudyDir = Annotated[Path, typer.Argument(help="The study directory (study.dir of the config)")]


@app.command()
def tune(config: Annotated[Path, typer.Argument(help="Study YAML")], set_: SetOpt = None,
         n_trials: Annotated[int | None, typer.Option("--n-trials", min=1, help="Total trials to finish")] = None,
         ) -> None:
    """Run (or resume) a study. Re-running the same command continues where it stopped."""
    from lmtune.cli.views import best_payload
    from lmtune.config import load_config
    from lmtune.study import read_meta
    from lmtune.tuner import Tuner, make_reporter

    cfg = load_config(config, set_ or [])
    if cfg.proxy is not None:  # two stages (lmtune.tuner.proxy): search on the proxy, run its top-k on the target
        from lmtune.cli.stages import tune_two_stage

        lines, payload, failed = tune_two_stage(cfg, n_trials)
        out.print("\n" + "\n".join(lines), markup=False)
        _print_best(payload)
        _print_next(payload, cfg.study.dir)
        if failed:
            raise typer.Exit(1)
        return
    summary = Tuner(cfg, n_trials=n_trials, reporter=make_reporter()).run()
    payload = best_payload(summary.study, read_meta(cfg.study.dir))
    out.print(f"\n{summary.stop_reason}; study at {cfg.study.dir} ({summary.wall_time_s:.0f}s this run)")
    _print_best(payload)
    _print_next(payload, cfg.study.dir)
    if payload.get("best", 1) is None or summary.stop_kind.failed:
        raise typer.Exit(1)


@app.command()
def train(config: Annotated[Path, typer.Argument(help="Config YAML (e.g. from 'lmtune export --format yaml')")],
          set_: SetOpt = None,
          out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for the run and its model "
                                                       "(default: <study.dir>-train)")] = None) -> None:
    """Train the config's training settings once, evaluate on validation and test, save the model."""
    from lmtune.config import load_config
    from lmtune.tuner.train_one import train_one

    cfg = load_config(config, set_ or [])
    result = train_one(cfg, out=out_dir, log=lambda m: out.print(f"[train] {m}"))
    if result.failure:
        err.print(f"training failed: {result.failure} (log: {result.out_dir / 'trials' / '0000' / 'trainer.log'})")
        raise typer.Exit(1)
    for name, metrics in (("validation", result.validation_metrics), ("test", result.test_metrics)):
        out.print(f"{name}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    where = result.model_dir if result.model_dir is not None else "(no model saved)"
    out.print(f"model: {where}; {result.train_tokens} train tokens, {result.wall_time_s:.0f}s; "
              f"results in {result.out_dir / 'result.json'}")


@app.command()
def worker(config: Annotated[Path, typer.Argument(help="Study YAML (study.storage: postgresql://...)")],
           set_: SetOpt = None,
           n_trials: Annotated[int | None, typer.Option("--n-trials", min=1, help="Total trials to finish")] = None,
           ) -> None:
    """Join a shared study as one of any number of workers (SLURM array, Kubernetes pods): take trials,
    run them here, write results. Dead workers' trials are failed by heartbeat and run again."""
    from lmtune.cli.views import best_payload
    from lmtune.config import load_config
    from lmtune.study import read_meta
    from lmtune.tuner import Tuner, make_reporter

    cfg = load_config(config, set_ or [])
    if not cfg.study.storage:
        raise LmtuneError("study.storage: workers share a study through a database server; set study.storage: "
                          "postgresql://USER:PASSWORD@HOST:5432/DB (the same URL for every worker)")
    summary = Tuner(cfg, n_trials=n_trials, reporter=make_reporter(), shared=True).run()
    payload = best_payload(summary.study, read_meta(cfg.study.dir))
    out.print(f"\n{summary.stop_reason}; this worker ran {len(summary.ran)} trials ({summary.wall_time_s:.0f}s)")
    _print_best(payload)
    if payload.get("best", 1) is None or summary.stop_kind.failed:
        raise typer.Exit(1)


def _print_best(p: dict[str, Any]) -> None:
    if p.get("best", 1) is None:
        out.print("no trial completed yet; see 'lmtune status' for the reasons")
        return
    from lmtune.report import ABSENT, Change, change_lines

    out.print(f"best trial {p['trial']}: {p['metric']} = {p['value']:.4f}{_ppl(p)}; what it changed from the default "
              "(full configuration: lmtune export --format yaml):")
    changes = [Change(c["name"], c.get("default", ABSENT), c.get("best", ABSENT), c["searched"])
               for c in p.get("changes", [])]
    for line in change_lines(changes):
        out.print(f"  {line}")
    d = p.get("default")
    if d is not None:
        diff = p["value"] - d["value"]
        out.print(f"default settings (trial {d['trial']}): {p['metric']} = {d['value']:.4f}{_ppl(d)} "
                  f"(best − default = {diff:+.4f}, validation split)")
    _print_front(p)


def _print_front(p: dict[str, Any]) -> None:
    """A multi-objective study's Pareto front: every trial no other beats on all objectives at once."""
    front = p.get("front")
    if not front:
        return
    senses = ", ".join(f"{o['metric']} ({o['direction']})" for o in p["objectives"])
    out.print(f"Pareto front: {len(front)} trials, none beaten on all of {senses}; take any of them with "
              "lmtune export --trial N, lmtune final --trial N", markup=False)
    d = p.get("default") or {}
    for f in front:
        values = ", ".join(f"{k} = {_fmt(v)}" for k, v in f["values"].items())
        params = " ".join(f"{k}={_fmt(v)}" for k, v in f["params"].items())
        mark = " (default settings)" if f.get("default") else ""
        out.print(f"  trial {f['trial']}: {values}{mark}   {params}", markup=False)
    if d.get("values") and not any(f.get("default") for f in front):
        values = ", ".join(f"{k} = {_fmt(v)}" for k, v in d["values"].items())
        out.print(f"  (default settings, trial {d['trial']}, not on the front: {values})", markup=False)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _print_next(p: dict[str, Any], study_dir: str) -> None:
    """What a user does after a search: prove the gain on the test split, read the report, take the config."""
    if p.get("best", 1) is not None:
        out.print(f"next: lmtune final {study_dir}    # default vs best, 3 seeds each, on the test split\n"
                  f"      lmtune report {study_dir}   # report.html + report.md in {study_dir}/report/\n"
                  f"      lmtune export {study_dir} --format yaml --out best.yaml   # the best configuration")


def _ppl(p: dict[str, Any]) -> str:
    return "" if p.get("perplexity") is None else f" (perplexity {p['perplexity']:.3f})"


@app.command()
def status(study_dir: StudyDir) -> None:
    """Table of the study's trials (one per stage of a two-stage study), with failure reasons and what was spent."""
    from lmtune.study import load_study
    from lmtune.study.stages import stages

    study, meta = load_study(study_dir)
    for stage in stages(study, meta):
        _status_table(stage.study, meta, "" if stage.role == "study" else f"{stage.role} stage: ")


def _status_table(study: Any, meta: dict[str, Any], prefix: str) -> None:
    from lmtune.cli.views import trial_rows
    from lmtune.study import front, objectives_of

    names = [m for m, _ in objectives_of(study, meta)]
    others = names[1:]  # a multi-objective study's other objectives
    rows = trial_rows(study, meta["metric"], names if others else None)
    table = Table(title=f"{prefix}{study.study_name} — {meta['metric']} ({meta['direction']})")
    ppl = meta["metric"] != "eval_perplexity" and any(r["perplexity"] is not None for r in rows)  # LM studies
    on_front = {t.number for t in front(study)} if others else set()
    for col in ("#", "state", meta["metric"], *others, *(["perplexity"] if ppl else []), "evals", "train tokens",
                "wall s", "params / reason"):
        table.add_column(col, min_width=len(col) if col == "perplexity" else None)
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        extra = [_fmt(v) for v in (r["values"] or [None] * (len(others) + 1))[1:]] if others else []
        extra = ["" if v == "None" else f"({v})" if r["values_at_end"] else v for v in extra]
        extra += [f"{r['perplexity']:.3f}" if r["perplexity"] is not None else ""] if ppl else []
        if r["number"] in on_front:
            value += " F"
        tail = r["reason"] or " ".join(f"{k}={_short(v)}" for k, v in r["params"].items())
        table.add_row(f"{r['number']}{'*' if r['default'] else ''}", r["state"], value, *extra,
                      str(r["units"] or ""), str(r["train_tokens"] or ""), f"{r['wall_time_s'] or 0:.0f}", tail)
    out.print(table)
    tokens = sum(r["train_tokens"] or 0 for r in rows)
    wall = sum(r["wall_time_s"] or 0 for r in rows)
    out.print(f"spent: {len(rows)} trials, {tokens:,} train tokens, {wall:.0f}s trial wall time (* = default"
              + (f"; F = on the Pareto front, {len(on_front)} trials: lmtune best lists it; (x) = a trial that "
                 "did not complete, where it stopped)" if others else ")"))
    caps = _cost_caps(study, meta)
    if caps:
        out.print(f"cost: {caps}")
    ckpt = study.user_attrs.get("lmtune.checkpoint_bytes")
    if ckpt is not None:  # PBT keeps only the checkpoints it can still hand out or resume from
        out.print(f"checkpoints kept on disk: {ckpt / 2**20:,.1f} MiB")


def _cost_caps(study: Any, meta: dict[str, Any]) -> str:
    """What the finished trials spent against the study's budget.max_gpu_hours / max_cost ("" when unset)."""
    from lmtune.config import BudgetSection
    from lmtune.study import spent_line, trials_spent

    raw = (meta.get("config") or {}).get("budget") or {}
    try:
        budget = BudgetSection(**raw)
    except ValueError:
        return ""
    return spent_line(trials_spent(study.get_trials(deepcopy=False), budget), budget)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


@app.command()
def best(study_dir: StudyDir,
         as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """The best trial: params, value, trial number (and the default trial's value)."""
    from lmtune.cli.stages import proxy_best, stages
    from lmtune.cli.views import best_payload
    from lmtune.study import load_study

    study, meta = load_study(study_dir)
    payload = best_payload(study, meta)
    proxy = proxy_best(stages(study, meta), meta)
    if proxy is not None:  # a two-stage study: the target's best above, the proxy stage's best too
        payload["proxy"] = proxy
    if as_json:
        print(json.dumps(payload, indent=1, default=str))
    else:
        _print_best(payload)
        if proxy is not None:
            out.print(f"proxy stage '{proxy['study']}':")
            _print_best(proxy)
    if payload.get("best", 1) is None:
        raise typer.Exit(1)


@app.command()
def export(study_dir: StudyDir,
           fmt: Annotated[str, typer.Option("--format", help="yaml | hf | adapter | merged")] = "yaml",
           out_path: Annotated[Path | None, typer.Option("--out", help="File (yaml, hf) or folder to write")] = None,
           trial: Annotated[int | None, typer.Option("--trial", help="Export this completed trial instead of the "
                                                     "best (e.g. a point of the Pareto front)")] = None,
           ) -> None:
    """Export the best configuration (an lmtune YAML, or HF TrainingArguments JSON) or, for LoRA studies,
    the best trial's adapter (peft folder) or its base model with the adapter merged (plain HF folder).
    --trial N exports trial N instead of the best."""
    from lmtune.cli.views import best_payload, hf_training_arguments
    from lmtune.config import best_config_yaml
    from lmtune.study import check_writable, load_study, record

    weights = fmt in ("adapter", "merged")
    if out_path is not None:  # refused before anything is read or written
        if not weights and out_path.is_dir():
            raise LmtuneError(f"--out: {out_path} is a folder; --format {fmt} writes one file: give a file name, "
                              f"e.g. --out {out_path / ('best.yaml' if fmt == 'yaml' else 'training_args.json')}")
        check_writable(out_path if weights else out_path.parent, field="--out")
    study, meta = load_study(study_dir)
    payload = best_payload(study, meta, trial=trial)
    if payload.get("best", 1) is None:
        raise LmtuneError(f"{study_dir}: no completed trial to export yet; run 'lmtune tune' first")
    if weights:
        target = out_path or study_dir / "export" / fmt
        if out_path is None:
            check_writable(target, field="--out (default STUDY_DIR/export/FORMAT)")
        _export_weights(study, meta, study_dir, fmt, target, int(payload["trial"]), asked=trial is not None)
        return
    if fmt == "yaml":
        text = best_config_yaml(meta["config"], payload["config"], trial=payload["trial"],
                                study_name=meta["study_name"], study_dir=study_dir, metric=meta["metric"],
                                value=payload["value"])
    elif fmt == "hf":
        planned = record.read(study.trials[payload["trial"]]).planned_examples
        args, extra = hf_training_arguments(payload["config"], total_examples=planned or meta["total_examples"],
                                            examples_per_unit=meta["examples_per_unit"])
        text = json.dumps(args, indent=1)
        if extra:  # TrainingArguments has no field for these: beside the file, never inside it
            note = json.dumps(extra, indent=1)
            if out_path is None:
                err.print(f"not TrainingArguments fields (apply them to the model config / optimizer / "
                          f"LoraConfig): {json.dumps(extra)}")
            else:
                side = out_path.with_name(out_path.stem + ".lmtune-extra.json")
                side.parent.mkdir(parents=True, exist_ok=True)
                side.write_text(note)
                out.print(f"wrote {side} (settings TrainingArguments has no field for)")
    else:
        raise LmtuneError(f"--format {fmt}: expected yaml, hf, adapter or merged")
    if out_path is None:
        print(text)
    else:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text)
        out.print(f"wrote {out_path}")


@app.command()
def final(study_dir: StudyDir,
          seeds: Annotated[int, typer.Option("--seeds", help="Seeds per configuration (0..K-1)")] = 3,
          workers: Annotated[int | None, typer.Option("--workers", help="Runs at once (default: the config's "
                                                      "execution.workers)")] = None,
          trial: Annotated[int | None, typer.Option("--trial", help="Retrain this completed trial instead of the "
                                                    "best (e.g. a point of the Pareto front)")] = None) -> None:
    """Retrain the default and the best configuration (or --trial N) with K seeds each; compare them on the test
    split."""
    from lmtune.cli.final_views import print_final
    from lmtune.study import load_study
    from lmtune.tuner import FinalRunner

    if trial is not None:
        out.print(f"[final] trial {trial} (--trial) takes the best configuration's place: its runs are labelled best")
    summary = FinalRunner(study_dir, seeds=seeds, workers=workers, log=lambda m: out.print(f"[final] {m}"),
                          trial=trial).run()
    study, meta = load_study(study_dir)
    out.print()
    print_final(out, summary.results, study.get_trials(deepcopy=False), metric=meta["metric"],
                direction=meta["direction"], study_dir=study_dir)
    out.print(f"results: {summary.results_path}")
    if summary.model_dir is not None:
        out.print(f"final model (best configuration, seed 0; HF folder + tokenizer + lmtune-config.yaml): "
                  f"{summary.model_dir}")
    for key, reason in summary.failed:
        err.print(f"final run {key} failed: {reason}", markup=False)
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def report(study_dir: StudyDir) -> None:
    """Write report.html (self-contained, interactive) and report.md into STUDY_DIR/report/."""
    from lmtune.report import REPORT_DIR, StudyDirError, StudyMetaError, size_note, write_report
    from lmtune.study import check_writable

    folder = Path(study_dir) / REPORT_DIR
    if folder.exists() and not folder.is_dir():
        raise LmtuneError(f"lmtune report: {folder} is a file, not a folder; the report is written into that "
                          "folder: move or delete the file, then run the command again")
    check_writable(folder, field="the report folder (STUDY_DIR/report)")
    try:
        html, md = write_report(study_dir)
    except (StudyDirError, StudyMetaError, ValueError) as exc:  # the report's user-state errors
        raise LmtuneError(str(exc)) from None
    out.print(f"wrote {html} ({size_note(html)})\nwrote {md}")


@app.command()
def dashboard(study_dir: StudyDir,
              port: Annotated[int, typer.Option("--port", help="Port to serve on")] = 8080,
              host: Annotated[str, typer.Option("--host", help="Interface to bind (localhost only by "
                                                "default; the dashboard has no login)")] = "127.0.0.1") -> None:
    """Open the study in optuna-dashboard (pip install 'lmtune[dashboard]')."""
    from lmtune.cli.dashboard import serve

    serve(study_dir, host=host, port=port, say=out.print)


def _export_weights(study: Any, meta: dict[str, Any], study_dir: Path, fmt: str, target: Path, number: int, *,
                    asked: bool) -> None:
    """Trial ``number``'s adapter or merged model (the best, or the trial ``--trial`` asked for: ``asked``)."""
    from lmtune.study import record
    from lmtune.training import export_adapter, export_merged

    best = study.trials[number]
    r = record.read(best)
    if fmt == "adapter":
        folder = export_adapter(r.adapter_dir, r.config, best.number, study_dir, target, task=meta["config"]["task"])
    else:
        folder = export_merged(r.adapter_dir, r.config, best.number, study_dir, meta, target)
    out.print(f"wrote {folder} ({fmt} of {'' if asked else 'best '}trial {best.number})")


def main() -> None:
    """Entry point: user errors → one message, exit 2, no traceback."""
    try:
        rv = app(standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except LmtuneError as exc:
        _exit_with(str(exc), 2)
    except StudyFault as exc:  # the machine failed, not the input: what is kept and how to go on
        _exit_with(str(exc), 1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted; completed trials are saved — re-run the same command to resume")
        sys.exit(130)
    except Exception as exc:  # usage errors arrive here in standalone_mode=False
        if _is_usage_error(exc):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(2)
        if type(exc).__name__ == "Abort":
            sys.exit(130)
        from lmtune.study import fault_message, storage_fault

        fault = storage_fault(exc)
        if fault is not None:  # final, export, status...: the same message as the tuner's
            _exit_with(fault_message(fault, None), 1)
        raise


def _exit_with(message: str, code: int) -> None:
    """``error: MESSAGE`` on stderr as plain text (never markup), then exit ``code``."""
    from rich.text import Text

    err.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)
    sys.exit(code)


def _is_usage_error(exc: BaseException) -> bool:
    """click's and typer's own vendored click exceptions (typer 0.2x raises the latter: `--n-trials abc`,
    an unknown option, a missing argument, bare `lmtune`)."""
    import click

    classes: list[type] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as TyperClickException

        classes.append(TyperClickException)
    except ImportError:
        pass
    return isinstance(exc, tuple(classes))
