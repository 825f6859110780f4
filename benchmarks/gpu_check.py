"""GPU check for issue 4: one bf16 and one fp16 LoRA trial on SmolLM2 (chatterbot), tokens/s and peak memory.

Run on a machine with a CUDA GPU (no hub needed: the model and data are the offline built-ins):

    python benchmarks/llm_gpu_check.py [--steps 30] [--out docs/llm-gpu.md]

Each trial is the trainer's own loop in this process (``lmtune.training.loop.train``), fp32 first as the
reference. tokens/s counts real (non-padding) training tokens over training time (evaluation excluded).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch

from lmtune.config import load_config
from lmtune.training.loop import train
from lmtune.tuner.plan import make_plan, trial_spec

EXAMPLE = Path(__file__).parents[1] / "examples" / "lora-sft.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cuda", help="cuda (the check); cpu only to try the script")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible: this check needs one (bf16 autocast and fp16 with loss scaling)")
    rows = ["| precision asked | ran | train tokens/s | peak GPU memory MiB | eval_loss | perplexity |",
            "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16", "fp16"):
            cfg = load_config(EXAMPLE, [f"study.dir={tmp}/run", f"training.max_steps={args.steps}",
                                        f"training.eval_every={args.steps}", f"training.batch_size={args.batch_size}",
                                        f"training.precision={precision}", "task.train_size=512"])
            plan = make_plan(cfg)
            spec = trial_spec(cfg, plan, number=0, hparams={**plan.defaults}, device=args.device, threads=None,
                              interactive=False, save_adapter=False)
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            end = train(spec, lambda event: None, lambda: "continue")
            m = end["metrics"]
            rows.append(f"| {precision} | {end['precision']} | {end['train_tokens'] / end['train_time_s']:,.0f} | "
                        f"{end.get('peak_memory_mb', 0):,.0f} | {m['eval_loss']:.4f} | {m['eval_perplexity']:.3f} |")
    device = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "CPU"
    text = "\n".join([f"device: {device}; torch {torch.__version__}; {platform.node()}; "
                      f"{args.steps} steps of batch {args.batch_size}, LoRA r=8 on SmolLM2-135M, chatterbot", "",
                      *rows, ""])
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
