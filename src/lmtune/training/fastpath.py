"""Faster CPU training steps that compute the same function as the stock forward.

Three levers, each taken where the profile of a CPU step (docs/trainer-speed.md) showed the time going:

- `FastDropout`: dropout masks from 16-bit slices of 64-bit random words, ~3x faster than torch's
  ``bernoulli_`` on a CPU (which draws one number per element; it was ~9 % of a MiniLM step). The same
  distribution (keep probability ``1 - p`` with ``p`` rounded to a multiple of 1/65536, outputs scaled by
  the exact inverse keep probability), drawn from torch's default generator, so ``torch.manual_seed``,
  saved RNG states and activation checkpointing replay the same masks; a different stream than
  ``bernoulli_``, so a run differs from the stock forward's by its dropout draws (measured: within the
  seed-to-seed spread, docs/trainer-speed.md).
- `EncoderClassifierStep`: a BERT-family sequence classifier's forward without padding in its linear
  layers (only the attention sees the padded layout) and with only the first token carried through the
  last block's query, output projection and FFN, the only token the pooler reads. Same logits as the
  model's forward (tested to 1e-5); the other tokens' last-block outputs are never computed. Training
  steps and evaluation (`eval_forward`) both take it.
- `CausalLMLoss`: a causal LM's loss with the vocabulary projection run only at the positions that have
  a label (assistant tokens, no padding), not at every position. Same loss (tested).

`prepare` installs them per trial on a CPU and chooses the forwards where the model's structure is the one
they were written for, and says why otherwise; the trial records the choice (``forward``).
`PersistentGradEmbedding` keeps the input embedding's gradient buffer across steps. ``LMTUNE_FAST_CPU=0`` in
the trainer's environment turns all of it off (the stock forward, torch's dropout masks): a way to rule it out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lmtune.data import IGNORE_INDEX
from lmtune.training.evaluate import summed_loss

FAST_CPU = "LMTUNE_FAST_CPU"  # set to 0 to train with the stock forward, dropout and embedding gradient
MASK_BITS = 16  # each 64-bit random word gives four masks


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A boolean mask of ``shape`` that keeps each element with probability ``1 - p'`` (``p`` rounded to a
    multiple of 2**-16), and the inverse of that keep probability (the scale that keeps expectations)."""
    n = math.prod(shape)
    levels = 1 << MASK_BITS
    drop = min(levels - 1, round(p * levels))  # elements whose 16-bit value falls below this are dropped
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(1 << 63), None)
    keep = words.view(torch.int16)[:n].view(shape) >= drop - (1 << (MASK_BITS - 1))
    return keep, levels / (levels - drop)


class _MaskedScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:
        keep, scale = keep_mask(x.shape, p, x.device)
        mask = keep.to(x.dtype).mul_(scale)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout`` with `keep_mask`'s masks on a CPU (torch's own elsewhere)."""
    if not training or p <= 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    return _MaskedScale.apply(x, p)


class FastDropout(torch.nn.Dropout):
    """`torch.nn.Dropout` with `dropout`'s masks: a drop-in subclass (same ``p``, no state)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def use_fast_dropout(model: torch.nn.Module) -> int:
    """Replaces every plain `torch.nn.Dropout` in ``model`` by `FastDropout` (same ``p``); returns how many."""
    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Dropout:
                fast = FastDropout(child.p, child.inplace)
                fast.train(child.training)
                setattr(module, name, fast)
                swapped += 1
    return swapped


class _LookupIntoGrad(torch.autograd.Function):
    """An embedding lookup whose backward adds straight into the weight's ``.grad`` (a buffer kept across
    steps) instead of returning a fresh dense gradient: torch's would allocate and zero a vocabulary-sized
    tensor every step, and one above glibc's mmap ceiling (32 MB) page-faults anew each time (36 ms of a
    570 ms MiniLM step; the kept buffer is zeroed in 1 ms)."""

    @staticmethod
    def forward(ctx: Any, ids: torch.Tensor, weight: torch.Tensor, owner: PersistentGradEmbedding) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.owner = owner
        return F.embedding(ids, weight, owner.padding_idx)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None]:
        (ids,) = ctx.saved_tensors
        owner: PersistentGradEmbedding = ctx.owner
        weight = owner.weight
        if weight.grad is None:  # the first micro-batch of a step (the optimizer set .grad to None)
            buffer = owner.grad_buffer
            if buffer is None or buffer.shape != weight.shape or buffer.dtype != weight.dtype:
                buffer = owner.grad_buffer = torch.empty_like(weight)
            weight.grad = buffer.zero_()
        flat_ids, rows = ids.reshape(-1), grad.reshape(-1, grad.shape[-1]).to(weight.dtype)
        if owner.padding_idx is not None:  # as torch's: the padding row gets no gradient
            rows = rows * (flat_ids != owner.padding_idx).unsqueeze(1).to(rows.dtype)
        weight.grad.index_add_(0, flat_ids, rows)
        return None, None, None


class PersistentGradEmbedding(torch.nn.Embedding):
    """`torch.nn.Embedding` (same weight, same state dict) whose gradient lands in a buffer kept across
    steps (`_LookupIntoGrad`). The same gradient as torch's dense one, up to the order of additions."""

    grad_buffer: torch.Tensor | None = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.weight.requires_grad and torch.is_grad_enabled()) or self.max_norm \
                or self.sparse:
            return super().forward(ids)
        return _LookupIntoGrad.apply(ids, self.weight, self)


def use_persistent_embedding_grad(model: Any) -> bool:
    """Makes ``model``'s trainable input embedding a `PersistentGradEmbedding` when its weight is its own
    (not tied to the output projection, whose gradient arrives through autograd). Returns whether it did."""
    get_input = getattr(model, "get_input_embeddings", None)
    emb = get_input() if get_input is not None else None
    if type(emb) is not torch.nn.Embedding or not emb.weight.requires_grad:
        return False
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None and getattr(out, "weight", None) is emb.weight:
        return False
    emb.__class__ = PersistentGradEmbedding  # same module, same parameter: optimizer and saving unchanged
    return True


def _unwrap(model: torch.nn.Module) -> Any:
    """The transformers model inside a PEFT wrapper (LoRA layers stay in it): peft's ``get_base_model``."""
    return getattr(model, "get_base_model", lambda: model)()


@dataclass
class EncoderClassifierStep:
    """The forward of a BERT-family sequence classifier, for training steps and evaluation alike (see the
    module's docstring; in eval mode every dropout is off, as in the stock forward)."""

    model: torch.nn.Module

    @staticmethod
    def unsupported(model: torch.nn.Module) -> str | None:
        """Why this model cannot take the fast forward (None when it can)."""
        from transformers import BertForSequenceClassification

        net = _unwrap(model)
        if not isinstance(net, BertForSequenceClassification):
            return f"{type(net).__name__} is not a BERT-family sequence classifier"
        config = net.config
        if config.is_decoder or getattr(config, "add_cross_attention", False):
            return "a BERT decoder"
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            return f"position_embedding_type {config.position_embedding_type}"
        if getattr(config, "chunk_size_feed_forward", 0):
            return "chunked feed-forward"
        if config._attn_implementation not in ("sdpa", "eager"):
            return f"attention implementation {config._attn_implementation}"
        if net.bert.pooler is None:
            return "no pooler"
        return None

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        net = _unwrap(self.model)
        ids, mask = batch.get("input_ids"), batch.get("attention_mask")
        if (ids is None or mask is None
                or not set(batch) <= {"input_ids", "attention_mask", "token_type_ids"}
                or not bool(mask[:, 0].all())):  # left padding: the stock forward reads a pad at position 0
            return self.model(**batch).logits
        bert: Any = net.bert
        b, length = ids.shape
        hidden = bert.embeddings(input_ids=ids, token_type_ids=batch.get("token_type_ids"))  # [b, L, d], dropout
        width = hidden.shape[-1]
        real = mask.reshape(-1).nonzero().squeeze(1)  # positions of the real tokens in [b * L]
        lengths = mask.sum(1)
        firsts = torch.cumsum(lengths, 0) - lengths  # each row's first token in the unpadded layout
        x = hidden.reshape(b * length, width).index_select(0, real)
        keys = mask.bool()[:, None, None, :]
        layers = list(bert.encoder.layer)
        for i, layer in enumerate(layers):
            x = _encoder_block(layer, x, real, keys, b, length, firsts if i == len(layers) - 1 else None)
        pooled = bert.pooler(x.unsqueeze(1))  # x: the first token of each row, [b, d]
        return net.classifier(net.dropout(pooled))


def _encoder_block(layer: Any, x: torch.Tensor, real: torch.Tensor, keys: torch.Tensor, b: int, length: int,
                   firsts: torch.Tensor | None) -> torch.Tensor:
    """One BERT block over the unpadded tokens ``x`` [N, d]; with ``firsts``, only those rows' outputs."""
    att = layer.attention.self
    heads, size = att.num_attention_heads, att.attention_head_size

    def padded(t: torch.Tensor) -> torch.Tensor:  # [N, h*s] -> [b, h, L, s]
        full = t.new_zeros(b * length, t.shape[-1]).index_copy(0, real, t)
        return full.view(b, length, heads, size).transpose(1, 2)

    k, v = padded(att.key(x)), padded(att.value(x))
    rows = x if firsts is None else x.index_select(0, firsts)
    q = padded(att.query(x)) if firsts is None else att.query(rows).view(b, 1, heads, size).transpose(1, 2)
    p = att.dropout.p if att.training else 0.0
    if p > 0.0 and q.device.type == "cpu":  # the math path SDPA takes with dropout, with fast masks
        scores = torch.matmul(q, k.transpose(-1, -2)) * att.scaling
        scores = scores.masked_fill(~keys, torch.finfo(scores.dtype).min)
        context = torch.matmul(dropout(torch.softmax(scores, dim=-1), p, True), v)
    else:
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=p, scale=att.scaling)
    context = context.transpose(1, 2).reshape(-1, heads * size)
    if firsts is None:
        context = context.index_select(0, real)
    attended = layer.attention.output(context, rows)  # dense, dropout, LayerNorm(+ residual)
    return layer.output(layer.intermediate(attended), attended)


@dataclass
class CausalLMLoss:
    """A causal LM's summed loss with the vocabulary projection only where a label is (see the module)."""

    model: torch.nn.Module

    SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")

    @classmethod
    def unsupported(cls, model: torch.nn.Module) -> str | None:
        net = _unwrap(model)
        kind = getattr(net.config, "model_type", "")
        if kind not in cls.SUPPORTED:
            return f"model type {kind or type(net).__name__} (written for {', '.join(cls.SUPPORTED)})"
        if not hasattr(net, "get_decoder") or net.get_output_embeddings() is None:
            return "no separate decoder and output projection"
        if getattr(net.config, "final_logit_softcapping", None):
            return "logit soft-capping"
        return None

    def __call__(self, batch: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        net = _unwrap(self.model)
        hidden = net.get_decoder()(**batch).last_hidden_state
        targets = labels[:, 1:]
        where = targets != IGNORE_INDEX
        logits = net.get_output_embeddings()(hidden[:, :-1][where])
        return F.cross_entropy(logits.float(), targets[where], reduction="sum")


LossFunction = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]
Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def eval_forward(model: torch.nn.Module, *, task_type: str, device: torch.device, sharded: bool) -> Forward | None:
    """The logits of an evaluation batch through `EncoderClassifierStep` on a CPU (a BERT-family classifier, not
    sharded): the same logits as the stock forward (to 1e-7 on MiniLM-L6), about a fifth less time, since the
    last block computes only the token the pooler reads. None: evaluate with the model's own forward."""
    if device.type != "cpu" or sharded or task_type != "classification" \
            or EncoderClassifierStep.unsupported(model) is not None:
        return None
    return EncoderClassifierStep(model)


def prepare(model: torch.nn.Module, *, task_type: str, device: torch.device, sharded: bool,
            checkpointing: bool) -> tuple[LossFunction | None, str]:
    """Sets ``model`` up for this trial's training steps on a CPU (`use_fast_dropout`, and unless sharded
    `use_persistent_embedding_grad`); returns the fast loss function (None: the model's own forward) and why."""
    if device.type != "cpu":
        return None, "the model's own forward (lmtune's fast forwards are written and measured for CPUs)"
    use_fast_dropout(model)
    if not sharded:  # FSDP owns the sharded weights' gradients
        use_persistent_embedding_grad(model)
    if sharded or checkpointing:
        what = "shard_model" if sharded else "gradient_checkpointing"
        return None, f"the model's own forward ({what} wraps its blocks' forward)"
    if task_type == "classification":
        why = EncoderClassifierStep.unsupported(model)
        if why is None:
            step = EncoderClassifierStep(model)
            return (lambda batch, labels: summed_loss(step(batch), labels, task_type)), \
                "unpadded encoder, first token only in the last block"
        return None, f"the model's own forward ({why})"
    why = CausalLMLoss.unsupported(model)
    if why is None:
        return CausalLMLoss(model), "vocabulary projection at label positions only"
    return None, f"the model's own forward ({why})"
