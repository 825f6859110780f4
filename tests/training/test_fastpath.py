"""The CPU fast forwards compute what the stock forward computes (logits, losses, gradients), in less work,
and a trial uses them (or says why not); ``LMTUNE_FAST_CPU=0`` turns them off."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_lm_training import lm_cache, lm_spec  # noqa: F401  (module fixture)
from test_loop import cache, make_spec, run  # noqa: F401  (module fixture)

from lmtune.protocol import TrialSpec
from lmtune.training import fastpath
from lmtune.training.evaluate import summed_loss
from lmtune.training.fastpath import (
    FAST_CPU,
    CausalLMLoss,
    EncoderClassifierStep,
    FastDropout,
    PersistentGradEmbedding,
    keep_mask,
    prepare,
    use_fast_dropout,
    use_persistent_embedding_grad,
)
from lmtune.training.session import setup


def tiny_bert(dropout: float = 0.0, labels: int = 3) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                        num_labels=labels, pad_token_id=0)
    return BertForSequenceClassification(config).train()


def padded_batch(lengths: list[int], width: int = 9) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 100, (len(lengths), width))
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    worst = max((a[n] - b[n]).abs().max().item() for n in a)
    assert worst < tol, worst


def test_keep_mask_keeps_one_minus_p_and_scales_by_its_inverse() -> None:
    torch.manual_seed(0)
    for p in (0.05, 0.1, 0.5):
        keep, scale = keep_mask((1000, 1000), p, torch.device("cpu"))
        assert keep.dtype == torch.bool and keep.shape == (1000, 1000)
        assert keep.float().mean().item() == pytest.approx(1 - p, abs=2e-3)
        assert scale == pytest.approx(1 / (1 - p), rel=1e-4)
    torch.manual_seed(1)
    first = keep_mask((64, 64), 0.1, torch.device("cpu"))[0]
    torch.manual_seed(1)
    assert torch.equal(first, keep_mask((64, 64), 0.1, torch.device("cpu"))[0])  # seeded: the same masks


def test_dropout_keeps_the_expectation_and_its_gradient_is_the_mask() -> None:
    x = torch.ones(500, 400, requires_grad=True)
    y = fastpath.dropout(x, 0.1, True)
    assert y.mean().item() == pytest.approx(1.0, abs=5e-3)
    assert 0.09 < (y == 0).float().mean().item() < 0.11
    y.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, y.detach())  # d(x*m)/dx = m
    assert fastpath.dropout(x, 0.1, False) is x and fastpath.dropout(x, 0.0, True) is x


def test_use_fast_dropout_swaps_every_dropout_and_keeps_p_live() -> None:
    model = tiny_bert(dropout=0.1)
    plain = sum(type(m) is torch.nn.Dropout for m in model.modules())
    assert use_fast_dropout(model) == plain > 0
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    layer = model.bert.encoder.layer[0].output.dropout
    assert isinstance(layer, FastDropout) and layer.p == 0.1
    x = torch.ones(200, 200)
    assert (layer(x) == 0).float().mean().item() == pytest.approx(0.1, abs=0.01)
    layer.p = 0.5  # what set_hyperparameters does for a LoRA dropout: takes effect at once
    assert (layer(x) == 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    model.eval()
    assert torch.equal(layer(x), x)


@pytest.mark.parametrize("lengths", [[9, 3, 5, 1, 7], [4, 4], [1]])
def test_encoder_step_gives_the_models_logits_and_gradients(lengths: list[int]) -> None:
    model = tiny_bert()
    batch = padded_batch(lengths)
    stock = model(**batch).logits
    stock.square().sum().backward()
    expected = grads(model)
    model.zero_grad(set_to_none=True)
    fast = EncoderClassifierStep(model)(batch)
    assert torch.allclose(fast, stock, atol=1e-5)
    fast.square().sum().backward()
    assert_same_grads(expected, grads(model))


def test_evaluation_takes_the_fast_forward_and_scores_what_the_stock_forward_scores(
        tiny_model: Path, cache: Path, tmp_path: Path) -> None:  # noqa: F811 (cache: test_loop's module fixture)
    """Evaluation through `fastpath.eval_forward` (a dropout model in eval mode): the stock forward's logits, so
    the same loss, accuracy and F1; LMTUNE_FAST_CPU=0 evaluates with the stock forward."""
    model = tiny_bert(dropout=0.3).eval()
    batch = padded_batch([9, 4, 6, 2])
    forward = fastpath.eval_forward(model, task_type="classification", device=torch.device("cpu"), sharded=False)
    assert forward is not None
    with torch.inference_mode():
        assert torch.allclose(forward(batch), model(**batch).logits, atol=1e-6)
    assert fastpath.eval_forward(model, task_type="causal_lm", device=torch.device("cpu"), sharded=False) is None
    session = setup(make_spec(tiny_model, cache, tmp_path))
    assert session.eval_logits is not None
    fast = session.evaluate()
    session.eval_logits = None
    stock = session.evaluate()
    assert fast.keys() == stock.keys()
    assert all(abs(fast[k] - stock[k]) < 1e-5 for k in fast), (fast, stock)


def test_encoder_step_gives_the_models_logits_for_a_sentence_pair() -> None:
    """A pair task's batches carry token_type_ids: the fast forward embeds them as the model's own does."""
    model = tiny_bert()
    batch = padded_batch([9, 5, 7])
    types = torch.zeros_like(batch["input_ids"])
    for row, (start, end) in enumerate([(4, 9), (2, 5), (6, 7)]):
        types[row, start:end] = 1
    batch["token_type_ids"] = types
    stock = model(**batch).logits
    assert not torch.allclose(stock, model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits)
    stock.square().sum().backward()
    expected = grads(model)
    model.zero_grad(set_to_none=True)
    fast = EncoderClassifierStep(model)(batch)
    assert torch.allclose(fast, stock, atol=1e-5)
    fast.square().sum().backward()
    assert_same_grads(expected, grads(model))


def test_encoder_step_under_lora_and_on_left_padding() -> None:
    from lmtune.training.lora import apply_lora

    model = apply_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, target_modules=["query", "value"],
                       task_type="classification", quantized=False)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)  # B starts at zero: make the adapters count
    assert EncoderClassifierStep.unsupported(model) is None
    batch = padded_batch([9, 2, 6])
    stock = model(**batch).logits
    stock.sum().backward()
    expected = grads(model)
    model.zero_grad(set_to_none=True)
    fast = EncoderClassifierStep(model)(batch)
    fast.sum().backward()
    assert torch.allclose(fast, stock, atol=1e-5)
    assert_same_grads(expected, grads(model))
    left = {k: v.flip(1) for k, v in batch.items()}  # left padding: the stock forward runs, the same logits
    assert torch.allclose(EncoderClassifierStep(model)(left), model(**left).logits, atol=1e-6)


def test_encoder_step_with_dropout_trains_differently_but_alike() -> None:
    """With dropout on, the fast step draws other masks than torch's, so single forwards differ; averaged
    over many draws both give the same logits (the same distribution)."""
    model = tiny_bert(dropout=0.1)
    use_fast_dropout(model)
    batch = padded_batch([9, 3, 5])
    step = EncoderClassifierStep(model)
    torch.manual_seed(0)
    one = step(batch)
    assert not torch.allclose(one, step(batch))  # dropout is on: two draws differ
    with torch.no_grad():
        fast = torch.stack([step(batch) for _ in range(400)]).mean(0)
        stock = torch.stack([model(**batch).logits for _ in range(400)]).mean(0)
        model.eval()
        plain = model(**batch).logits
    assert (fast - stock).abs().max().item() < 0.25 * (stock - plain).abs().max().item() + 0.01


def test_persistent_embedding_grad_is_the_gradient_in_a_kept_buffer() -> None:
    model = tiny_bert()
    batches = [padded_batch([9, 3]), padded_batch([5, 5, 1])]
    for b in batches:  # two micro-batches accumulate
        model(**b).logits.sum().backward()
    expected = grads(model)
    model.zero_grad(set_to_none=True)
    assert use_persistent_embedding_grad(model)
    emb = model.bert.embeddings.word_embeddings
    assert isinstance(emb, PersistentGradEmbedding)
    buffers = []
    for _ in range(2):  # two steps: the optimizer's zero_grad(set_to_none=True) in between
        for b in batches:
            model(**b).logits.sum().backward()
        assert_same_grads(expected, grads(model))
        assert emb.weight.grad is not None
        buffers.append(emb.weight.grad.data_ptr())
        assert emb.weight.grad[0].abs().max().item() == 0.0  # the padding row gets nothing, as torch's
        model.zero_grad(set_to_none=True)
    assert buffers[0] == buffers[1]  # the same buffer: no fresh vocabulary-sized tensor each step
    assert list(model.state_dict()) == list(tiny_bert().state_dict())  # saves as before


def tiny_llama_lm(tie: bool) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, tie_word_embeddings=tie)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                                target_modules=["q_proj", "v_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model.train()


def test_causal_lm_loss_projects_only_label_positions_and_gives_the_same_loss() -> None:
    model = tiny_llama_lm(tie=True)
    ids = torch.randint(1, 120, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[:, :4] = -100  # a prompt without loss
    batch = {"input_ids": ids, "attention_mask": mask}
    stock = summed_loss(model(**batch).logits, labels, "causal_lm")
    stock.backward()
    expected = grads(model)
    model.zero_grad(set_to_none=True)
    head = model.base_model.model.lm_head
    rows: list[int] = []
    hook = head.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))
    fast = CausalLMLoss(model)(batch, labels)
    hook.remove()
    assert fast.item() == pytest.approx(stock.item(), rel=1e-5)
    assert rows == [int((labels[:, 1:] != -100).sum())]  # the vocabulary projection saw only those
    fast.backward()
    assert_same_grads(expected, grads(model))


def test_prepare_says_why_it_keeps_the_stock_forward() -> None:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    cpu = torch.device("cpu")
    kw = {"device": cpu, "sharded": False, "checkpointing": False}
    assert prepare(tiny_bert(), task_type="classification", **kw)[0] is not None
    assert prepare(tiny_llama_lm(tie=False), task_type="causal_lm", **kw)[0] is not None
    gpt2 = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    fn, why = prepare(gpt2, task_type="classification", **kw)
    assert fn is None and "GPT2ForSequenceClassification" in why
    fn, why = prepare(tiny_bert(), task_type="classification", device=cpu, sharded=True, checkpointing=False)
    assert fn is None and "shard_model" in why
    fn, why = prepare(tiny_bert(), task_type="classification", device=cpu, sharded=False, checkpointing=True)
    assert fn is None and "gradient_checkpointing" in why
    tied = tiny_llama_lm(tie=True).base_model.model
    for p in tied.parameters():
        p.requires_grad_(True)
    assert not use_persistent_embedding_grad(tied)  # tied to the output projection: left alone


def test_a_trial_trains_the_same_weights_with_and_without_the_fast_forward(
        tiny_model: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Dropout off, so both runs compute one function: the same curve; the trial records which ran.
    Dropout on: the fast run draws other masks, so the curves differ, and it still learns."""
    results = {}
    for fast in ("1", "0"):
        monkeypatch.setenv(FAST_CPU, fast)
        result, events = run(make_spec(tiny_model, cache, tmp_path / fast, dropout=0.0, attention_dropout=0.0))
        start = next(e for e in events if e["event"] == "start")
        assert start["forward"] == result["forward"]
        results[fast] = result
    assert results["1"]["forward"].startswith("unpadded encoder")
    assert results["0"]["forward"] == f"the model's own forward ({FAST_CPU}=0)"
    assert results["1"]["metrics"]["eval_loss"] == pytest.approx(results["0"]["metrics"]["eval_loss"], abs=1e-4)
    curves = {}
    for fast in ("1", "0"):
        monkeypatch.setenv(FAST_CPU, fast)
        spec = make_spec(tiny_model, cache, tmp_path / f"d{fast}", dropout=0.1)
        result, events = run(TrialSpec(**{**spec.__dict__, "total_examples": 768}))
        curves[fast] = [e["metrics"]["eval_loss"] for e in events if e["event"] == "eval"]
    assert curves["1"] != curves["0"]
    assert curves["1"][-1] < curves["1"][0] - 0.1 and curves["0"][-1] < curves["0"][0] - 0.1  # both learn


def test_a_causal_lm_trial_uses_the_label_positions_loss(tiny_llama: Path, lm_cache: Path,  # noqa: F811
                                                          tmp_path: Path) -> None:
    s = setup(lm_spec(tiny_llama, lm_cache, tmp_path, lora_enabled=True, lora_r=4, lora_alpha=8.0,
                      lora_dropout=0.1))
    assert s.forward == "vocabulary projection at label positions only" and s.fast_loss is not None
    assert any(isinstance(m, FastDropout) for m in s.model.modules())
