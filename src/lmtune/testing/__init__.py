"""Contract suites a new backend or trainer can be checked with, as Optuna's ``optuna.testing`` does for
samplers and storages: the same checks lmtune's own backends pass (local cold and warm processes, Ray actors,
simulated trainers in threads; ``tests/execution/test_backend_contract.py``), and its own trainers
(`check_trainer`, `lmtune.testing.trainers`; ``tests/training/test_trainer_contract.py``).

    from lmtune.testing import check_backend, sim_spec

    check_backend(MyExecutor(workers=2), spec_for=sim_spec, folder=tmp_path)

``spec_for(number, trial_dir)`` makes the `TrialSpec` of trial ``number``; `sim_spec` runs lmtune's stand-in
trainer (``lmtune.execution.simtrainer``: the trainer protocol without training), for a backend started with
``module="lmtune.execution.simtrainer"``. Each check raises ``AssertionError`` naming what the backend did
wrong. No pytest needed.
"""

from lmtune.testing.backends import BACKEND_CHECKS, SIM_TRAINER, SpecFor, check_backend, sim_spec
from lmtune.testing.trainers import TRAINER_CHECKS, check_trainer

__all__ = ["BACKEND_CHECKS", "SIM_TRAINER", "TRAINER_CHECKS", "SpecFor", "check_backend", "check_trainer", "sim_spec"]
