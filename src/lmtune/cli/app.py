"""The ``lmtune`` command: thin commands over the layers. User errors exit 2 with one message."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lmtune.errors import LmtuneError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hyperparameter optimization for language-model fine-tuning.")
# Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns; give them room instead.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config field: key.path=value")]
StudyDir = Annotated[Path, typer.Argument(help="The study directory (study.dir of the config)")]


@app.command()
def tune(config: Annotated[Path, typer.Argument(help="Study YAML")], set_: SetOpt = None,
         n_trials: Annotated[int | None, typer.Option("--n-trials", help="Total trials to finish")] = None,
         ) -> None:
    """Run (or resume) a study. Re-running the same command continues where it stopped."""
    from lmtune.cli.views import best_payload
    from lmtune.config import load_config
    from lmtune.study import read_meta
    from lmtune.tuner import Tuner
    from lmtune.tuner.progress import make_reporter

    cfg = load_config(config, set_ or [])
    summary = Tuner(cfg, n_trials=n_trials, reporter=make_reporter()).run()
    payload = best_payload(summary.study, read_meta(cfg.study.dir))
    out.print(f"\n{summary.stop_reason}; study at {cfg.study.dir} ({summary.wall_time_s:.0f}s this run)")
    _print_best(payload)
    if payload.get("best", 1) is None or summary.stop_reason.startswith("stopped"):
        raise typer.Exit(1)


def _print_best(p: dict[str, Any]) -> None:
    if p.get("best", 1) is None:
        out.print("no trial completed yet; see 'lmtune status' for the reasons")
        return
    out.print(f"best trial {p['trial']}: {p['metric']} = {p['value']:.4f}{_ppl(p)}")
    for k, v in p["params"].items():
        out.print(f"  {k}: {v}")
    d = p.get("default")
    if d is not None:
        diff = p["value"] - d["value"]
        out.print(f"default settings (trial {d['trial']}): {p['metric']} = {d['value']:.4f}{_ppl(d)} "
                  f"(best − default = {diff:+.4f}, validation split)")


def _ppl(p: dict[str, Any]) -> str:
    return "" if p.get("perplexity") is None else f" (perplexity {p['perplexity']:.3f})"


@app.command()
def status(study_dir: StudyDir) -> None:
    """Table of the study's trials, with failure reasons and what was spent."""
    from lmtune.cli.views import trial_rows
    from lmtune.study import load_study

    study, meta = load_study(study_dir)
    rows = trial_rows(study, meta["metric"])
    table = Table(title=f"{meta['study_name']} — {meta['metric']} ({meta['direction']})")
    ppl = meta["metric"] != "eval_perplexity" and any(r["perplexity"] is not None for r in rows)  # LM studies
    for col in ("#", "state", meta["metric"], *(["perplexity"] if ppl else []), "evals", "train tokens", "wall s",
                "params / reason"):
        table.add_column(col, min_width=len(col) if col == "perplexity" else None)
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        extra = [f"{r['perplexity']:.3f}" if r["perplexity"] is not None else ""] if ppl else []
        tail = r["reason"] or " ".join(f"{k}={_short(v)}" for k, v in r["params"].items())
        table.add_row(f"{r['number']}{'*' if r['default'] else ''}", r["state"], value, *extra,
                      str(r["units"] or ""), str(r["train_tokens"] or ""), f"{r['wall_time_s'] or 0:.0f}", tail)
    out.print(table)
    tokens = sum(r["train_tokens"] or 0 for r in rows)
    wall = sum(r["wall_time_s"] or 0 for r in rows)
    out.print(f"spent: {len(rows)} trials, {tokens:,} train tokens, {wall:.0f}s trial wall time (* = default)")


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


@app.command()
def best(study_dir: StudyDir,
         as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """The best trial: params, value, trial number (and the default trial's value)."""
    from lmtune.cli.views import best_payload
    from lmtune.study import load_study

    study, meta = load_study(study_dir)
    payload = best_payload(study, meta)
    if as_json:
        print(json.dumps(payload, indent=1, default=str))
    else:
        _print_best(payload)
    if payload.get("best", 1) is None:
        raise typer.Exit(1)


@app.command()
def export(study_dir: StudyDir,
           fmt: Annotated[str, typer.Option("--format", help="yaml | hf | adapter | merged")] = "yaml",
           out_path: Annotated[Path | None, typer.Option("--out", help="File (yaml, hf) or folder to write")] = None,
           ) -> None:
    """Export the best configuration (an lmtune YAML, or HF TrainingArguments JSON) or, for LoRA studies,
    the best trial's adapter (peft folder) or its base model with the adapter merged (plain HF folder)."""
    from lmtune.cli.views import best_payload, hf_training_arguments, training_yaml
    from lmtune.study import load_study

    study, meta = load_study(study_dir)
    payload = best_payload(study, meta)
    if payload.get("best", 1) is None:
        raise LmtuneError(f"{study_dir}: no completed trial to export yet; run 'lmtune tune' first")
    if fmt in ("adapter", "merged"):
        _export_weights(study, meta, study_dir, fmt, out_path or study_dir / "export" / fmt)
        return
    if fmt == "yaml":
        text = training_yaml(meta, payload["config"])
    elif fmt == "hf":
        text = json.dumps(hf_training_arguments(payload["config"]), indent=1)
    else:
        raise LmtuneError(f"--format {fmt}: expected yaml, hf, adapter or merged")
    if out_path is None:
        print(text)
    else:
        out_path.write_text(text)
        out.print(f"wrote {out_path}")


def _export_weights(study: Any, meta: dict[str, Any], study_dir: Path, fmt: str, target: Path) -> None:
    from lmtune.study import best_trial
    from lmtune.training.export import export_adapter, export_merged

    best = best_trial(study)
    assert best is not None
    if fmt == "adapter":
        folder = export_adapter(best.user_attrs, best.number, study_dir, target)
    else:
        folder = export_merged(best.user_attrs, best.number, study_dir, meta, target)
    out.print(f"wrote {folder} ({fmt} of best trial {best.number})")


def main() -> None:
    """Entry point: user errors → one message, exit 2, no traceback."""
    try:
        rv = app(standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except LmtuneError as exc:
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted; completed trials are saved — re-run the same command to resume")
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in standalone_mode=False
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
