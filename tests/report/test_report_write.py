"""End to end: a fake study built with Optuna directly → write_report → report.html and report.md."""

from __future__ import annotations

import json
import re
import shutil
from itertools import pairwise
from pathlib import Path

import optuna
import pytest
import yaml
from report_fake_study import STUDY_NAME, make_fake_study

from conftest import run_lmtune
from lmtune.report.load import StudyDirError, StudyMetaError, load_study_dir
from lmtune.report.render import write_report


def test_write_report_full_study(tmp_path: Path) -> None:
    study_dir = make_fake_study(tmp_path / "run")
    html_path, md_path = write_report(study_dir)
    assert html_path == study_dir / "report" / "report.html" and html_path.is_file()
    assert md_path == study_dir / "report" / "report.md" and md_path.is_file()

    md = md_path.read_text(encoding="utf-8")
    assert "0.8100 ± 0.0100 | 0.8600 ± 0.0100 | +0.0500 | better, significant" in md
    assert "test_loss (lower is better)" in md
    config_file = md_path.with_name("best-config.yaml")  # the full configuration: a link away, not in the way
    assert "](best-config.yaml)" in md and "```yaml" not in md
    best = yaml.safe_load(config_file.read_text(encoding="utf-8"))["training"]
    assert best == {
        "learning_rate": 3e-4,
        "weight_decay": 0.08,
        "batch_size": 16,
        "warmup_ratio": 0.0,
        "max_steps": 40,
        "eval_every": 8,
        "precision": "fp32",
        "optimizer": "adamw",
    }
    assert "Best trial: #4" in md
    # one best-configuration writer: the report shows the file `lmtune export --format yaml` writes
    exported = run_lmtune("export", str(study_dir), "--format", "yaml")
    assert exported.returncode == 0, exported.stderr
    assert yaml.safe_load(config_file.read_text(encoding="utf-8")) == yaml.safe_load(exported.stdout)
    assert "Spearman" in md and "rho = 0.857" in md
    assert "| 9 | FAIL |" in md and "CUDA out of memory" in md
    assert "pruned at 2 units" in md
    assert "10 (8 complete, 1 pruned, 1 fail)" in md
    assert "0 (default)" in md

    html = html_path.read_text(encoding="utf-8")
    assert "https://cdn" not in html
    assert not re.search(r"<script[^>]+src=", html), "a script loads from outside the file"
    assert html.count("<script") == 1 + 9  # plotly.js once, then one newPlot per figure
    assert "Best score vs compute" in md and "Expected best vs number of trials" in md
    assert "Warning: computed from only 8 completed trials" in md  # importances from few trials
    assert "<details><summary>Full configuration" in html  # collapsed in the HTML
    for key in ("gain", "history", "parallel", "importances", "curves", "pbt", "transfer"):
        assert f'<div id="fig-{key}" class="plotly-graph-div"' in html
    assert html.count("Plotly.newPlot") == 9
    assert "±" in html


def test_report_without_final_proxy_or_pbt(tmp_path: Path) -> None:
    study_dir = make_fake_study(tmp_path / "plain", proxy=False, pbt=False, final=False)
    html_path, md_path = write_report(study_dir)
    md = md_path.read_text(encoding="utf-8")
    assert "No final runs yet: run `lmtune final`" in md
    assert "Spearman" not in md and "lineage" not in md
    html = html_path.read_text(encoding="utf-8")
    assert 'id="fig-pbt"' not in html and 'id="fig-transfer"' not in html and 'id="fig-curves"' in html


def test_missing_lmtune_json_names_the_dir(tmp_path: Path) -> None:
    with pytest.raises(StudyDirError, match="lmtune tune") as info:
        write_report(tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path) in str(info.value)
    assert not (tmp_path / "report").exists()


def test_bad_meta_is_a_value_error(tmp_path: Path) -> None:
    (tmp_path / "lmtune.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(StudyMetaError) as info:
        load_study_dir(tmp_path)
    assert isinstance(info.value, ValueError)
    (tmp_path / "lmtune.json").write_text('{"study_name": "x", "storage": "sqlite:////nowhere/x.db"}')
    with pytest.raises(StudyMetaError, match="does not exist"):
        load_study_dir(tmp_path)
    assert not Path("/nowhere/x.db").exists()


def test_moved_study_dir_still_loads(tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.move(make_fake_study(tmp_path / "orig"), moved)
    record = load_study_dir(moved)
    assert record.study.study_name == STUDY_NAME and len(record.trials) == 10
    assert record.proxy_trials is not None and len(record.proxy_trials) == 8
    assert record.final is not None and record.metric == "eval_accuracy"


def test_report_of_a_study_with_only_a_running_trial(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/study.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="lm", storage=storage, direction="minimize")
    study.ask().suggest_float("lr", 1e-5, 1e-3, log=True)  # left RUNNING
    meta = {
        "study_name": "lm",
        "storage": storage,
        "metric": "perplexity",
        "direction": "minimize",
        "config": {},
    }
    (tmp_path / "lmtune.json").write_text(json.dumps(meta), encoding="utf-8")
    html_path, md_path = write_report(tmp_path)
    md = md_path.read_text(encoding="utf-8")
    assert "No completed trial yet." in md and "No final runs yet" in md
    assert "needs at least 2 complete trials, found 0" in md
    assert "| 0 | RUNNING |" in md
    assert "https://cdn" not in html_path.read_text(encoding="utf-8")


def test_score_vs_compute_has_one_line_per_stage_the_target_after_the_proxy(tmp_path: Path) -> None:
    from lmtune.report.content import collect

    proxy, target = collect(load_study_dir(make_fake_study(tmp_path / "run"))).compute
    assert (proxy.stage, target.stage) == ("proxy", "target")
    assert all(a[0] <= b[0] and a[1] <= b[1] for s in (proxy, target) for a, b in pairwise(s.points))
    # the target stage starts where the proxy stage's compute ended: x is the whole study's compute
    assert target.points[0][0] > proxy.points[-1][0] and target.points[0][1] > proxy.points[-1][1]
    plain = collect(load_study_dir(make_fake_study(tmp_path / "plain", proxy=False, pbt=False, final=False)))
    assert [s.stage for s in plain.compute] == ["search"]


def test_a_file_where_the_report_folder_goes_is_one_message_and_nothing_is_touched(tmp_path: Path) -> None:
    study_dir = make_fake_study(tmp_path / "run", proxy=False, pbt=False, final=False)
    (study_dir / "report").write_text("my notes")
    before = sorted(p.name for p in study_dir.iterdir())
    out = run_lmtune("report", str(study_dir))
    text = out.stdout + out.stderr
    assert out.returncode == 2 and "Traceback" not in text, text[-2000:]
    assert f"{study_dir / 'report'} is a file, not a folder" in text and "move or delete the file" in text
    assert (study_dir / "report").read_text() == "my notes" and sorted(p.name for p in study_dir.iterdir()) == before


def test_the_report_reads_a_study_folder_as_the_study_store_does(tmp_path: Path) -> None:
    """One reader of a study directory, one error family: what `lmtune status` or `lmtune final` would say
    about the folder is what the report says."""
    from lmtune.errors import NotAStudyError, StudyError
    from lmtune.study import read_meta

    for broken in (None, "{not json", '{"study_name": "x"}'):
        if broken is not None:
            (tmp_path / "lmtune.json").write_text(broken, encoding="utf-8")
        with pytest.raises(StudyError) as store:
            read_meta(tmp_path)
        with pytest.raises(StudyError) as report:
            load_study_dir(tmp_path)
        assert type(report.value) is type(store.value) and str(report.value) == str(store.value)
        assert isinstance(report.value, NotAStudyError) == (broken is None)
