"""Config layer: YAML + overrides → typed, frozen objects; errors name the field and the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune._faces import lazy
from lmtune.config.loader import apply_overrides, load_config, parse_value, resolved_space, validate
from lmtune.config.schema import (
    DEFAULT_EVAL_EVERY,
    HALVING_EVALS_PER_EPOCH,
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
        COST_METRICS,
        SERVE_METRICS,
        SHARDED_4BIT,
        SHARDED_FP16,
        Objective,
        PBTSection,
        TrackingSection,
        lower_is_better,
    )
    from lmtune.config.writer import best_config_yaml, config_yaml

__all__ = ["CLASSIFICATION_METRICS", "COST_METRICS", "DEFAULT_EVAL_EVERY", "HALVING_EVALS_PER_EPOCH", "SERVE_METRICS",
           "SHARDED_4BIT", "SHARDED_FP16", "TRAINING_FIELDS",
           "BudgetSection", "ExecutionSection", "Objective", "PBTSection", "ProxySection", "SearchSection",
           "StudyConfig", "StudySection", "TaskSection", "TrackingSection", "TrainingSection", "applies",
           "apply_overrides", "best_config_yaml", "check_tracking", "config_yaml", "load_config", "lower_is_better",
           "parse_value", "resolved_space", "validate"]

# the rest of the face, each name imported from its module when first named (lmtune._faces)
_FACE = {
    "CLASSIFICATION_METRICS": "schema",
    "COST_METRICS": "schema",
    "Objective": "schema",
    "SERVE_METRICS": "schema",
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

__getattr__ = lazy(__name__, _FACE)
