"""A cheap synthetic "training run" for testing strategies in milliseconds, without training anything.

`ToyCurve` models the one effect that makes learning-rate schedules matter. Each unit of training
closes a fraction ``speed(lr)`` of the gap between the current quality ``q`` and a ceiling
``ceiling(lr)``::

    speed(lr)   = 0.25 * min(1, lr / 1e-3)              # a larger step learns faster, up to 1e-3
    ceiling(lr) = 0.70 - 0.15 * log10(lr / 1e-3)         # ...but settles noisier: 0.70 at 1e-3,
                  - 0.3 * |weight_decay - 0.05|          #    0.85 at 1e-4, 1.0 at 1e-5
    q <- q + speed(lr) * (ceiling(lr) - q) * (1 + train_noise * N(0, 1))

Nothing in the formula depends on time, yet the learning rate that helps most *now* decays as the
model improves: from q = 0 a rate near 1e-3 gains most per unit; once q is near 0.7, 1e-3 gains
nothing (or loses quality) and 1e-4 to 3e-4 is better. So a decaying schedule beats every fixed
learning rate over a long enough run, which is what population-based training can find and random
search over fixed configurations cannot. Evaluation adds ``eval_noise * N(0, 1)`` to ``q``.

Randomness comes from the ``rng`` the caller passes, so a checkpoint (``clone()``) holds only
``(units, quality)`` and two copies of one checkpoint can diverge.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from lmtune.space import FloatParam, Space


class Curve(Protocol):
    """What the simulators need from a synthetic training run."""

    units: int

    @property
    def quality(self) -> float:
        """The noise-free score of the current weights (higher is better)."""
        ...

    def train(self, config: Mapping[str, Any], rng: random.Random) -> None:
        """Train one unit with ``config``."""
        ...

    def evaluate(self, rng: random.Random) -> float:
        """A noisy measurement of ``quality``, as a validation metric would be."""
        ...

    def clone(self) -> Curve:
        """A checkpoint: an independent copy of the current state."""
        ...


CurveFactory = Callable[[], Curve]


@dataclass
class ToyCurve:
    """The curve described in the module docstring. Reads ``learning_rate`` (required) and
    ``weight_decay`` (default 0.05, no effect) from the config and ignores other keys."""

    eval_noise: float = 0.005
    train_noise: float = 0.1
    units: int = 0
    q: float = 0.0

    @property
    def quality(self) -> float:
        return self.q

    def train(self, config: Mapping[str, Any], rng: random.Random) -> None:
        lr = float(config["learning_rate"])
        wd = float(config.get("weight_decay", 0.05))
        speed = 0.25 * min(1.0, lr / 1e-3)
        ceiling = 0.70 - 0.15 * math.log10(lr / 1e-3) - 0.3 * abs(wd - 0.05)
        self.q += speed * (ceiling - self.q) * (1.0 + self.train_noise * rng.gauss(0.0, 1.0))
        self.units += 1

    def evaluate(self, rng: random.Random) -> float:
        return self.q + self.eval_noise * rng.gauss(0.0, 1.0)

    def clone(self) -> ToyCurve:
        return replace(self)


def toy_space() -> Space:
    """The space the toy responds to: ``learning_rate`` log-uniform in [1e-5, 1e-2] and
    ``weight_decay`` in [0, 0.1], both mutable by default."""
    return Space((FloatParam(name="learning_rate", low=1e-5, high=1e-2, log=True),
                  FloatParam(name="weight_decay", low=0.0, high=0.1)))


__all__ = ["Curve", "CurveFactory", "ToyCurve", "toy_space"]
