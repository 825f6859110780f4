"""A synthetic table in the recorded format (tests and development of the replay, not a benchmark): smooth
learning curves whose quality depends on the learning rate and batch size, with seeded noise."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from tables.record import CLASSIFICATION, configurations


def write_synthetic(folder: Path, *, configs: int = 48, seeds: tuple[int, ...] = (0, 1), rows: int = 1500,
                    tokens_per_row: int = 25) -> Path:
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    spec = CLASSIFICATION
    cfgs = configurations(configs, spec)
    meta = {"task": folder.name, "kind": "classification", "rows": {"train": rows, "validation": 500, "test": 1000},
            "max_length": 64, "evals_per_epoch": spec.evals_per_epoch, "space": spec.space, "default": spec.default,
            "metric": spec.metric, "direction": spec.direction, "configs": cfgs, "seeds": list(seeds),
            "recorded_with": {"hardware": "synthetic"}}
    (folder / "meta.json").write_text(json.dumps(meta))
    per_unit = math.ceil(rows / spec.evals_per_epoch)
    for i, c in enumerate(cfgs):
        for s in seeds:
            rng = random.Random(f"{i}-{s}")
            ceiling = 0.9 - 0.08 * (math.log10(c["learning_rate"]) + 4.3) ** 2 - 0.02 * c["batch_size"] / 32
            speed = min(0.5, c["learning_rate"] * 4e3 / c["batch_size"] * 8)
            total = rows * c["epochs"]
            points = []
            for u in range(1, math.ceil(total / per_unit) + 1):
                ex = min(u * per_unit, total)
                q = 0.5 + (ceiling - 0.5) * (1 - (1 - speed) ** (ex / per_unit)) * (0.9 + 0.1 * ex / total)
                p = {"units": u, "step": math.ceil(ex / c["batch_size"]), "examples": ex,
                     "tokens": ex * tokens_per_row, "elapsed_s": ex / 60, "eval_loss": 1.2 - q + rng.gauss(0, 0.01),
                     "eval_accuracy": q + rng.gauss(0, 0.01), "train_loss": 1.1 - q}
                if u % spec.test_every == 0 or ex == total:
                    p["test_accuracy"] = q + rng.gauss(0, 0.01)
                points.append(p)
            (folder / "runs" / f"c{i:03d}-s{s}.json").write_text(json.dumps({"config": c, "seed": s,
                                                                               "points": points, "error": None}))
    return folder
