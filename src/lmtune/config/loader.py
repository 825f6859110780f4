"""YAML + ``--set key.path=value`` → a validated, frozen `StudyConfig`.

Every failure raises `ConfigError` whose message names the field, the YAML line where it can, and
the fix. The CLI turns that into exit code 2 without a traceback.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, get_args

import yaml
from pydantic import TypeAdapter, ValidationError

from lmtune.config.effects import check_effects
from lmtune.config.schema import TRAINING_FIELDS, StudyConfig, TrackingSection, TrainingSection, takes_bool
from lmtune.errors import ConfigError
from lmtune.space import MUTABLE_BY_DEFAULT, Space, SpaceError, build_space, preset
from lmtune.yamlio import SafeLoader, safe_load


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> StudyConfig:
    """Read ``path`` (or start from the built-in defaults when None), apply overrides, validate."""
    raw: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}; pass the path of a study YAML, e.g. "
                              "examples/quickstart.yaml")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not a text file (it is not UTF-8); pass a study YAML") from None
        try:
            loaded = safe_load(text)
            lines = _line_numbers(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping with sections study/task/training/search/...")
        raw = loaded or {}
    raw = apply_overrides(raw, overrides)
    task = raw.get("task")
    if path is not None and isinstance(task, dict) and task.get("type") == "script" and task.get("workdir") is None:
        # a script's command is relative to its config file (examples/hf_trainer/: [python, train.py])
        raw = {**raw, "task": {**task, "workdir": str(Path(path).resolve().parent)}}
    return validate(raw, source=source, lines=lines)


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``a.b.c=value`` sets raw[a][b][c]; the value is parsed as YAML (numbers, booleans, lists)."""
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set training.learning_rate=3e-5")
        node: dict[str, Any] = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = parse_value(value)
    return out


def parse_value(text: str) -> Any:
    try:
        return safe_load(text)
    except yaml.YAMLError:
        return text


def validate(raw: Mapping[str, Any], *, source: str = "<config>",
             lines: Mapping[tuple[str, ...], int] | None = None) -> StudyConfig:
    try:
        cfg = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format(exc, source, lines or {})) from None
    space = resolved_space(cfg)  # raises on an impossible space
    check_tracking(cfg.tracking)
    check_quantization(cfg, space)
    return cfg


TRACKING_PACKAGES = {"mlflow": "mlflow", "tensorboard": "tensorboard", "wandb": "wandb"}


def check_tracking(section: TrackingSection) -> None:
    """Refuse a tracking sink whose package is not installed, before anything trains."""
    import importlib.util

    for name, package in TRACKING_PACKAGES.items():
        if getattr(section, name) is not None and importlib.util.find_spec(package) is None:
            raise ConfigError(f"tracking.{name}: the {package} package is not installed; pip install "
                              f"'lmtune[tracking]' (mlflow, tensorboard, wandb) or pip install {package}, or remove "
                              f"tracking.{name}")


def check_quantization(cfg: StudyConfig, space: Space) -> None:
    """QLoRA (``lora_quantization: 4bit``, fixed or searched) needs the bitsandbytes package and a CUDA GPU
    (bitsandbytes' 4-bit weights run on CUDA): refused before anything trains where either is missing. A
    script trial loads its own model and is not checked."""
    import importlib.util

    param = space.get("lora_quantization")
    values = param.extremes() if param is not None else (cfg.training.lora_quantization,)
    if "4bit" not in values or cfg.task.type == "script":
        return
    where = "training.lora_quantization" if param is None else "search.space.lora_quantization"
    fix = "set training.lora_quantization: none" if param is None else "leave 4bit out of " + where
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"{where}: 4bit (QLoRA) needs the bitsandbytes package, which is not installed; on a "
                          f"machine with a CUDA GPU run pip install 'lmtune[qlora]', or {fix}")
    ex = cfg.execution
    if ex.device == "cpu":
        missing = "execution.device is cpu"
    elif ex.backend == "ray":
        missing = "" if ex.gpus_per_trial > 0 else "execution.gpus_per_trial is 0 (a Ray trial gets no GPU)"
    else:
        missing = "" if cuda_visible() else "no CUDA GPU is visible here (nvidia-smi lists none)"
    if missing:
        raise ConfigError(f"{where}: 4bit (QLoRA) needs a CUDA GPU for each trial (bitsandbytes' 4-bit weights run "
                          f"on CUDA), and {missing}; run the study on a GPU machine, or {fix}")


def cuda_visible() -> bool:
    """Whether this machine has a CUDA GPU, without importing torch (nvidia-smi, as the local backend asks)."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.startswith("GPU ") for line in out.stdout.splitlines())


_SPACES: dict[str, Space] = {}  # the sections a space depends on (as JSON) -> the space, built and checked once


def resolved_space(cfg: StudyConfig) -> Space:
    """The preset (if any) overlaid with ``search.space``; names must be training fields. Built once per
    search, training and task sections (all it depends on): validation, the plan and the priors all get the
    same `Space`, and so does a config that differs elsewhere (`lmtune train`'s own folder, a stage's study)."""
    key = "\n".join(section.model_dump_json() for section in (cfg.search, cfg.training, cfg.task))
    if key not in _SPACES:
        if len(_SPACES) >= 16:  # a few configs per process (a proxy stage and its target): keep it small
            del _SPACES[next(iter(_SPACES))]
        _SPACES[key] = _build_space(cfg)
    return _SPACES[key]


def _build_space(cfg: StudyConfig) -> Space:
    raw: dict[str, Any] = {}
    try:
        if cfg.search.preset:
            raw.update(preset(cfg.search.preset))
        raw.update(cfg.search.space)
        unknown = [n for n in raw if n not in TRAINING_FIELDS]
        if unknown and cfg.task.type != "script":  # a script may search its own names (trial.params)
            raise SpaceError(f"search.space.{unknown[0]}: not a training hyperparameter; searchable: "
                             f"{', '.join(sorted(TRAINING_FIELDS))}")
        lora = [n for n in raw if n.startswith("lora_") and n != "lora_enabled"]
        if lora and not cfg.training.lora_enabled and "lora_enabled" not in raw:
            raise SpaceError(f"search.space.{lora[0]}: LoRA settings are searched but LoRA is off; set "
                             "training.lora_enabled: true (or search lora_enabled)")
        space = build_space(raw)
        check_values(space)
        check_effects(cfg, space)
        unknown_mutable = [n for n in cfg.search.pbt.mutable or [] if n not in space.names]
        if unknown_mutable:
            raise SpaceError(f"search.pbt.mutable: {unknown_mutable[0]!r} is not in the search space; PBT can only "
                             f"change what it searches: {', '.join(space.names) or '(the space is empty)'}")
        if cfg.search.strategy == "pbt" and cfg.task.type != "script":  # a script is restarted for any change
            chosen = cfg.search.pbt.mutable
            names = chosen if chosen is not None else [p.name for p in space if p.mutable]
            fixed = sorted(set(names) - MUTABLE_BY_DEFAULT)
            if fixed:
                where = "search.pbt.mutable" if chosen is not None else f"search.space.{fixed[0]}.mutable"
                raise SpaceError(f"{where}: PBT cannot change {fixed[0]} of a running trial (it fixes the optimizer's "
                                 "parameter groups, the data position or the model's shape); PBT may change "
                                 f"{', '.join(sorted(MUTABLE_BY_DEFAULT))}; keep {fixed[0]} fixed per member")
        if cfg.search.strategy == "grid":
            space.grid()
    except SpaceError as exc:
        raise ConfigError(str(exc)) from None
    return space


def check_values(space: Space) -> None:
    """Every value the space can give (a categorical's choices, a range's bounds) must be one its training
    field accepts, as the field's default must: ``optimizer: [lion]``, ``batch_size`` 0, a dropout of 1 or
    a negative learning rate are refused here, not found after the trials fail."""
    fields = TrainingSection.model_fields
    for param in space:
        info = fields.get(param.name)
        if info is None:  # a script's own parameter: the script gives it its meaning
            continue
        kind = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        check: TypeAdapter[Any] = TypeAdapter(kind)  # type: ignore[arg-type]
        for value in param.extremes():
            if isinstance(value, bool) and not takes_bool(info.annotation):
                raise SpaceError(f"search.space.{param.name}: {str(value).lower()} is a boolean; "
                                 f"training.{param.name} takes a number (default {info.default!r})")
            try:
                check.validate_python(value)
            except ValidationError as exc:
                why = exc.errors()[0]["msg"]
                raise SpaceError(f"search.space.{param.name}: {value!r} is not a valid training.{param.name} "
                                 f"({why}); change the space") from None


def _format(exc: ValidationError, source: str, lines: Mapping[tuple[str, ...], int]) -> str:
    msgs = []
    for err in exc.errors():
        loc = tuple(str(x) for x in err["loc"])
        field = ".".join(loc) or "config"
        where = f" (line {lines[loc]})" if loc in lines else ""
        if err["type"] == "extra_forbidden":
            section = _section_fields(loc[:-1])
            hint = f"unknown key; valid keys here: {', '.join(section)}" if section else "unknown key"
            msgs.append(f"{field}{where}: {hint}")
        else:
            got = f" (got {err['input']!r})" if not isinstance(err.get("input"), dict) else ""
            msgs.append(f"{field}{where}: {err['msg']}{got}")
    return f"invalid config {source}:\n  " + "\n  ".join(msgs)


def _section_fields(loc: tuple[str, ...]) -> list[str]:
    model: Any = StudyConfig
    for part in loc:
        info = model.model_fields.get(part)
        annotation = info.annotation if info is not None else None
        optional = [a for a in get_args(annotation) if a is not type(None)]  # `Section | None` fields
        annotation = optional[0] if len(optional) == 1 else annotation
        if not isinstance(annotation, type):
            return []
        model = annotation
    return sorted(model.model_fields) if hasattr(model, "model_fields") else []


def _line_numbers(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in the YAML to its (1-based) line, for error messages."""
    out: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                out[sub] = key.start_mark.line + 1
                walk(value, sub)

    root = yaml.compose(text, Loader=SafeLoader)
    if root is not None:
        walk(root, ())
    return out
