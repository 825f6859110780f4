"""``training.packing`` on the tiny Llama and chats: fewer padded slots on the trainer's own batches, and
no attention across packed examples — each example's loss, the update and the whole run equal the
padded layout's (fp32, 1e-5), with the same real tokens counted."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_lm_training import lm_cache, lm_spec, run  # noqa: F401  (module fixture)

from lmtune.data.causal import IGNORE_INDEX
from lmtune.data.tokenized import load_split
from lmtune.errors import ConfigError
from lmtune.training import loop
from lmtune.training.batches import collate
from lmtune.training.packing import check_isolated, collate_packed, packed_rows
from lmtune.training.session import setup

CPU = torch.device("cpu")
MAX_LENGTH = 96  # lm_cache's task.max_length


@pytest.mark.parametrize("seed", range(20))
def test_packed_rows_hold_every_example_once_in_no_more_slots_than_padding(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(1, 96) for _ in range(rng.randint(1, 16))]
    rows = packed_rows(lengths, 96)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    fills = [sum(lengths[i] for i in row) for row in rows]
    assert max(fills) <= 96
    assert len(rows) * max(fills) <= len(lengths) * max(lengths)  # never more than the padded layout


def test_packed_rows_fill_rows_up_to_the_width() -> None:
    assert packed_rows([30, 31, 32, 33], 96) == [[3, 0], [2, 1]]  # 2 rows of 63, not 4 of 33
    assert packed_rows([96, 96], 96) == [[0], [1]]  # full blocks (plain text): nothing to pack
    assert packed_rows([10, 10, 10], 16) == [[0], [1], [2]]  # no two fit


def _per_example_losses(model: torch.nn.Module, batch: dict[str, Any], owner: np.ndarray) -> np.ndarray:
    """Each example's summed next-token loss: ``owner`` names the example of every label slot (-1: none)."""
    batch = dict(batch)
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch).logits
    token = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                            reduction="none", ignore_index=IGNORE_INDEX).numpy()
    slots = owner[:, 1:].reshape(-1)
    return np.array([token[slots == k].sum() for k in range(int(owner.max()) + 1)])


def _owners(lengths: list[int], rows: list[list[int]] | None, width: int) -> np.ndarray:
    if rows is None:  # padded: example k is row k
        rows = [[k] for k in range(len(lengths))]
    owner = np.full((len(rows), width), -1)
    for r, row in enumerate(rows):
        at = 0
        for k in row:
            owner[r, at:at + lengths[k]] = k
            at += lengths[k]
    return owner


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_each_packed_examples_loss_equals_its_padded_loss(attention: str, tiny_llama: Path, lm_cache: Path,  # noqa: F811
                                                          tmp_path: Path) -> None:
    s = setup(lm_spec(tiny_llama, lm_cache, tmp_path))
    s.model.set_attn_implementation(attention)
    assert s.model.config._attn_implementation == attention
    s.model.eval()  # dropout is off in lm_spec; eval() also for LoRA's dropout
    split = load_split(lm_cache, "train")
    index = np.arange(16)
    lengths = [int(n) for n in split.lengths()[index]]
    padded = collate(split, index, s.pad_id, CPU)
    packed = collate_packed(split, index, s.pad_id, CPU, MAX_LENGTH)
    assert packed["input_ids"].shape[0] < len(index)  # several examples did share a row
    rows = packed_rows(lengths, MAX_LENGTH)
    alone = _per_example_losses(s.model, padded, _owners(lengths, None, padded["input_ids"].shape[1]))
    together = _per_example_losses(s.model, packed, _owners(lengths, rows, packed["input_ids"].shape[1]))
    terms = s.train_terms[index] if s.train_terms is not None else None
    assert terms is not None and (terms > 0).all()
    np.testing.assert_allclose(together / terms, alone / terms, rtol=0, atol=1e-5)  # mean loss per example
    label_slots = (packed["labels"] != IGNORE_INDEX).sum().item()
    assert label_slots == int(terms.sum())  # the same label tokens are scored


def test_packing_cuts_the_padding_of_the_trainers_batches(tiny_llama: Path, lm_cache: Path,  # noqa: F811
                                                          tmp_path: Path) -> None:
    s = setup(lm_spec(tiny_llama, lm_cache, tmp_path, batch_size=8))
    split = load_split(lm_cache, "train")
    real = padded = packed = 0
    for step in range(12):  # three epochs of 32 chats: the length-grouped batches the trainer trains
        index = s.batch_at(step)
        real += int(split.lengths()[index].sum())
        a = collate(split, index, s.pad_id, CPU)["input_ids"].numel()
        b = collate_packed(split, index, s.pad_id, CPU, MAX_LENGTH)["input_ids"].numel()
        assert b <= a
        padded, packed = padded + a, packed + b
    # length grouping already leaves little padding (10 % of the slots here, 6,795 real tokens in 7,560;
    # many of these chats are cut at max_length); packing took a quarter of it away (7,344 slots)
    assert packed < padded and packed - real <= 0.75 * (padded - real), (real, padded, packed)


def test_a_packed_run_trains_like_the_padded_run(tiny_llama: Path, lm_cache: Path, tmp_path: Path) -> None:  # noqa: F811
    """Same examples per step, same update: the curve and the real tokens counted match. Without dropout:
    masks drawn over differently shaped tensors differ (the same distribution, not the same draws)."""
    hp = {"lora_enabled": True, "lora_dropout": 0.0, "gradient_checkpointing": True}
    padded, _ = run(lm_spec(tiny_llama, lm_cache, tmp_path / "a", **hp))
    shapes: list[tuple[int, ...]] = []
    real_setup = loop.setup

    def watched(spec: Any) -> Any:
        s = real_setup(spec)
        s.model.register_forward_pre_hook(lambda _m, _a, kw: shapes.append(tuple(kw["input_ids"].shape))
                                          if s.model.training else None, with_kwargs=True)
        return s

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "setup", watched)
        packed, _ = run(lm_spec(tiny_llama, lm_cache, tmp_path / "b", packing=True, **hp))
    assert packed["train_tokens"] == padded["train_tokens"] and packed["examples"] == padded["examples"]
    assert any(rows < 8 for rows, _ in shapes)  # the steps did run packed
    for key, value in padded["metrics"].items():
        assert packed["metrics"][key] == pytest.approx(value, abs=1e-5), key


def test_a_model_that_attends_across_packed_examples_is_refused(tiny_llama: Path, lm_cache: Path,  # noqa: F811
                                                                tmp_path: Path) -> None:
    s = setup(lm_spec(tiny_llama, lm_cache, tmp_path))
    model = s.model

    class IgnoresPositions(torch.nn.Module):  # attention over the whole row, as without packing support
        def forward(self, input_ids: torch.Tensor, **_: Any) -> Any:
            return model(input_ids=input_ids, use_cache=False)

    check_isolated(model, s.train_split, CPU)  # Llama through transformers: isolated
    with pytest.raises(ConfigError, match=r"training\.packing: IgnoresPositions lets packed examples attend to "
                                          r"each other .* set training\.packing: false"):
        check_isolated(IgnoresPositions(), s.train_split, CPU)


def test_packing_a_classifier_is_refused_by_the_trainer(tiny_llama: Path, lm_cache: Path,  # noqa: F811
                                                        tmp_path: Path) -> None:
    spec = lm_spec(tiny_llama, lm_cache, tmp_path, packing=True)
    with pytest.raises(ConfigError, match=r"training\.packing: .* task\.type classification"):
        setup(type(spec)(**{**spec.__dict__, "task_type": "classification"}))
