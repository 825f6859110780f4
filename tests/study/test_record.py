"""The trial record: one codec writes and reads what lmtune keeps in a trial."""

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from lmtune.study import record

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_a_written_record_reads_back_typed() -> None:
    study = optuna.create_study(direction="maximize")
    t = study.ask()
    curve = [{"units": 1, "examples": 16, "metrics": {"eval_accuracy": 0.5}}]
    record.write(t, config={"learning_rate": 1e-4}, is_default=True, curve=curve, train_tokens=320,
                 wall_time_s=1.5, planned_examples=48, precision="fp32")
    study.tell(t, 0.5)
    r = record.read(study.trials[0])
    assert (r.number, r.state, r.value, r.is_default, r.train_tokens, r.planned_examples) == (0, "COMPLETE", 0.5,
                                                                                              True, 320, 48)
    assert r.config == {"learning_rate": 1e-4} and r.curve == curve and (r.units, r.examples) == (1, 16)
    assert record.planned_examples_of(study.trials[0]) == 48


def test_an_unknown_field_is_refused_on_write() -> None:
    t = optuna.create_study().ask()
    with pytest.raises(KeyError, match="train_token"):
        record.write(t, train_token=1)  # a typo would otherwise be written and never read
    with pytest.raises(KeyError):
        record.enqueue_attrs(is_defualt=True)


def test_missing_or_malformed_attrs_read_as_defaults() -> None:
    bad = create_trial(state=TrialState.FAIL, user_attrs={"curve": "x", "train_tokens": "many", "config": [1],
                                                          "is_default": 0, "wall_time_s": float("nan")})
    r = record.read(bad)
    assert (r.curve, r.train_tokens, r.config, r.is_default, r.wall_time_s, r.value) == ([], None, {}, False, None,
                                                                                         None)
    assert r.units is None and r.fail_reason is None


def test_one_best_trial_rule() -> None:
    trials = [create_trial(value=v, user_attrs=a) for v, a in [(0.5, {}), (0.9, {"is_default": True}), (0.9, {}),
                                                               (0.1, {})]]
    for i, t in enumerate(trials):
        t.number = i
    trials.append(create_trial(state=TrialState.FAIL))
    best = record.best_of(trials, "maximize")
    assert best is not None and best.number == 1  # ties: the first
    low = record.best_of(trials, "minimize")
    assert low is not None and low.number == 3
    assert record.best_of([create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.9})], "maximize") is None
    default = record.default_of(trials)
    assert default is not None and default.number == 1


def test_a_requeued_trial_carries_what_belongs_to_its_configuration() -> None:
    r = record.read(create_trial(state=TrialState.FAIL, user_attrs={
        "is_default": True, "proxy_trial": 3, "proxy_value": 0.7, "curve": [], "fail_reason": "x"}))
    assert record.carried(r) == {"is_default": True, "proxy_trial": 3, "proxy_value": 0.7}
    assert record.carried(record.read(create_trial(state=TrialState.FAIL))) is None
    assert record.enqueue_attrs(is_default=None, retry_of=2) == {"retry_of": 2}
