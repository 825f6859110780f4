"""The trainer's settings are typed: it rebuilds the study's `TrainingSection` from the trial file (defaults
stated once, in the schema), and no component reads a setting by string key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lmtune.config import TrainingSection
from lmtune.errors import ConfigError

TRAINING = Path(__file__).parents[2] / "src" / "lmtune" / "training"


def test_a_trial_file_becomes_the_typed_section_with_the_schemas_defaults() -> None:
    hp = TrainingSection.of({"learning_rate": 3e-4, "batch_size": 16, "lora_r": 4, "my_script_knob": 7})
    assert (hp.learning_rate, hp.batch_size, hp.lora_r) == (3e-4, 16, 4)
    assert hp.eval_batch_size == TrainingSection.model_fields["eval_batch_size"].default  # stated once
    assert hp.merged({"learning_rate": 1e-4}).learning_rate == 1e-4 and hp.learning_rate == 3e-4


def test_a_value_the_schema_refuses_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"training\.warmup_ratio: .* \(the trial's value 1\.5\)"):
        TrainingSection.of({"warmup_ratio": 1.5})
    with pytest.raises(ConfigError, match=r"training\.learning_rate"):
        TrainingSection(learning_rate=1e-4).merged({"learning_rate": -1.0})


def test_no_trainer_component_reads_a_setting_by_string_key() -> None:
    pattern = re.compile(r"\bhp(arams)?(\.get\(|\[\s*[\"'])")
    found = [f"{f.name}:{n}" for f in sorted(TRAINING.rglob("*.py"))
             for n, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []
