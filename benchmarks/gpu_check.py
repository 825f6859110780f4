"""GPU check: the trainer's fp32, bf16 and fp16 (loss-scaled) paths on a CUDA GPU, for both built-in tasks.

For each task and precision, one trial of the trainer's own loop (``lmtune.training.loop.train``) runs in
this process from the task's example config: train tokens/s (real, non-padding tokens over training time,
evaluation excluded; after a 3-step warm-up trial of each precision), peak GPU memory, and the validation
metrics after the same steps from the same seed.

    python benchmarks/gpu_check.py [--steps 30] [--tasks classification causal_lm] [--out docs/gpu-check.md]

No hub is needed: the models and data are the offline built-ins. ``--random-init-llm`` builds SmolLM2-135M
from its config with random weights (seed 0) where the 98 MB GGUF cannot travel (the real architecture,
tokenizer and data, so speed and memory are real; its losses are those of an untrained model).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from lmtune.config import load_config
from lmtune.training.loop import train
from lmtune.tuner.plan import make_plan, trial_spec

EXAMPLES = Path(__file__).parents[1] / "examples"
TASKS = {
    "classification": (EXAMPLES / "quickstart.yaml", ["task.train_size=2000"], "eval_accuracy"),
    "causal_lm": (EXAMPLES / "lora-sft.yaml", ["task.train_size=512"], "eval_perplexity"),
}


def random_init_smollm2() -> None:
    """Write seed-0 random weights into the SmolLM2 cache folder (config and tokenizer must be there)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from lmtune.data.smollm2 import default_cache_root

    folder = default_cache_root() / "smollm2-135m-instruct"
    if (folder / "model.safetensors").is_file():
        return
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(folder)


def one_trial(task: str, precision: str, args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    example, sets, metric = TASKS[task]
    cfg = load_config(example, [f"study.dir={tmp}/{task}-{precision}", f"training.max_steps={args.steps}",
                                f"training.eval_every={args.steps}", f"training.precision={precision}", *sets,
                                *(["training.batch_size=16"] if task == "causal_lm" else [])])
    plan = make_plan(cfg)
    spec = trial_spec(plan, number=0, hparams={**plan.defaults}, device=args.device, threads=None,
                      interactive=False, save_adapter=False)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    end = train(spec, lambda event: None, lambda: "continue")
    m = end["metrics"]
    return {"task": task, "asked": precision, "ran": end["precision"],
            "tok_s": end["train_tokens"] / end["train_time_s"], "peak_mb": end.get("peak_memory_mb", 0.0),
            "eval_loss": m["eval_loss"], "metric": metric, "value": m[metric],
            "batch": plan.defaults.get("batch_size")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--random-init-llm", action="store_true", help="SmolLM2 with random weights (see above)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cuda", help="cuda (the check); cpu only to try the script")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible: this check needs one (bf16 autocast and fp16 with loss scaling)")
    if args.random_init_llm and "causal_lm" in args.tasks:
        random_init_smollm2()
    rows = ["| task | batch | precision asked | ran | train tokens/s | peak GPU memory MiB | eval_loss | metric |",
            "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            for precision in ("fp32", "bf16", "fp16"):  # warm-up: CUDA loads each dtype's kernels lazily
                one_trial(task, precision, argparse.Namespace(**{**vars(args), "steps": 3}), f"{tmp}/warm")
            for precision in ("fp32", "bf16", "fp16"):
                r = one_trial(task, precision, args, tmp)
                rows.append(f"| {task} | {r['batch']} | {precision} | {r['ran']} | {r['tok_s']:,.0f} | "
                            f"{r['peak_mb']:,.0f} | {r['eval_loss']:.4f} | {r['metric']} {r['value']:.4f} |")
                print(rows[-1], flush=True)
    device = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "CPU"
    llm = "SmolLM2-135M random init (seed 0)" if args.random_init_llm else "SmolLM2-135M-Instruct"
    text = "\n".join([f"device: {device}; torch {torch.__version__}; {args.steps} steps per trial from seed 0; "
                      f"classification = MiniLM-L6 full fine-tune on rotten_tomatoes (quickstart.yaml), "
                      f"causal_lm = LoRA r=8 on {llm}, chatterbot (lora-sft.yaml)", "", *rows, ""])
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
