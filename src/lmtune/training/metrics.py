"""Classification metrics computed from predictions (numpy; no sklearn needed), and the user's own
(``task.compute_metrics``)."""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float((pred == gold).mean()) if len(gold) else float("nan")


def macro_f1(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> float:
    """Unweighted mean of per-class F1; a class absent from both pred and gold is skipped."""
    scores = []
    for c in range(num_labels):
        tp = int(((pred == c) & (gold == c)).sum())
        fp = int(((pred == c) & (gold != c)).sum())
        fn = int(((pred != c) & (gold == c)).sum())
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def perplexity(mean_loss: float) -> float:
    return math.exp(mean_loss) if mean_loss < 700 else float("inf")


# -- task.compute_metrics: the user's own metrics, HF's compute_metrics convention --------------------

BUILT_IN = ("loss", "accuracy", "f1")


class MetricFunctionError(ValueError):
    """``task.compute_metrics`` cannot be loaded, or it did not return a mapping of names to numbers."""


class Predictions:
    """What a ``compute_metrics`` function receives, shaped like ``transformers.EvalPrediction`` so an HF
    script's function works unchanged: ``predictions`` (logits, examples × classes), ``label_ids``;
    ``logits, labels = p`` unpacks it."""

    def __init__(self, predictions: np.ndarray, label_ids: np.ndarray) -> None:
        self.predictions, self.label_ids = predictions, label_ids

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.predictions, self.label_ids))

    def __getitem__(self, index: int) -> np.ndarray:
        return (self.predictions, self.label_ids)[index]

    def __len__(self) -> int:
        return 2


MetricFunction = Callable[[Predictions], Mapping[str, Any]]


def load_metric_function(ref: str, *, search_path: Sequence[str] = ()) -> MetricFunction:
    """``package.module:function`` (importable, with ``search_path`` tried first) or ``path/file.py:function``."""
    where, sep, name = ref.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise MetricFunctionError(f"task.compute_metrics: {ref!r} is not 'package.module:function' or "
                                  "'path/to/file.py:function'")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise MetricFunctionError(f"task.compute_metrics: no file {where} (from {Path.cwd()}); give the "
                                          "path from where lmtune runs, or an absolute one")
            spec = importlib.util.spec_from_file_location(f"lmtune_user_metrics_{path.stem}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            for p in reversed(search_path):
                if p not in sys.path:
                    sys.path.insert(0, p)
            module = importlib.import_module(where)
    except MetricFunctionError:
        raise
    except Exception as exc:  # the user's module: any import-time error, said in one line
        raise MetricFunctionError(f"task.compute_metrics: cannot import {where}: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise MetricFunctionError(f"task.compute_metrics: {where} has no function {name}")
    return fn  # type: ignore[no-any-return]


def custom_metrics(fn: MetricFunction, logits: np.ndarray, labels: np.ndarray, *, prefix: str) -> dict[str, float]:
    """Call the user's function; its names get the split's prefix (``mcc`` → ``eval_mcc``; a name that
    already has it keeps it). It may not redefine the loss (the pruners and the report read it)."""
    try:
        out = fn(Predictions(logits, labels))
    except Exception as exc:
        raise MetricFunctionError(f"task.compute_metrics raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(out, Mapping) or not out:
        raise MetricFunctionError(f"task.compute_metrics returned {type(out).__name__}; return a dict of metric "
                                  "names to numbers, e.g. {'mcc': 0.41}")
    metrics: dict[str, float] = {}
    for key, value in out.items():
        short = str(key).removeprefix(f"{prefix}_").removeprefix("eval_")
        if short == "loss":
            raise MetricFunctionError("task.compute_metrics returned 'loss': lmtune computes the loss itself "
                                      "(pruners and reports read it); return other names")
        try:
            metrics[f"{prefix}_{short}"] = float(value)
        except (TypeError, ValueError):
            raise MetricFunctionError(f"task.compute_metrics returned {key!r}: {value!r}, not a number") from None
    return metrics


def metric_names(ref: str, *, search_path: Sequence[str] = ()) -> list[str]:
    """The ``eval_*`` names the function reports, from a call on 6 made-up predictions of 3 classes
    (before any training, so a wrong study.metric or a broken function is refused up front)."""
    fn = load_metric_function(ref, search_path=search_path)
    labels = np.array([0, 1, 2, 0, 1, 2])
    logits = np.eye(3, dtype=np.float32)[[0, 1, 2, 1, 1, 0]]
    return sorted(custom_metrics(fn, logits, labels, prefix="eval"))
