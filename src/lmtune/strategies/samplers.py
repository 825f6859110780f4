"""Which configuration next: Optuna samplers for grid, random and Bayesian (TPE, GP) search, and NSGA-II.

TPE and GP model several objectives too (a multi-objective study, ``study.objectives``); NSGA-II is the
genetic sampler Optuna users know for that case (``search.sampler: nsga2``)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # optuna (which loads subprocess) is imported when a sampler or pruner is built
    import optuna

MODELLED = ("auto", "bayes", "hyperband")  # strategies whose sampler models the space (TPE or GP)


def startup_trials(expected_trials: int, requested: int | None = None) -> int:
    """Random trials before TPE/GP start modelling: ``requested`` when the user set it, else a quarter
    of the trials this run is expected to reach (at least 2, at most Optuna's default of 10). A fixed 4
    (the old default) left a 5-trial study with one modelled trial; the default trial, enqueued first,
    counts as a start-up trial too."""
    if requested is not None:
        return requested
    return max(2, min(10, expected_trials // 4))


def make_sampler(*, strategy: str, sampler: str, seed: int, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    """The sampler behind a strategy.

    ``grid`` points are enqueued explicitly by the tuner (so conditional parameters expand correctly
    and no point runs twice), so grid itself needs only a sampler that respects enqueued trials.
    ``asha`` and ``pbt`` draw their configurations at random; ``bayes``, ``hyperband`` and ``auto`` model them.
    """
    import optuna

    if strategy in MODELLED:
        if sampler == "nsga2":  # a genetic sampler, for several objectives (Optuna's NSGA-II)
            return optuna.samplers.NSGAIISampler(seed=seed)
        if sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials)
        # multivariate + group: TPE models parameters jointly and handles conditional subspaces. Optuna
        # flags these arguments experimental on every construction; a user of lmtune cannot act on that.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True,
                                              group=True, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)

