"""Which configuration next: Optuna samplers for grid, random and Bayesian (TPE, GP) search."""

from __future__ import annotations

import warnings

import optuna


def make_sampler(*, strategy: str, sampler: str, seed: int, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    """The sampler behind a strategy.

    ``grid`` points are enqueued explicitly by the tuner (so conditional parameters expand correctly
    and no point runs twice), so grid itself needs only a sampler that respects enqueued trials.
    ``asha`` and ``pbt`` draw their configurations at random; ``bayes`` and ``hyperband`` model them.
    """
    if strategy in ("bayes", "hyperband"):
        if sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials)
        # multivariate + group: TPE models parameters jointly and handles conditional subspaces. Optuna
        # flags these arguments experimental on every construction; a user of lmtune cannot act on that.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True,
                                              group=True, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)

