"""What the best configuration changed (issue 35, item 1): the settings that differ from the default,
searched ones marked, in the report, in `lmtune best` and at the end of `lmtune tune`; the full
configuration one click (HTML) or one link (Markdown) away."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from report_fake_study import make_fake_study

from conftest import run_lmtune
from lmtune.report.diff import ABSENT, Change, change_lines, config_changes, default_settings
from lmtune.report.render import write_report

DEFAULT = {"learning_rate": 5e-5, "batch_size": 32, "weight_decay": 0.0, "precision": "fp32", "lora_r": 8,
           "wandb": None, "seed": 0}


def test_only_the_changed_and_the_searched_settings_are_listed() -> None:
    best = {**DEFAULT, "learning_rate": 3e-4, "precision": "bf16", "batch_size": 32}
    changes = config_changes(DEFAULT, best, searched=["batch_size", "learning_rate"])
    assert [(c.name, c.default, c.best, c.searched, c.changed) for c in changes] == [
        ("learning_rate", 5e-5, 3e-4, True, True),  # searched first, in the best configuration's order
        ("batch_size", 32, 32, True, False),  # searched, kept at the default: still listed
        ("precision", "fp32", "bf16", False, True),  # changed without being searched (a PBT/script setting)
    ]
    assert change_lines(changes) == ["learning_rate: 5e-05 → 0.0003 (searched)", "precision: \"fp32\" → \"bf16\"",
                                     "searched, kept at the default: batch_size=32"]


def test_equal_numbers_of_two_types_are_not_a_change_and_missing_settings_are_shown() -> None:
    changes = config_changes({"epochs": 1, "old": True}, {"epochs": 1.0, "new": 2}, searched=[])
    assert [(c.name, c.default, c.best) for c in changes] == [("new", ABSENT, 2), ("old", True, ABSENT)]
    assert change_lines([]) == ["the same settings as the default"]
    assert change_lines([Change("lr", 1e-4, 1e-4, True)]) == ["searched, kept at the default: lr=0.0001"]


def test_the_default_is_the_config_when_no_default_trial_ran() -> None:
    config = {"training": {"learning_rate": 5e-5}, "task": {"defaults": {"my_flag": 3}}}
    assert default_settings(config, None) == {"learning_rate": 5e-5, "my_flag": 3}
    assert default_settings(config, {"learning_rate": 1e-5}) == {"learning_rate": 1e-5}


def test_report_shows_what_changed_first_and_the_full_config_one_click_away(tmp_path: Path) -> None:
    html_path, md_path = write_report(make_fake_study(tmp_path / "run"))
    md = md_path.read_text(encoding="utf-8")
    section = md[md.index("## Best configuration: what changed"):md.index("## Compute cost")]
    rows = re.findall(r"^\| (\S+ \*?) ?\| (\S+) \| (\S+) \|$", section, re.M)
    # trial 4 (lr 3e-4, weight decay 0.08, batch 16) against the default trial (5e-5, 0, 32)
    assert rows[1:] == [("learning_rate *", "5e-05", "0.0003"), ("weight_decay *", "0", "0.08"),
                        ("batch_size *", "32", "16")]
    assert "max_steps" not in section and "optimizer" not in section  # unchanged, unsearched: not listed
    assert len(section.splitlines()) < 20  # the answer, not the 90-line dump
    assert md.index("## Default vs optimized") < md.index("## Best configuration") < md.index("## Compute cost")
    full = yaml.safe_load((md_path.parent / "best-config.yaml").read_text(encoding="utf-8"))
    assert full["training"]["learning_rate"] == 3e-4 and "[Full configuration (" in section
    html = html_path.read_text(encoding="utf-8")
    details = html[html.index("<details>"):html.index("</details>")]
    assert "learning_rate: 0.0003" in details and "max_steps: 40" in details  # the whole file, collapsed
    assert "<td>learning_rate *</td><td>5e-05</td><td>0.0003</td>" in html


def test_best_and_its_json_show_the_changes(tmp_path: Path) -> None:
    study = make_fake_study(tmp_path / "run")
    out = run_lmtune("best", str(study))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "what it changed from the default" in lines[0] and "lmtune export --format yaml" in lines[0]
    assert lines[1:4] == ["  learning_rate: 5e-05 → 0.0003 (searched)", "  weight_decay: 0 → 0.08 (searched)",
                          "  batch_size: 32 → 16 (searched)"]
    assert "max_steps" not in out.stdout
    payload = json.loads(run_lmtune("best", str(study), "--json").stdout)
    assert payload["changes"][0] == {"name": "learning_rate", "searched": True, "changed": True,
                                     "default": 5e-5, "best": 3e-4}
    assert payload["config"]["max_steps"] == 40  # the full configuration is still there for scripts
