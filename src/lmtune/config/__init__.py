"""Config layer: YAML + overrides → typed, frozen objects; errors name the field and the fix."""

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

__all__ = [
    "TRAINING_FIELDS",
    "BudgetSection",
    "ExecutionSection",
    "ProxySection",
    "SearchSection",
    "StudyConfig",
    "StudySection",
    "TaskSection",
    "TrainingSection",
    "apply_overrides",
    "load_config",
    "parse_value",
    "resolved_space",
    "validate",
]
