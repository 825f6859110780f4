"""What each ``search.strategy`` is, stated once: the recipes, schedulers and checks ask these traits
instead of comparing strategy names.

- ``points``: it runs a fixed list of configurations (the grid), queued up front; a sampler draws nothing,
  so warm-start configurations have no place in it, and the study ends when the list is done;
- ``changes_settings``: a trial's settings change while it trains (PBT), so a trial is no single
  configuration: it cannot be transferred from a proxy stage, seeded with one, or shared by `lmtune worker`
  processes (its population state is the one driver's);
- ``pins_length``: every drawn configuration is planned at the longest training length the space allows,
  the length being the resource its pruner allocates (`auto`, `halving`; `lmtune.schedulers.search.auto_pins`);
- ``halves``: it runs synchronous successive halving whatever the budget (`halving`);
- ``halves_under_token_budget``: under ``budget.max_train_tokens`` it runs synchronous successive halving sized
  to the budget (`lmtune.schedulers.halving`) where that trains two or more configurations to their end (`auto`;
  `lmtune.tuner.search.Tuner`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StrategyTraits", "traits"]


@dataclass(frozen=True)
class StrategyTraits:
    points: bool = False
    changes_settings: bool = False
    pins_length: bool = False
    halves: bool = False
    halves_under_token_budget: bool = False

    @property
    def samples(self) -> bool:
        """A sampler draws its configurations (priors and proxy transfers can seed it)."""
        return not (self.points or self.changes_settings)


_TRAITS = {
    "auto": StrategyTraits(pins_length=True, halves_under_token_budget=True),
    "grid": StrategyTraits(points=True),
    "random": StrategyTraits(),
    "bayes": StrategyTraits(),
    "asha": StrategyTraits(),
    "hyperband": StrategyTraits(),
    "halving": StrategyTraits(pins_length=True, halves=True),
    "pbt": StrategyTraits(changes_settings=True),
}


def traits(strategy: str) -> StrategyTraits:
    """The traits of ``search.strategy`` (every value the config allows has an entry; a test checks it)."""
    return _TRAITS[strategy]
