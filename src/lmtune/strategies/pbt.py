"""Asynchronous population-based training (Jaderberg et al., 2017): truncation selection + explore.

Contract with the executor (call order, for each member ``m`` in ``range(population_size)``):

1. ``config = pbt.initial_config(m)``; start ``m`` from scratch (units 0) with ``config``.
2. Train; after every evaluation unit (or only at the units below) call ``pbt.report(m, units, score)``.
   Units are equal amounts of training data for every member, never optimizer steps. Before reporting
   units ``u`` with ``pbt.checkpoint_due(u)`` (every multiple of ``ready_units``, and ``max_units``),
   save member ``m``'s checkpoint under the key ``(m, u)``, replacing any older file of that key; no
   other checkpoints are ever asked for. Report every due unit: decisions compare members there.
3. Act on the answer: ``Continue`` → keep going; ``Stop`` → the member is finished (it reached
   ``max_units``); ``Exploit(b, su, c)`` → stop ``m``'s trainer, restart it from checkpoint ``(b, su)``
   with config ``c`` and its unit counter at ``su`` (which may be below or above its own units); its
   next checkpoint is saved as ``(m, u)`` for some ``u > su``.
4. After any report, checkpoints not in ``pbt.checkpoints_needed()`` may be deleted. A key is never
   written while it is listed there (PBT refuses an exploit that would make a member re-save one).

To resume a killed study: ``load_state_dict`` and restart every member that is not finished from
``member_state(m).checkpoint`` (None: from scratch) with ``member_state(m).config``; a member whose
checkpoint file is gone is ``restart``-ed from scratch (or retired when that would overwrite a needed
key). Reports repeated by a restarted trainer (units between its checkpoint and what it had reported) are
accepted.

Decisions are asynchronous (nobody waits for slow members) but compare members at *equal units*, as
the fidelity rule demands: a member is judged when it reports a multiple of ``ready_units`` below
``max_units``, at the *comparison point* ``c``: the largest multiple of ``ready_units`` not above its
units that at least ``max(2, ceil(population_size / 2))`` members have reached (no such point →
continue). Members are compared by the scores of their weights' lineage: a member that copies another
takes over the copied member's scores up to the copied units. With ``n`` members scored at ``c`` and
``k = min(max(1, floor(quantile * n)), n // 2)``, a member among the worst ``k`` at ``c`` copies the
latest checkpoint of one member drawn uniformly from the best ``k`` at ``c`` that is strictly better
there and not finished (and whose copy would not overwrite a needed key); if there is none it
continues. NaN/inf scores are the worst. Ranking the *latest* scores instead would mostly rank how far
members have got, not how good their configurations are (on the toy curves of `lmtune.strategies.toy`
PBT then did about as well as random search, winning 10-12 of 20 seeds).
"""

from __future__ import annotations

import json
import math
import random
from copy import deepcopy
from dataclasses import asdict
from typing import Any, Literal

from lmtune.space import Space
from lmtune.strategies.decisions import CheckpointRef, Continue, Exploit, Stop
from lmtune.strategies.explore import complete_config, effective_mutable, explore
from lmtune.strategies.pbt_state import Best, MemberState, decode_member, encode_member, encode_score

Direction = Literal["maximize", "minimize"]


class PBT:
    """Population-based training decisions; holds no files and starts no processes (see module doc)."""

    def __init__(
        self,
        *,
        space: Space,
        population_size: int,
        ready_units: int,
        max_units: int,
        seed: int = 0,
        direction: Direction = "maximize",
        quantile: float = 0.25,
        resample_probability: float = 0.25,
        perturb_factors: tuple[float, float] = (0.8, 1.2),
        mutable: frozenset[str] | None = None,
    ) -> None:
        _check(population_size >= 2, f"population_size must be at least 2, got {population_size}")
        _check(ready_units >= 1 and max_units >= 1, "ready_units and max_units must be positive")
        _check(0.0 < quantile <= 0.5, f"quantile must be in (0, 0.5], got {quantile}")
        _check(0.0 <= resample_probability <= 1.0, "resample_probability must be in [0, 1]")
        _check(all(f > 0 for f in perturb_factors), f"perturb_factors must be positive: {perturb_factors}")
        _check(direction in ("maximize", "minimize"), f"direction: maximize or minimize, not {direction!r}")
        self.space, self.population_size, self.seed = space, population_size, seed
        self.ready_units, self.max_units, self.direction = ready_units, max_units, direction
        self.quantile, self.resample_probability = quantile, resample_probability
        self.perturb_factors = (float(perturb_factors[0]), float(perturb_factors[1]))
        self.mutable = effective_mutable(space, mutable)
        self._members: dict[int, MemberState] = {}
        self._best: Best | None = None

    # ----------------------------------------------------------------------------------------- API
    def initial_config(self, member: int, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
        """The starting configuration of ``member``: a draw from the space that depends only on
        ``seed`` and ``member``, with the in-space values of ``fixed`` taken as given (e.g. the user's
        defaults for member 0). Idempotent: once a member has a configuration, it is returned."""
        _check(0 <= member < self.population_size, f"member {member} not in range({self.population_size})")
        if member not in self._members:
            rng = random.Random(f"lmtune.pbt:{self.seed}:init:{member}")
            config = complete_config(self.space, fixed, rng)
            self._members[member] = MemberState(member=member, config=config,
                                                schedule=[{"units": 0, "config": dict(config)}])
        return dict(self._members[member].config)

    def checkpoint_due(self, units: int) -> bool:
        """True when the executor must have saved a checkpoint at ``units`` before reporting them."""
        return units % self.ready_units == 0 or units >= self.max_units

    def report(self, member: int, units: int, score: float) -> Continue | Exploit | Stop:
        """Record ``score`` of ``member`` after ``units`` units and decide (see module doc)."""
        m = self._live(member, units)
        m.units = units
        if not self.checkpoint_due(units):
            return Continue()
        m.checkpoint, m.score = (member, units), float(score)
        m.history = {u: v for u, v in m.history.items() if u < units}
        m.history[units] = m.score
        self._update_best(m)
        if units >= self.max_units:
            m.finished = True
            return Stop(f"reached max_units={self.max_units}")
        return self._judge(m)

    def retire(self, member: int) -> None:
        """Take ``member`` out of the population (its trainer failed): it is never judged again and
        never copied from; its checkpoints are no longer needed unless it holds the best one."""
        _check(member in self._members, f"member {member} has no state")
        self._members[member].finished = True

    def restart(self, member: int, *, best_gone: bool = False) -> bool:
        """``member``'s checkpoint is gone (deleted by hand, lost with a disk): it starts over from units 0
        with the configuration it holds, as fresh weights (no parent, generation 0, no scores), instead of
        being lost. Returns False and changes nothing when starting over would re-save a checkpoint key
        that another unfinished member or the best checkpoint still needs (``best_gone``: the best's file
        is gone too, so it needs nothing); the caller retires the member then."""
        _check(member in self._members, f"member {member} has no state")
        m = self._members[member]
        _check(not m.finished, f"member {member} is finished; nothing to restart")
        others = {o.checkpoint for o in self._members.values() if o is not m and not o.finished and o.checkpoint}
        if self._best is not None and not best_gone:
            others.add((self._best.member, self._best.units))
        if any(key[0] == member for key in others):
            return False
        m.schedule = [{"units": 0, "config": dict(m.config)}]
        m.generation, m.parent, m.units, m.checkpoint, m.score, m.history = 0, None, 0, None, None, {}
        return True

    def checkpoints_needed(self) -> set[tuple[int, int]]:
        """(member, units) keys the strategy may still hand out or resume from: the latest checkpoint of
        every member still training, and the best checkpoint so far. At most ``population_size + 1``."""
        keep = {m.checkpoint for m in self._members.values() if not m.finished and m.checkpoint}
        if self._best is not None:
            keep.add((self._best.member, self._best.units))
        return keep

    def member_state(self, member: int) -> MemberState:
        """A copy of ``member``'s state: config, schedule, generation, parent, checkpoint, score."""
        _check(member in self._members, f"member {member} has no state; call initial_config first")
        return deepcopy(self._members[member])

    def lineage(self) -> list[MemberState]:
        """`member_state` of every member that has started, by member id."""
        return [self.member_state(i) for i in sorted(self._members)]

    def best(self) -> Best | None:
        """The best checkpoint reported so far, with the schedule that produced it (None before any)."""
        return deepcopy(self._best)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue with identical decisions; JSON-serialisable (no NaN)."""
        return {"version": 1, "settings": self._settings(),
                "members": [encode_member(self._members[i]) for i in sorted(self._members)],
                "best": None if self._best is None else {**asdict(self._best),
                                                         "score": encode_score(self._best.score)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict` output. Raises ``ValueError`` if it came from different settings."""
        _check(state.get("version") == 1, f"unknown PBT state version {state.get('version')!r}")
        _check(state["settings"] == self._settings(),
               f"PBT state was saved with settings {state['settings']}, not {self._settings()}")
        self._members = {d["member"]: decode_member(d) for d in state["members"]}
        best = state["best"]
        self._best = None if best is None else Best(**{**best, "score": float(best["score"])})

    # ------------------------------------------------------------------------------------ private
    def _live(self, member: int, units: int) -> MemberState:
        _check(member in self._members, f"member {member} reported before initial_config({member})")
        m = self._members[member]
        _check(not m.finished, f"member {member} reported units {units} after it was stopped")
        start = m.checkpoint[1] if m.checkpoint else 0
        _check(units > start, f"member {member} reported units {units}, not after its checkpoint at {start}")
        return m

    def _judge(self, m: MemberState) -> Continue | Exploit:
        at = self._comparison_point(m)
        if at is None:
            return Continue()
        ranked = self._ranked(at)
        k = min(max(1, int(self.quantile * len(ranked))), len(ranked) // 2)
        if m.member not in ranked[-k:]:
            return Continue()
        sources = [s for s in ranked[:k] if self._can_copy(self._members[s], m, at)]
        if not sources:
            return Continue()
        rng = random.Random(f"lmtune.pbt:{self.seed}:explore:{m.member}:{m.units}:{m.generation}")
        return self._exploit(m, self._members[rng.choice(sources)], rng)

    def _comparison_point(self, m: MemberState) -> int | None:
        """The largest multiple of ready_units <= m.units where enough members have a score."""
        quorum = max(2, math.ceil(self.population_size / 2))
        for at in range(m.units - m.units % self.ready_units, 0, -self.ready_units):
            if sum(at in o.history for o in self._members.values()) >= quorum:
                return at if at in m.history else None
        return None

    def _can_copy(self, src: MemberState, m: MemberState, at: int) -> bool:
        if src.finished or self._key(src.history[at]) >= self._key(m.history[at]):
            return False
        assert src.checkpoint is not None
        # m will save (m, u) again for every checkpoint u it re-trains; none of those may still be needed.
        others = {o.checkpoint for o in self._members.values() if o is not m and not o.finished}
        if self._best is not None:
            others.add((self._best.member, self._best.units))
        return not any(key and key[0] == m.member and key[1] > src.checkpoint[1] for key in others)

    def _exploit(self, m: MemberState, src: MemberState, rng: random.Random) -> Exploit:
        assert src.checkpoint is not None
        source_units = src.checkpoint[1]
        config = explore(self.space, src.config, mutable=self.mutable, rng=rng,
                         resample_probability=self.resample_probability, perturb_factors=self.perturb_factors)
        m.schedule = [e for e in deepcopy(src.schedule) if e["units"] < source_units]
        m.schedule.append({"units": source_units, "config": dict(config)})
        m.config, m.generation, m.parent = config, src.generation + 1, src.member
        m.units, m.checkpoint, m.score = source_units, src.checkpoint, src.score
        m.history = {u: v for u, v in src.history.items() if u <= source_units}
        # src.checkpoint is src's own file unless src has just copied another member itself.
        return Exploit(source=CheckpointRef(src.checkpoint[0], source_units), hparams=dict(config))

    def _ranked(self, at: int) -> list[int]:
        """Members with a score at ``at`` units, best first; ties go to the lower member id."""
        scored = [m for m in self._members.values() if at in m.history]
        return [m.member for m in sorted(scored, key=lambda m: (self._key(m.history[at]), m.member))]

    def _key(self, score: float | None) -> float:
        """Smaller is better; NaN, inf and missing scores are the worst."""
        if score is None or not math.isfinite(score):
            return math.inf
        return -score if self.direction == "maximize" else score

    def _update_best(self, m: MemberState) -> None:
        assert m.score is not None and m.checkpoint is not None
        better = self._best is None or self._key(m.score) < self._key(self._best.score)
        if math.isfinite(m.score) and better:
            self._best = Best(member=m.member, units=m.checkpoint[1], score=m.score,
                              schedule=deepcopy(m.schedule), config=dict(m.config))

    def _settings(self) -> dict[str, Any]:
        raw = {"space": list(self.space.names), "population_size": self.population_size,
               "ready_units": self.ready_units, "max_units": self.max_units, "seed": self.seed,
               "direction": self.direction, "quantile": self.quantile,
               "resample_probability": self.resample_probability,
               "perturb_factors": list(self.perturb_factors), "mutable": sorted(self.mutable)}
        return dict(json.loads(json.dumps(raw)))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


__all__ = ["PBT", "Best", "Direction", "MemberState"]
