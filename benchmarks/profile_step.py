"""Where a CPU training step's time goes: lmtune's own step on the trainer benchmark's workload.

Builds the trial exactly as `benchmarks/trainer_throughput.py` does (MiniLM-L6, Rotten Tomatoes rows,
batch 32, ``max_length`` 64, fp32, AdamW), runs ``--warmup`` steps, then profiles ``--steps`` steps with
the torch profiler and sorts every operator's self time into: GEMMs (linear layers), attention (SDPA or
the eager matmul/softmax path), embedding backward, optimizer, element-wise and norm ops (GELU, layer
norm, dropout, adds), data (collate), and the rest of the step's wall time (Python and dispatch).
It also measures what the GEMMs reach in GFLOP/s against a large matmul on the same threads (the
machine's practical peak), and the padding share of the batches.

    .venv/bin/python benchmarks/profile_step.py --steps 20
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from lmtune.config import TrainingSection
from lmtune.data.sources import DataSpec
from lmtune.data.tokenized import build_cache
from lmtune.protocol import TrialSpec
from lmtune.training import loop
from lmtune.training.models import load_tokenizer, resolve_model
from lmtune.training.session import setup

GEMM = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "mkldnn::_linear_pointwise"}
ATTENTION = ("scaled_dot_product", "flash_attention", "_softmax", "softmax")
EMBED = ("embedding_dense_backward", "embedding_backward", "index_add", "embedding_renorm")


def peak_gflops(threads: int) -> float:
    """A large fp32 matmul on ``threads`` threads: what this machine's GEMMs can reach."""
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    n = 10
    for _ in range(n):
        a @ b
    return 2 * 2048 ** 3 * n / (time.perf_counter() - t0) / 1e9


def bucket(name: str) -> str:
    if name in GEMM:
        return "GEMM (linear layers)"
    if any(k in name for k in ATTENTION):
        return "attention (SDPA / softmax)"
    if any(k in name for k in EMBED):
        return "embedding backward"
    if "Optimizer" in name or "_foreach" in name or "adamw" in name.lower() or "lerp" in name or "addcdiv" in name:
        return "optimizer"
    if name == "collate":
        return "data (collate)"
    return "element-wise, norms, copies, other ops"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a training setting to profile with (e.g. --set optimizer=sgd); repeatable")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = resolve_model("builtin:minilm-l6")
    work = Path(tempfile.mkdtemp(prefix="lmtune-profile-"))
    spec = DataSpec(dataset="builtin:rotten_tomatoes", dataset_config=None, text_column="text",
                    text_pair_column=None, label_column="label",
                    sizes={"train": args.rows, "validation": 64, "test": 64}, seed=0)
    cache = build_cache(spec, load_tokenizer(model), model, args.max_length, work / "cache")
    extra = {k: type(getattr(TrainingSection(), k))(v) for k, v in (s.split("=", 1) for s in args.set)}
    hp = {**TrainingSection().model_dump(), "batch_size": args.batch_size, "dropout": 0.1, **extra}
    trial = TrialSpec(trial=0, model=model, task_type="classification", data_cache=str(cache), hparams=hp,
                      examples_per_unit=args.rows, total_examples=args.rows * 10, output_dir=str(work / "out"),
                      interactive=False)
    s = setup(trial)
    lengths = s.train_split.lengths()

    real, padded = 0, 0

    def step(i: int) -> None:
        nonlocal real, padded
        index = s.batch_at(i)
        real += int(lengths[index].sum())
        padded += len(index) * int(lengths[index].max())
        loop._step(s, index, lambda e: None)

    orig_collate = s.collate

    def timed_collate(index: np.ndarray) -> dict[str, Any]:
        with record_function("collate"):
            return orig_collate(index)

    s = dataclasses.replace(s)
    object.__setattr__(s, "collate", timed_collate)
    for i in range(args.warmup):
        step(i)
    real, padded = 0, 0
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        t0 = time.perf_counter()
        for i in range(args.warmup, args.warmup + args.steps):
            step(i)
        wall = time.perf_counter() - t0
    times: dict[str, float] = defaultdict(float)
    flops = 0.0
    gemm_s = 0.0
    for ev in prof.key_averages():
        if ev.key.startswith("ProfilerStep"):
            continue
        sec = ev.self_cpu_time_total / 1e6
        if ev.key == "collate":  # a range: its self time is the Python around the copies
            times["data (collate)"] += ev.cpu_time_total / 1e6
            continue
        if ev.key.startswith("Optimizer.step"):
            times["optimizer"] += ev.self_cpu_time_total / 1e6
            continue
        name = bucket(ev.key)
        times[name] += sec
        if name.startswith("GEMM"):
            flops += ev.flops or 0
            gemm_s += sec
    # collate's children (copies, from_numpy) were also counted in their own buckets: take them out
    accounted = sum(times.values())
    rest = max(0.0, wall - accounted)
    peak = peak_gflops(args.threads)
    print(f"steps {args.steps}, wall {wall:.2f} s ({wall / args.steps * 1000:.0f} ms/step), "
          f"{real / wall:,.0f} real tokens/s, padding {1 - real / padded:.1%} of batch positions, "
          f"threads {args.threads}")
    print("| where | s | share of step wall |\n|---|---|---|")
    for name, sec in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {sec:.2f} | {sec / wall:.1%} |")
    print(f"| Python, dispatch, not in any op | {rest:.2f} | {rest / wall:.1%} |")
    print(f"GEMMs: {flops / 1e9:.1f} GFLOP in {gemm_s:.2f} s = {flops / 1e9 / max(gemm_s, 1e-9):.1f} GFLOP/s; "
          f"a 2048x2048 fp32 matmul on {args.threads} threads: {peak:.1f} GFLOP/s")
    top = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    (work / "profile.txt").write_text(top)
    print(top)


if __name__ == "__main__":
    main()
