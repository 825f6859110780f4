"""training layer of lmtune (see DESIGN.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune._faces import lazy

if TYPE_CHECKING:
    from lmtune.training.export import base_model_name, export_adapter, export_merged, name_base_model
    from lmtune.training.metrics import MetricFunctionError, metric_names
    from lmtune.training.models import check_model_folder, dropout_overrides, load_tokenizer, resolve_model
    from lmtune.training.optim import RETUNED, build_optimizer, mark_groups, retune
    from lmtune.training.session import pick_precision

__all__ = ["RETUNED", "MetricFunctionError", "base_model_name", "build_optimizer", "check_model_folder",
           "dropout_overrides", "export_adapter", "export_merged", "load_tokenizer", "mark_groups", "metric_names",
           "name_base_model", "pick_precision", "resolve_model", "retune"]

# the rest of the face, each name imported from its module when first named (lmtune._faces)
_FACE = {
    "RETUNED": "optim",
    "MetricFunctionError": "metrics",
    "base_model_name": "export",
    "build_optimizer": "optim",
    "check_model_folder": "models",
    "dropout_overrides": "models",
    "export_adapter": "export",
    "export_merged": "export",
    "load_tokenizer": "models",
    "mark_groups": "optim",
    "metric_names": "metrics",
    "name_base_model": "export",
    "pick_precision": "session",
    "resolve_model": "models",
    "retune": "optim",
}

__getattr__ = lazy(__name__, _FACE)
