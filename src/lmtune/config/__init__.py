"""Config layer: YAML + overrides → typed, frozen objects; errors name the field and the fix."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lmtune.config.loader import apply_overrides, load_config, parse_value, resolved_space, validate
from lmtune.config.schema import (
    TRAINING_FIELDS,
    BudgetSection,
    ExecutionSection,
    ProxySection,
    SearchSection,
    StudyConfig,
    StudySection,
    TaskSection,
    TrainingSection,
)

if TYPE_CHECKING:
    from lmtune.config.effects import applies
    from lmtune.config.loader import check_tracking
    from lmtune.config.schema import (
        CLASSIFICATION_METRICS,
        SHARDED_4BIT,
        SHARDED_FP16,
        PBTSection,
        TrackingSection,
        lower_is_better,
    )
    from lmtune.config.writer import best_config_yaml, config_yaml

__all__ = ["CLASSIFICATION_METRICS", "SHARDED_4BIT", "SHARDED_FP16", "TRAINING_FIELDS", "BudgetSection",
           "ExecutionSection", "PBTSection", "ProxySection", "SearchSection", "StudyConfig", "StudySection",
           "TaskSection", "TrackingSection", "TrainingSection", "applies", "apply_overrides", "best_config_yaml",
           "check_tracking", "config_yaml", "load_config", "lower_is_better", "parse_value", "resolved_space",
           "validate"]

# The rest of the face: each name imported from its module when first named, so importing the package stays
# cheap (no torch, no Optuna until used) and free of import cycles between layers.
_FACE = {
    "CLASSIFICATION_METRICS": "schema",
    "PBTSection": "schema",
    "SHARDED_4BIT": "schema",
    "SHARDED_FP16": "schema",
    "TrackingSection": "schema",
    "applies": "effects",
    "best_config_yaml": "writer",
    "check_tracking": "loader",
    "config_yaml": "writer",
    "lower_is_better": "schema",
}


def __getattr__(name: str) -> Any:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
