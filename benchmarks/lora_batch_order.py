"""Why lmtune's LoRA run ends at a higher loss than HF Trainer's after the same 8 steps: the batches.

Builds the trainer benchmark's causal-LM trial (SmolLM2-135M-Instruct, LoRA r 8 on q/k/v/o with dropout 0
so the runs are deterministic, 64 chatterbot dialogs, batch 8, AdamW 1e-3, linear decay, clip 1.0), runs
lmtune's own `train()`, then the same eight steps as a plain PyTorch loop from the same initial weights:
on lmtune's batches (must equal `train()` exactly), without clipping, in HF `group_by_length`'s order
(longest first), and on randomly composed batches. Prints the validation loss of each (lmtune's
`evaluate`) and the gradient norms per step.

    .venv/bin/python benchmarks/lora_batch_order.py
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lmtune.config import TrainingSection
from lmtune.data.sources import DataSpec
from lmtune.data.tokenized import build_cache, load_split
from lmtune.protocol import TrialSpec
from lmtune.training import loop
from lmtune.training.evaluate import evaluate
from lmtune.training.models import load_tokenizer, resolve_model
from lmtune.training.session import setup


def main() -> None:
    torch.set_num_threads(2)
    model = resolve_model("builtin:smollm2-135m")
    spec = DataSpec(dataset="builtin:chatterbot", dataset_config=None, text_column="text", text_pair_column=None,
                    label_column=None, sizes={"train": 64, "validation": 32, "test": 8}, seed=0,
                    task="causal_lm", messages_column="messages", assistant_only=True)
    work = Path(tempfile.mkdtemp(prefix="lmtune-order-"))
    cache = build_cache(spec, load_tokenizer(model), model, 96, work / "cache")
    hp = {**TrainingSection().model_dump(), "batch_size": 8, "learning_rate": 1e-3, "dropout": None, "seed": 0,
          "lora_enabled": True, "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"], "lora_dropout": 0.0}
    trial = TrialSpec(trial=0, model=model, task_type="causal_lm", data_cache=str(cache), hparams=hp,
                      examples_per_unit=64, total_examples=64, output_dir=str(work / "out"), interactive=False)
    s = setup(trial)
    base = copy.deepcopy(s.model)
    val = load_split(cache, "validation")

    def score(m: torch.nn.Module) -> float:
        return evaluate(m, val, task_type="causal_lm", num_labels=0, batch_size=64, pad_id=s.pad_id,
                        device=torch.device("cpu"), autocast=contextlib.nullcontext())["eval_loss"]

    def plain(batches: Sequence[np.ndarray], clip: float = 1.0) -> tuple[float, list[float]]:
        m = copy.deepcopy(base)
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0, fused=True)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: max(0.0, (len(batches) - k) / len(batches)))
        m.train()
        norms = []
        for index in batches:
            batch = s.collate(np.asarray(index))
            labels = batch.pop("labels")
            m(**batch, labels=labels).loss.backward()
            norms.append(round(float(torch.nn.utils.clip_grad_norm_(m.parameters(), clip)), 2))
            opt.step()
            sched.step()
            opt.zero_grad()
        return score(m), norms

    ours = [s.batch_at(i) for i in range(s.total_steps)]
    lengths = s.train_split.lengths()
    print(f"before training: {score(base):.4f}")
    print(f"lmtune train(): {loop.train(trial, lambda e: None, lambda: 'continue')['metrics']['eval_loss']:.4f}")
    print("plain loop, lmtune's batches:", plain(ours))
    print("plain loop, lmtune's batches, no clipping:", plain(ours, clip=1e9))
    longest_first = np.argsort(-lengths, kind="stable")
    print("plain loop, longest-first batches:", plain([longest_first[i:i + 8] for i in range(0, 64, 8)]))
    perm = np.random.default_rng(0).permutation(64)
    print("plain loop, random batches:", plain([perm[i:i + 8] for i in range(0, 64, 8)]))
    print("batch length spread (max - min tokens) in lmtune's batches:",
          [int(lengths[b].max() - lengths[b].min()) for b in ours])


if __name__ == "__main__":
    main()
