"""The search space is built and checked once per study, also when a recipe copies the config with another
folder or study name (``lmtune train``, a proxy stage's target run): it depends only on the search, training
and task sections."""

from __future__ import annotations

from lmtune.config import loader
from lmtune.config.loader import resolved_space
from lmtune.config.schema import StudyConfig


def _cfg() -> StudyConfig:
    return StudyConfig.model_validate({
        "task": {"type": "classification", "dataset": "x.csv", "text_column": "text", "label_column": "label"},
        "search": {"space": {"learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}}},
    })


def test_a_copy_in_another_folder_gets_the_same_space_without_a_rebuild(monkeypatch) -> None:
    built: list[StudyConfig] = []
    real = loader._build_space
    monkeypatch.setattr(loader, "_SPACES", {})
    monkeypatch.setattr(loader, "_build_space", lambda cfg: built.append(cfg) or real(cfg))
    cfg = _cfg()
    first = resolved_space(cfg)
    moved = cfg.model_copy(update={"study": cfg.study.model_copy(update={"dir": "elsewhere", "name": "other"})})
    assert resolved_space(moved) is first
    assert len(built) == 1


def test_a_different_search_section_builds_its_own_space(monkeypatch) -> None:
    monkeypatch.setattr(loader, "_SPACES", {})
    cfg = _cfg()
    wider = cfg.model_copy(update={"search": cfg.search.model_copy(update={"space": {
        "learning_rate": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True}}})})
    assert resolved_space(wider) is not resolved_space(cfg)
    assert [p.distribution().low for p in resolved_space(wider)] == [1e-6]
