"""Inside a tool trial's processes (`lmtune.integrations.tools`): attach lmtune to every ``transformers.Trainer``
the tool builds, without editing the tool.

The driver puts a folder holding a ``sitecustomize.py`` first on the trial's ``PYTHONPATH``; Python runs it
at start-up in every process of the trial (torchrun's and accelerate's ranks too), and it calls `install`.
`install` imports nothing heavy: it waits for ``transformers.trainer`` to be imported by the tool, then
wraps ``Trainer.__init__`` so that each Trainer gets a `ToolCallback` and ``Trainer.train`` so that a trial
resumed by lmtune passes its checkpoint. Another ``sitecustomize`` further on the path (a virtual
environment's own) still runs after it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["SITE_DIR", "install", "write_site"]

SITE_DIR = "lmtune-site"  # in the trial folder
_TARGET = "transformers.trainer"
_SITECUSTOMIZE = '''"""Written by lmtune for a tool trial: attach lmtune to the tool's Trainer."""
import sys
sys.path[:0] = {paths!r}  # where lmtune is, for a tool in another virtual environment
from lmtune.integrations.attach import install, chain
install()
chain(__file__)
'''


def write_site(trial_folder: Path) -> Path:
    """The folder (to put first on ``PYTHONPATH``) with the ``sitecustomize.py`` that calls `install`."""
    site = trial_folder / SITE_DIR
    site.mkdir(parents=True, exist_ok=True)
    lmtune_root = str(Path(__file__).resolve().parents[2])
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(paths=[lmtune_root]), encoding="utf-8")
    return site


def chain(own: str) -> None:
    """Run the next ``sitecustomize`` on ``sys.path`` (the one ours shadows), if there is one."""
    here = str(Path(own).resolve().parent)
    rest = [p for p in sys.path if p and Path(p).resolve() != Path(here)]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or spec.origin is None or Path(spec.origin).resolve() == Path(own).resolve():
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``transformers.trainer`` is being imported, it lets the other finders find
    it and patches the module once it has run."""

    def find_spec(self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if name != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module = _then_patch(spec.loader.exec_module)  # type: ignore[method-assign]
                return spec
        return None


def _then_patch(run: Any) -> Any:
    def exec_module(module: ModuleType) -> None:
        run(module)
        _patch(module)

    return exec_module


def install() -> None:
    """Attach lmtune to the Trainers this process builds (a no-op outside a tool trial)."""
    from lmtune.protocol import SCRIPT_TRIAL_ENV

    if not os.environ.get(SCRIPT_TRIAL_ENV):
        return
    if _TARGET in sys.modules:
        _patch(sys.modules[_TARGET])
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())


def _patch(module: ModuleType) -> None:
    trainer_cls = getattr(module, "Trainer", None)
    if trainer_cls is None or getattr(trainer_cls, "_lmtune_attached", False):
        return
    init, train = trainer_cls.__init__, trainer_cls.train

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        from lmtune.integrations.transformers import NO_EVAL, ToolCallback

        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        if training_args is not None and hasattr(training_args, "include_num_input_tokens_seen"):
            # lmtune's measurement, not a setting: the real (non-padding) tokens trained, for the trial's
            # train_tokens and budget.max_train_tokens
            training_args.include_num_input_tokens_seen = "non_padding"
        try:
            init(self, *args, **kwargs)
        except ValueError as exc:  # lmtune asks for evaluations: HF refuses a Trainer without data for them
            if "eval_dataset" in str(exc):
                from lmtune.errors import LmtuneError

                raise LmtuneError(NO_EVAL) from exc
            raise

        if not any(isinstance(cb, ToolCallback) for cb in self.callback_handler.callbacks):
            self.add_callback(ToolCallback(self))

    def train_(self: Any, *args: Any, **kwargs: Any) -> Any:
        from lmtune.integrations.transformers import ToolCallback

        callback = next((cb for cb in self.callback_handler.callbacks if isinstance(cb, ToolCallback)), None)
        if callback is not None and callback.resume_from is not None:  # a trial lmtune resumes (PBT)
            if args:
                args = (callback.resume_from, *args[1:])
            else:
                kwargs["resume_from_checkpoint"] = callback.resume_from
        result = train(self, *args, **kwargs)
        if callback is not None:
            callback.trained(self)
        return result

    trainer_cls.__init__ = __init__
    trainer_cls.train = train_
    trainer_cls._lmtune_attached = True
