"""Search spaces: parameter types, conditional parameters, presets, Optuna distributions."""

from lmtune.space.build import MUTABLE_BY_DEFAULT, build_space, preset
from lmtune.space.params import CategoricalParam, FloatParam, IntParam, Param, Space, SpaceError

__all__ = ["MUTABLE_BY_DEFAULT", "CategoricalParam", "FloatParam", "IntParam", "Param", "Space", "SpaceError",
           "build_space", "preset"]
