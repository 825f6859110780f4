"""task.compute_metrics: the user's function gets HF's EvalPrediction shape, its names get the split's
prefix, and every way it can be wrong is one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmtune.training.metrics import MetricFunctionError, Predictions, custom_metrics, load_metric_function, metric_names

LOGITS = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]], dtype=np.float32)
LABELS = np.array([0, 1, 1])


def hf_style(eval_pred: Predictions) -> dict[str, float]:  # as an HF script writes it
    logits, labels = eval_pred
    return {"errors": float((np.argmax(logits, -1) != labels).sum()), "eval_n": len(eval_pred.label_ids)}


def test_an_hf_compute_metrics_function_works_unchanged_and_names_get_the_prefix() -> None:
    assert custom_metrics(hf_style, LOGITS, LABELS, prefix="eval") == {"eval_errors": 1.0, "eval_n": 3.0}
    assert custom_metrics(hf_style, LOGITS, LABELS, prefix="test") == {"test_errors": 1.0, "test_n": 3.0}
    p = Predictions(LOGITS, LABELS)
    assert p[0] is LOGITS and p.predictions is LOGITS and p.label_ids is LABELS


@pytest.mark.parametrize(("fn", "message"), [
    (lambda p: [0.5], "returned list; return a dict"),
    (lambda p: {}, "returned dict; return a dict"),
    (lambda p: {"mcc": "high"}, "'mcc': 'high', not a number"),
    (lambda p: {"loss": 0.1}, "returned 'loss'"),
    (lambda p: 1 / 0, "raised ZeroDivisionError"),
])
def test_a_function_that_returns_no_numbers_is_one_clear_error(fn, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MetricFunctionError, match=message):
        custom_metrics(fn, LOGITS, LABELS, prefix="eval")


def test_loading_by_file_or_module(tmp_path: Path) -> None:
    f = tmp_path / "my_metrics.py"
    f.write_text("def mcc(p):\n    return {'mcc': 0.25}\nBROKEN = 1\n")
    assert metric_names(f"{f}:mcc") == ["eval_mcc"]
    assert metric_names("my_metrics:mcc", search_path=[str(tmp_path)]) == ["eval_mcc"]
    for ref, message in [("nocolon", "is not 'package.module:function'"), (f"{f}:absent", "has no function absent"),
                         (f"{f}:BROKEN", "has no function BROKEN"), (f"{tmp_path}/none.py:f", "no file"),
                         ("no_such_module_x:f", "cannot import no_such_module_x: ModuleNotFoundError")]:
        with pytest.raises(MetricFunctionError, match=message):
            load_metric_function(ref)
