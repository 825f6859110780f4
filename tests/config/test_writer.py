"""The one best-configuration writer (``lmtune export --format yaml`` and ``lmtune final``)."""

from pathlib import Path

from lmtune.config import load_config
from lmtune.config.writer import config_yaml

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart.yaml"


def test_model_config_yaml_loads_as_a_study_of_its_own(tmp_path: Path) -> None:
    study = {**load_config(QUICKSTART).model_dump(mode="json"), "proxy": {"model": "tiny"}}
    hparams = {**study["training"], "learning_rate": 3e-4, "seed": 0, "custom_knob": 8}
    schedule = [{"units": 0, "hparams": hparams}, {"units": 2, "hparams": {**hparams, "learning_rate": 1e-4}}]
    text = config_yaml(study, hparams, header=["from trial 1"], schedule=schedule)
    assert text.startswith("# from trial 1\n") and "custom_knob=8" in text
    assert "from unit 2: learning_rate=0.0001" in text
    path = tmp_path / "lmtune-config.yaml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.training.learning_rate == 3e-4 and cfg.search.space == {} and cfg.search.n_trials == 1
    # a study of its own (tuning the file never adds trials to the study it came from), and no proxy stage
    assert cfg.study.name == "quickstart-best" and cfg.study.dir == "runs/quickstart-best"
    assert cfg.proxy is None
