import os

from lmtune.execution.threads import busy_elsewhere, plan_threads, usable_cores


def test_a_quiet_machine_gives_each_worker_its_share_of_the_cores() -> None:
    assert plan_threads(1, None, cores=8, busy=0.2).threads == 8
    assert plan_threads(2, None, cores=8, busy=0.0).threads == 4
    plan = plan_threads(1, None, cores=2, busy=0.1)
    assert plan.threads == 2 and not plan.passive and plan.warning is None


def test_a_busy_machine_gets_fewer_passive_threads_and_a_warning() -> None:
    plan = plan_threads(1, None, cores=2, busy=1.0)
    assert plan.threads == 1 and plan.passive
    assert plan.warning and "1.0 of 2 cores busy" in plan.warning and "threads_per_worker" in plan.warning
    assert plan_threads(2, None, cores=2, busy=2.0).threads == 1  # never below one thread


def test_an_explicit_count_is_taken_as_given() -> None:
    plan = plan_threads(1, 6, cores=2, busy=2.0)
    assert plan.threads == 6 and not plan.passive and plan.warning is None


def test_the_measurements_read_this_machine() -> None:
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
    assert busy_elsewhere(0.05) >= 0.0
