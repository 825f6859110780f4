"""`LmtuneCallback`: an HF ``Trainer`` (or TRL ``SFTTrainer``) script as an lmtune trial.

Add the callback and take its settings; nothing else in the script changes::

    cb = LmtuneCallback()                                   # lmtune.trial() under `lmtune tune`
    model = AutoModelForSequenceClassification.from_pretrained(name, **cb.model_kwargs(name))
    args = TrainingArguments(**cb.arguments())              # or SFTConfig(**cb.arguments(), ...)
    trainer = Trainer(model=model, args=args, ..., callbacks=[cb], optimizers=cb.optimizers(model))
    trainer.train()
    cb.finish(trainer, test_dataset=test)                   # final runs: test scores, the saved model

What maps where (`arguments`): learning_rate; batch_size → per_device_train_batch_size (÷ WORLD_SIZE, with
gradient accumulation for micro_batch_size, so the effective batch is the trial's); the trial's length
(its epochs / max_steps) → max_steps at its own batch size; evaluation every
``trial.examples_per_unit`` examples → eval_steps (equal data in every trial); eval_batch_size,
weight_decay, beta1/beta2/eps, max_grad_norm, lr_scheduler, warmup_ratio (as steps), precision, seed,
group_by_length → train_sampling_strategy.
`optimizers` builds lmtune's own optimizer (AdamW, Adam with L2, SGD with momentum/nesterov,
Adafactor; layer-wise learning-rate decay; no decay on biases and norms); without it, HF's ``optim``
is used where it is the same optimizer, and ``adam`` with weight decay or ``layer_decay`` < 1 are
refused before training. `model_kwargs` carries dropout / attention_dropout, `lora_config` the LoRA
settings. Early stopping (``early_stopping_patience``) is done by the callback on ``study.metric``.

Every evaluation is reported at ``global_step × batch_size`` examples; a ``Stop`` answer (pruned, or the
budget is spent) sets ``control.should_training_stop``. The last step is always evaluated. Every step
end calls ``trial.progress`` with the same count (and HF's token count when it keeps one), so the trial's
progress bar moves from the first step; the trial sends at most one such event every ~2 s.

PBT (``search.strategy: pbt``) uses the Trainer's own checkpoints: at each ready point the callback has
the Trainer save one (``control.should_save``), moves it to ``trial.checkpoint_dir(...)`` and reports it
there; a ``Pause`` stops training. Started again, the script passes ``resume_from_checkpoint=
cb.resume_from`` to ``trainer.train``; HF restores weights, optimizer, schedule, RNG and data position,
and the callback then puts the trial's (explored) settings in force in the restored optimizer
(`lmtune.training.optim.retune`), which needs ``optimizers=cb.optimizers(model)``.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lmtune.errors import LmtuneError
from lmtune.integrations.hf_args import ArgumentsError, optimizer_arguments, trainer_arguments
from lmtune.protocol import Pause, Stop
from lmtune.script import Trial, trial

__all__ = ["LmtuneCallback", "ToolCallback"]

# what arguments() sets: an override of one of these would train something else than the trial says
_OWNED = ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps",
          "num_train_epochs", "per_device_eval_batch_size", "eval_strategy", "eval_steps", "weight_decay",
          "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "lr_scheduler_type", "warmup_steps",
          "optim", "optim_args", "bf16", "fp16", "seed", "activation_checkpointing",
          "include_num_input_tokens_seen", "train_sampling_strategy")


def _per_token_loss(model: Any) -> bool:
    """Whether the model's loss is a per-token loss that uses HF's ``num_items_in_batch`` (a causal LM)."""
    base = getattr(model, "get_base_model", lambda: model)()  # a peft model: the model it wraps
    return type(base).__name__.endswith("ForCausalLM")


def stored_parameters(model: str) -> int | None:
    """The parameters in a model folder's safetensors files, from their headers (no weights read); None when
    ``model`` is not a local folder of safetensors."""
    files = sorted(Path(model).glob("*.safetensors")) if model and Path(model).is_dir() else []
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for f in files:
        with safe_open(str(f), "pt") as h:
            for key in h.keys():  # noqa: SIM118 (safe_open is not a mapping)
                total += math.prod(h.get_slice(key).get_shape())
    return total


class LmtuneCallback(TrainerCallback):  # type: ignore[misc]  # transformers is untyped here
    """A ``transformers.TrainerCallback`` that reports to lmtune and applies its decisions."""

    def __init__(self, trial_: Trial | None = None) -> None:
        self.trial = trial_ if trial_ is not None else trial()
        self._own_optimizer = False
        self._ready: tuple[dict[str, float], int] | None = None  # a ready point's scores, reported on save
        self._batch = 0
        self._last_eval_step = -1
        self._best: float | None = None
        self._since_best = 0

    @property
    def resume_from(self) -> str | None:
        """PBT: pass to ``trainer.train(resume_from_checkpoint=...)`` (None for a fresh start)."""
        folder = self.trial.resume_from
        return str(folder) if folder is not None else None

    # -- the settings --------------------------------------------------------------------------------
    def arguments(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``TrainingArguments`` / ``SFTConfig`` that train this trial.
        ``overrides`` adds the script's own settings (``logging_steps``, ``remove_unused_columns``, ...);
        the fields listed in the module docstring are the trial's and cannot be overridden."""
        owned = sorted(set(overrides) & set(_OWNED))
        if owned:
            raise LmtuneError(f"LmtuneCallback.arguments(): {', '.join(owned)} come from the trial; set them in the "
                              "study's training section or search.space instead")
        t = self.trial
        world = max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
        try:
            core = trainer_arguments(t.hparams, total_examples=t.total_examples,
                                     examples_per_unit=t.examples_per_unit, world=world)
        except ArgumentsError as exc:
            raise LmtuneError(str(exc)) from None
        self._batch = int(t.hparams["batch_size"])
        args: dict[str, Any] = {"output_dir": str(t.output_dir / "hf"), **core, "save_strategy": "no",
                                "report_to": "none", "disable_tqdm": True, **self._optim(), **self._precision()}
        if t.spec.extra.get("count_tokens"):  # budget.max_train_tokens: HF counts them (summed over ranks)
            args["include_num_input_tokens_seen"] = "non_padding"
        if t.spec.device == "cpu":
            args["use_cpu"] = True
        return {**args, **overrides}

    def _optim(self) -> dict[str, Any]:
        # looked at in the raw settings first: only a mapping that applies them marks them read
        if self._own_optimizer or optimizer_arguments(self.trial.spec.hparams) is None:
            return {}  # optimizers(model) is needed; on_train_begin says so if it was not used
        self.trial.mark_read("optimizer", "layer_decay")
        return optimizer_arguments(self.trial.hparams) or {}

    def _precision(self) -> dict[str, Any]:
        """``precision: auto`` by lmtune's trainer's rule (`lmtune.training.session.pick_precision`): on a GPU,
        fp32 for a model of up to 150M parameters (counted from its safetensors headers, nothing loaded),
        else bf16 (fp16 where the GPU has no bf16); fp32 on a CPU. The reason is printed to stderr."""
        wanted = str(self.trial.hparams["precision"])
        if wanted == "auto":
            import torch

            from lmtune.training import pick_precision

            gpu = self.trial.spec.device != "cpu" and torch.cuda.is_available()
            wanted, why = pick_precision("auto", torch.device("cuda" if gpu else "cpu"),
                                         parameters=stored_parameters(self.trial.spec.model))
            print(f"lmtune: precision {wanted} ({why})", file=sys.stderr, flush=True)
        return {"bf16": wanted == "bf16", "fp16": wanted == "fp16"}

    def optimizers(self, model: Any) -> tuple[Any, None]:
        """``Trainer(optimizers=...)``: lmtune's optimizer for ``model`` (the schedule stays HF's, from
        ``arguments()``): AdamW, Adam (L2), SGD or Adafactor, with layer-wise learning-rate decay."""
        import torch

        from lmtune.config import TrainingSection
        from lmtune.training import build_optimizer, mark_groups

        hp = self.trial.hparams
        used = TrainingSection.of({k: hp[k] for k in ("learning_rate", "weight_decay", "layer_decay", "optimizer",
                                                      "beta1", "beta2", "eps", "momentum", "nesterov")})
        self._own_optimizer = True
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        optimizer = build_optimizer(model, used, device)
        mark_groups(optimizer, used.learning_rate)  # so a resumed PBT member can be retuned
        return optimizer, None

    def model_kwargs(self, model: str | Any) -> dict[str, float]:
        """``from_pretrained(name, **kwargs)`` overrides that set the trial's dropout (a name or a config)."""
        from transformers import AutoConfig

        from lmtune.training import dropout_overrides

        config = AutoConfig.from_pretrained(model) if isinstance(model, str | Path) else model
        hp = self.trial.hparams
        return dropout_overrides(config, hp["dropout"], hp["attention_dropout"])

    def lora_config(self, task_type: str = "CAUSAL_LM") -> Any:
        """A peft ``LoraConfig`` with the trial's LoRA settings, or None when ``lora_enabled`` is false.
        ``task_type``: peft's name (``CAUSAL_LM``, ``SEQ_CLS``)."""
        hp = self.trial.hparams
        if not hp["lora_enabled"]:
            return None
        from peft import LoraConfig

        targets = hp["lora_target_modules"]
        if isinstance(targets, str):
            targets = [s.strip() for s in targets.split(",") if s.strip()]
        return LoraConfig(r=int(hp["lora_r"]), lora_alpha=float(hp["lora_alpha"]),  # type: ignore[arg-type]
                          lora_dropout=float(hp["lora_dropout"]), target_modules=targets, task_type=task_type)

    # -- the Trainer's side -----------------------------------------------------------------------------
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        if self.trial.spec.checkpoint_every:
            self._resumed(state, kwargs)
        if args.world_size > 1 and args.average_tokens_across_devices and not _per_token_loss(kwargs.get("model")):
            # HF multiplies the loss by the number of processes for any model that takes loss kwargs, to undo
            # DDP's mean when the model divides by the tokens of all ranks; a classifier's loss is already a
            # per-rank mean, so its training and evaluation losses came out world_size times too large
            # (transformers #35078): measured 2 ln 2 for a 2-class model at chance on 2 processes
            args.average_tokens_across_devices = False
        hp = self.trial.hparams
        if hp["early_stopping_patience"] is not None:
            self.trial.mark_read("early_stopping_patience", "early_stopping_min_delta")
        if not self._batch:
            raise LmtuneError("LmtuneCallback: build TrainingArguments from callback.arguments(), so the trial's "
                              "settings are the ones trained")
        unread = self.trial.unread
        if unread:  # refused before any training, not after it
            hint = (" (optimizer / layer_decay: pass optimizers=callback.optimizers(model) to the Trainer; HF has no "
                    "Adam with L2 weight decay and no layer-wise decay)"
                    if {"optimizer", "layer_decay"} & set(unread) else "")
            raise LmtuneError(f"this script does not apply {', '.join(unread)} (searched, or set in the training "
                              f"section){hint}; use model_kwargs() for dropout, lora_config() for LoRA, or read "
                              "them through trial.params")

    def _resumed(self, state: TrainerState, kwargs: dict[str, Any]) -> None:
        """PBT, at the start of training (after HF restored a checkpoint): check the run resumed where the
        trial says, and put the trial's settings in force in the restored optimizer."""
        if not self._own_optimizer:
            raise LmtuneError("LmtuneCallback: PBT needs Trainer(optimizers=callback.optimizers(model)), so the "
                              "explored settings can be put in force after a resume")
        t = self.trial
        if t.resume_from is None:
            return
        at = state.global_step * self._batch
        if at != t.resume_examples:
            raise LmtuneError(f"LmtuneCallback: this trial resumes from {t.resume_from} ({t.resume_examples} "
                              f"examples), but the Trainer starts at {at}; call "
                              "trainer.train(resume_from_checkpoint=callback.resume_from)")
        from lmtune.config import TrainingSection
        from lmtune.training import RETUNED, retune

        retune(kwargs["optimizer"], kwargs["lr_scheduler"], TrainingSection.of({k: t.hparams[k] for k in RETUNED}))

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_evaluate = True  # the trial's end is always scored, as lmtune's own trainer does
        if self.trial.checkpoint_dir(state.global_step * self._batch) is not None and control.should_evaluate:
            control.should_save = True  # a PBT ready point: the Trainer saves its state, on_save reports
        # the trial's progress bar from the first step (the trial sends at most one event per ~2 s)
        self.trial.progress(state.global_step * self._batch, _tokens(state))

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        if metrics is None or state.global_step == self._last_eval_step:
            return
        self._last_eval_step = state.global_step
        shown = _scores(metrics, "eval_")
        examples = state.global_step * self._batch
        if self.trial.checkpoint_dir(examples) is not None:
            self._ready = (shown, examples)  # reported with its checkpoint, once the Trainer saved it
            return
        self._decide(self.trial.report(shown, examples=examples, tokens=_tokens(state)), shown, control)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        if self._ready is None:
            return
        ready, self._ready = self._ready, None
        shown, decision = _report_saved(self.trial, ready, args, state)
        self._decide(decision, shown, control)

    def _decide(self, decision: Any, shown: dict[str, float], control: TrainerControl) -> None:
        if isinstance(decision, Stop | Pause) or self._early_stop(shown):
            control.should_training_stop = True

    def _early_stop(self, metrics: dict[str, float]) -> bool:
        hp, spec = self.trial.hparams, self.trial.spec
        patience = hp["early_stopping_patience"]
        value = metrics.get(spec.metric)
        if patience is None or value is None:
            return False
        sign = 1.0 if spec.direction == "maximize" else -1.0
        if self._best is None or sign * (value - self._best) > float(hp["early_stopping_min_delta"]):
            self._best, self._since_best = value, 0
            return False
        self._since_best += 1
        return self._since_best >= int(patience)

    # -- the end -----------------------------------------------------------------------------------
    def finish(self, trainer: Any, *, test_dataset: Any = None) -> None:
        """End the trial: a final run (``trial.evaluate_test``) scores ``test_dataset`` as ``test_*``
        metrics and (``trial.save_model``) saves the model to ``output_dir/model``."""
        t = self.trial
        tests = None
        if t.evaluate_test and not t.should_stop:
            if test_dataset is None:
                raise LmtuneError("LmtuneCallback.finish(): this final run scores the test split; pass "
                                  "test_dataset=...")
            tests = _scores(trainer.evaluate(test_dataset, metric_key_prefix="test"), "test_")
        saved = None
        if t.save_model and not t.should_stop:
            saved = t.output_dir / "model"
            trainer.save_model(str(saved))
        t.finish(test_metrics=tests, model_dir=saved)


def _report_saved(t: Trial, ready: tuple[dict[str, float], int], args: TrainingArguments,
                  state: TrainerState) -> tuple[dict[str, float], Any]:
    """A PBT ready point the Trainer has just saved (``ready``: its scores and examples): its checkpoint taken
    into the trial's folder, then the evaluation reported with it; returns the scores and the driver's answer."""
    shown, examples = ready
    folder = t.checkpoint_dir(examples)
    assert folder is not None
    _take_checkpoint(t, args, state, folder)
    return shown, t.report(shown, examples=examples, tokens=_tokens(state), checkpoint=folder)


def _take_checkpoint(t: Trial, args: TrainingArguments, state: TrainerState, folder: Path) -> None:
    """Make the checkpoint the Trainer just saved the trial's ready-point checkpoint ``folder`` (rank 0 moves it,
    once every rank has written its part)."""
    if args.world_size > 1:  # every rank writes into the Trainer's checkpoint (its rng_state_RANK.pth) and
        import torch.distributed as dist  # HF does not wait for them before on_save: rank 0 moves it after

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
    if t.is_reporter:
        import shutil

        saved = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(saved), str(folder))


def _tokens(state: TrainerState) -> int | None:
    """The train tokens HF counted (``include_num_input_tokens_seen``; None when it counted none)."""
    seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
    return seen or None


def _scores(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    """The scores among an HF metrics dict (not its timings: ``eval_runtime``, ``..._per_second``)."""
    return {k: float(v) for k, v in metrics.items() if k.startswith(prefix) and isinstance(v, int | float)
            and not k.endswith(("_runtime", "_per_second"))}


# what a tool trial checks the tool's Trainer runs with: (HF name, tolerance-free comparison); the batch is
# checked as the effective batch (per device x accumulation x processes)
_CHECKED = ("learning_rate", "max_steps", "weight_decay", "warmup_steps", "lr_scheduler_type", "seed",
            "max_grad_norm")
_PEFT = {"lora_r": "r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout"}


NO_EVAL = ("tool trial: the tool's Trainer has no evaluation data, so the trial could never be judged: give it an "
           "evaluation split (trl: a 'test' split or --dataset_test_split; llamafactory: val_size or eval_dataset; "
           "axolotl: val_set_size; run_*.py: --do_eval with --validation_file)")


class ToolCallback(TrainerCallback):  # type: ignore[misc]  # transformers is untyped here
    """lmtune inside a tool's own ``Trainer`` (`lmtune.integrations.attach` adds it; the tool is not edited).

    At the start of training it records what the Trainer actually runs with (the trial attr ``tool_args``:
    the ``TrainingArguments`` values and, for LoRA, the peft config's), and stops the trial, naming the
    setting, where that differs from what the trial asked (`lmtune.integrations.tools.expected`), or where
    the Trainer has no evaluation data (the trial could never be judged). Then it evaluates at every
    evaluation unit (equal data: examples = steps x per-device batch x accumulation x processes, from the
    Trainer's own arguments) and at the last step, reports each evaluation, and stops training on a Stop.
    A final run (``trial.evaluate_test``) scores the Trainer's evaluation data once more as ``test_*``:
    ``task.tool_final_args`` points it at the test split.

    PBT, through the tool's own checkpoints: at a ready point the Trainer saves one (``control.should_save``),
    which is moved to ``trial.checkpoint_dir(...)`` and reported there; a Pause stops training. A resumed
    trial's ``Trainer.train`` is given that folder (`lmtune.integrations.attach`), HF restores weights,
    optimizer, schedule, RNG and data position, and the trial's (explored) settings are then put in force in
    the restored optimizer (`lmtune.training.optim.retune`)."""

    def __init__(self, trainer: Any, trial_: Trial | None = None) -> None:
        self.trial = trial_ if trial_ is not None else trial()
        self.trainer = trainer
        self._batch = 0
        self._last_eval_step = -1
        self._next_unit = 1
        self._ready: tuple[dict[str, float], int] | None = None  # a ready point's scores, reported on save

    @property
    def resume_from(self) -> str | None:
        folder = self.trial.resume_from
        return str(folder) if folder is not None else None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        from lmtune.integrations.tools import expected

        self._batch = int(args.per_device_train_batch_size) * int(args.gradient_accumulation_steps) * \
            max(1, int(args.world_size))
        model = kwargs.get("model")
        actual = _flat(args.to_dict())
        peft = _peft_config(model)
        actual.update(peft)
        self.trial.tool_args(actual)
        if getattr(self.trainer, "eval_dataset", None) is None:
            raise LmtuneError(NO_EVAL)
        want = expected(self.trial.spec, world=max(1, int(args.world_size)))
        wrong = []
        batch = int(self.trial.spec.hparams["batch_size"])
        if self._batch != batch:
            wrong.append(f"batch_size: the Trainer trains {self._batch} examples per step "
                         f"({args.per_device_train_batch_size} per device x {args.gradient_accumulation_steps} "
                         f"accumulation x {args.world_size} processes), the trial asked {batch}")
        for key in _CHECKED:
            if key in want and not _same(actual.get(key), want[key]):
                wrong.append(f"{key}: the Trainer runs {actual.get(key)!r}, the trial asked {want[key]!r}")
        for ours, theirs in _PEFT.items():
            if ours in want and not _same(peft.get(theirs), want[ours]):
                wrong.append(f"{ours}: the model's LoRA has {theirs}={peft.get(theirs)!r}, "
                             f"the trial asked {want[ours]!r}")
        if wrong:
            raise LmtuneError("tool trial: the tool did not train the trial's settings (a key the tool reads under "
                              "another name? map it in task.tool_args): " + "; ".join(wrong))
        self._next_unit = state.global_step * self._batch // self.trial.examples_per_unit + 1
        if self.trial.resume_from is not None:
            self._resumed(state, model, kwargs)

    def _resumed(self, state: TrainerState, model: Any, kwargs: dict[str, Any]) -> None:
        """PBT, after HF restored the checkpoint: the run goes on where the trial says, with the trial's settings
        (the restored optimizer holds the saving run's)."""
        at = state.global_step * self._batch
        if at != self.trial.resume_examples:
            raise LmtuneError(f"tool trial: resumed from {self.trial.resume_from} ({self.trial.resume_examples} "
                              f"examples) but the Trainer starts at {at}: the tool does not pass "
                              "resume_from_checkpoint to Trainer.train")
        from lmtune.config import TrainingSection
        from lmtune.training import RETUNED, retune

        optimizer = kwargs["optimizer"]
        decays = set(self.trainer.get_decay_parameter_names(model)) if model is not None else set()
        names = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
        for group in optimizer.param_groups:  # HF's two groups: decayed weights, and biases and norms
            group["decays"] = any(names.get(id(p)) in decays for p in group["params"])
        hp = self.trial.hparams
        retune(optimizer, kwargs["lr_scheduler"], TrainingSection.of({k: hp[k] for k in RETUNED}))

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        examples = state.global_step * self._batch
        if examples >= self._next_unit * self.trial.examples_per_unit:  # equal data in every trial
            control.should_evaluate = True
            self._next_unit = examples // self.trial.examples_per_unit + 1
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_evaluate = True  # the trial's end is always scored
        if control.should_evaluate and self.trial.checkpoint_dir(examples) is not None:
            control.should_save = True  # a PBT ready point: the Trainer saves its state, on_save reports
        self.trial.progress(examples, _tokens(state))

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        if metrics is None or state.global_step == self._last_eval_step or not self._batch:
            return
        self._last_eval_step = state.global_step
        shown, examples = _scores(metrics, "eval_"), state.global_step * self._batch
        if self.trial.checkpoint_dir(examples) is not None:
            self._ready = (shown, examples)  # reported with its checkpoint, once the Trainer saved it
            return
        decision = self.trial.report(shown, examples=examples, tokens=_tokens(state))
        if isinstance(decision, Stop | Pause):
            control.should_training_stop = True

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        if self._ready is None:
            return
        ready, self._ready = self._ready, None
        _shown, decision = _report_saved(self.trial, ready, args, state)
        if isinstance(decision, Stop | Pause):
            control.should_training_stop = True

    def trained(self, trainer: Any) -> None:
        """``Trainer.train`` returned: the trial ends with its last report (and its training seconds, so the rest
        of the tool's run counts as overhead); a final run first scores the evaluation data (the test split
        there) as ``test_*``."""
        t = self.trial
        if t.evaluate_test and not t.should_stop:
            t.finish(test_metrics=_scores(trainer.evaluate(metric_key_prefix="test"), "test_"))
        else:
            t.finish()


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A JSON-safe flat copy (nested keys joined with '.'; other objects as text)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif value is None or isinstance(value, bool | int | float | str):
            out[name] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, bool | int | float | str) for v in value):
            out[name] = list(value)
        else:
            out[name] = str(value)
    return out


def _peft_config(model: Any) -> dict[str, Any]:
    """The LoRA settings of a peft model (r, lora_alpha, lora_dropout, target_modules), {} for another model."""
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, dict) or not configs:
        return {}
    cfg = next(iter(configs.values()))
    targets = getattr(cfg, "target_modules", None)
    return {"r": getattr(cfg, "r", None), "lora_alpha": getattr(cfg, "lora_alpha", None),
            "lora_dropout": getattr(cfg, "lora_dropout", None),
            "target_modules": sorted(targets) if isinstance(targets, set | list | tuple) else targets}


def _same(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, float) or isinstance(actual, float):
        try:
            return math.isclose(float(actual), float(wanted), rel_tol=1e-6, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return bool(str(actual).split(".")[-1] == str(wanted)) if isinstance(wanted, str) else bool(actual == wanted)
