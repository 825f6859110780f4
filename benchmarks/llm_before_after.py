"""Perplexity before and after a LoRA study: the base model, the default trial's and the best trial's
adapters, each scored on the study's validation and test splits (the test split no trial has seen).

    python benchmarks/llm_before_after.py STUDY_DIR

"Before" is the base model as the study loaded it (a fresh LoRA adapter starts as the identity).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from peft import set_peft_model_state_dict
from safetensors.torch import load_file

from lmtune.protocol import TrialSpec
from lmtune.study import best_trial, default_trial, load_study
from lmtune.training.session import setup


def read_spec(trial_dir: str) -> TrialSpec:
    """The trial's frozen spec; fields of other lmtune versions are ignored."""
    raw = json.loads((Path(trial_dir) / "trial.json").read_text())
    known = {f.name for f in dataclasses.fields(TrialSpec)}
    return TrialSpec(**{k: v for k, v in raw.items() if k in known})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", type=Path)
    args = parser.parse_args()
    study, _meta = load_study(args.study_dir)
    best, default = best_trial(study), default_trial(study)
    if best is None or default is None:
        raise SystemExit("the study needs a completed default trial and a best trial")
    s = setup(read_spec(default.user_attrs["trial_dir"]))
    print("| model | validation loss | validation perplexity | test loss | test perplexity |")
    print("|---|---|---|---|---|")
    for name, trial in (("base (before fine-tuning)", None), (f"default trial {default.number}", default),
                        (f"best trial {best.number}", best)):
        if trial is not None:
            s = setup(read_spec(trial.user_attrs["trial_dir"]))
            weights = load_file(str(Path(trial.user_attrs["adapter_dir"]) / "adapter_model.safetensors"))
            set_peft_model_state_dict(s.model, weights)
        val, test = s.evaluate("validation"), s.evaluate("test")
        print(f"| {name} | {val['eval_loss']:.4f} | {val['eval_perplexity']:.3f} | {test['test_loss']:.4f} | "
              f"{test['test_perplexity']:.3f} |")


if __name__ == "__main__":
    main()
