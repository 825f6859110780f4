"""Build a `Space` from the YAML form, and the built-in presets.

YAML form, per parameter::

    learning_rate: {type: float, low: 1.0e-6, high: 1.0e-3, log: true}
    batch_size: {type: categorical, choices: [8, 16, 32]}
    momentum: {type: float, low: 0.8, high: 0.99, when: {optimizer: sgd}}
    epochs: {type: int, low: 1, high: 4}
    warmup_ratio: {type: float, low: 0.0, high: 0.2, grid: [0.0, 0.1]}   # grid values for strategy grid

A bare list is shorthand for a categorical parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

from lmtune.space.params import CategoricalParam, FloatParam, IntParam, Param, Space, SpaceError
from lmtune.yamlio import safe_load

# Hyperparameters PBT may change mid-run unless the user says otherwise: those that do not change the
# shape of the model, the optimizer state or the data order.
# what PBT changes when it explores, unless the space says otherwise; for lmtune's own trainer also all it
# may change (layer_decay shapes the optimizer's parameter groups, batch size and length the data
# position, LoRA rank the model): `lmtune.config.loader` refuses others
MUTABLE_BY_DEFAULT = frozenset(
    {"learning_rate", "weight_decay", "dropout", "attention_dropout", "momentum", "max_grad_norm",
     "beta1", "beta2", "eps", "lora_dropout"}
)
_KEYS = {"type", "low", "high", "log", "step", "choices", "when", "grid", "mutable"}


def build_space(raw: Mapping[str, Any] | None) -> Space:
    """Turn the ``search.space`` mapping into a `Space`; every error names ``search.space.<name>``."""
    params: list[Param] = []
    for name, spec in (raw or {}).items():
        params.append(_build_param(str(name), spec))
    return Space(tuple(params))


def preset(name: str) -> dict[str, Any]:
    """The raw space of a built-in preset (``classification``, ``lora-sft``, ``full-finetune``)."""
    folder = resources.files("lmtune.space") / "presets"
    available = sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
    if name not in available:  # a name, never a path: '../../x' must not load any YAML file
        raise SpaceError(f"search.preset: unknown preset '{name}'; available: {', '.join(available)} "
                         "(your own space goes in search.space)")
    path = folder / f"{name}.yaml"
    data = safe_load(path.read_text())
    return dict(data["space"])


def _build_param(name: str, spec: Any) -> Param:
    where = f"search.space.{name}"
    if isinstance(spec, list):
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{where}: expected a mapping like {{type: float, low: ..., high: ...}} or a list "
                         f"of choices, got {spec!r}")
    unknown = set(spec) - _KEYS
    if unknown:
        raise SpaceError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    kind = spec.get("type")
    when = _when(where, spec.get("when"))
    common: dict[str, Any] = {"name": name, "when": when, "mutable": _mutable(name, spec.get("mutable"))}
    if spec.get("grid") is not None:
        if not isinstance(spec["grid"], list) or not spec["grid"]:
            raise SpaceError(f"{where}.grid: expected a non-empty list of values")
        common["grid"] = tuple(spec["grid"])
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: categorical needs 'choices: [a, b, ...]' (non-empty list)")
        if len({repr(c) for c in choices}) != len(choices):
            raise SpaceError(f"{where}: choices contain duplicates: {choices}")
        return CategoricalParam(choices=tuple(choices), **common)
    if kind in ("float", "int"):
        return _numeric(where, kind, spec, common)
    raise SpaceError(f"{where}.type: expected one of float, int, categorical, got {kind!r}")


def _numeric(where: str, kind: str, spec: Mapping[str, Any], common: dict[str, Any]) -> Param:
    low, high = spec.get("low"), spec.get("high")
    for key, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise SpaceError(f"{where}.{key}: expected a number, got {v!r}")
    assert isinstance(low, int | float) and isinstance(high, int | float)
    if low > high:
        raise SpaceError(f"{where}: low ({low}) is greater than high ({high}); swap them")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise SpaceError(f"{where}: log scale needs low > 0 (got {low}); raise low or set log: false")
    step = spec.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int | float) or step <= 0):
        raise SpaceError(f"{where}.step: expected a positive number, got {step!r}")
    if log and step is not None and kind == "float":
        raise SpaceError(f"{where}: a float cannot have both log: true and a step; drop one")
    if kind == "int":
        if not (float(low).is_integer() and float(high).is_integer()):
            raise SpaceError(f"{where}: int bounds must be whole numbers, got {low}..{high}")
        return IntParam(low=int(low), high=int(high), log=log, step=int(step or 1), **common)
    return FloatParam(low=float(low), high=float(high), log=log,
                      step=None if step is None else float(step), **common)


def _when(where: str, raw: Any) -> dict[str, tuple[Any, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{where}.when: expected a mapping like {{optimizer: sgd}}, got {raw!r}")
    return {str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in raw.items()}


def _mutable(name: str, raw: Any) -> bool:
    if raw is None:
        return name in MUTABLE_BY_DEFAULT
    return bool(raw)
