"""Shared fixtures: a tiny random-initialised BERT (2 layers, 64-dim) with a word-level tokenizer,
and a small learnable sentiment CSV, both built in code so tests run in about a second."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

POSITIVE = ["good", "great", "fine", "lovely", "superb", "fun", "moving", "bright"]
NEGATIVE = ["bad", "awful", "dull", "boring", "weak", "poor", "flat", "tired"]
FILLER = ["the", "film", "was", "a", "story", "and", "very", "plot", "actors", "really"]


def make_rows(n: int, seed: int = 0) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.choices(FILLER, k=rng.randint(3, 10)) + rng.choices(POSITIVE if label else NEGATIVE, k=2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def build_tiny_model(folder: Path, *, layers: int = 2, hidden: int = 64) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *POSITIVE, *NEGATIVE, *FILLER])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]")
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64,
                        pad_token_id=0)
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import csv

    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(make_rows(400))
    return path


def run_lmtune(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``python -m lmtune ARGS`` from the project root, output captured."""
    return subprocess.run([sys.executable, "-m", "lmtune", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).parents[1])


def set_args(overrides: list[str]) -> list[str]:
    """``--set`` options for the command line, one per override."""
    return [a for o in overrides for a in ("--set", o)]


def tiny_overrides(model: Path, data: Path, study_dir: Path) -> list[str]:
    """--set overrides for a study that runs in seconds on the tiny model and data."""
    return [f"study.dir={study_dir}", f"task.model={model}", f"task.dataset={data}",
            "task.train_size=96", "task.validation_size=48", "task.test_size=48", "task.max_length=16",
            "training.batch_size=16", "training.max_steps=6", "training.eval_every=3",
            "training.learning_rate=1e-3", "search.n_startup_trials=2", TINY_SPACE]


# The space the tiny studies search: wide on purpose (SGD, learning rates up to the tiny model's 1e-3 default),
# and fixed here rather than taken from examples/quickstart.yaml, whose space is tuned for the real demo.
TINY_SPACE = ("search.space={learning_rate: {type: float, low: 1.0e-6, high: 1.0e-3, log: true}, "
              "batch_size: {type: categorical, choices: [8, 16, 32, 64]}, "
              "weight_decay: {type: float, low: 0.0, high: 0.1}, "
              "optimizer: {type: categorical, choices: [adamw, sgd]}, "
              "momentum: {type: float, low: 0.8, high: 0.99, when: {optimizer: sgd}}}")


# --- causal LM: a tiny random Llama (2 layers, 64-dim) with a character tokenizer and a chat template ---
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_llama(folder: Path, *, chat_template: str | None = CHAT_TEMPLATE) -> Path:
    import string

    import torch
    from tokenizers import Tokenizer, decoders
    from tokenizers.models import BPE
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = ["<unk>", *dict.fromkeys(string.printable)]
    tok = Tokenizer(BPE(vocab={c: i for i, c in enumerate(chars)}, merges=[], unk_token="<unk>"))
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>",
                                   bos_token="<|im_start|>", pad_token="<|im_end|>")
    if chat_template:
        fast.chat_template = chat_template
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=128, max_position_embeddings=256,
                         pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id,
                         bos_token_id=fast.bos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def make_dialogs(n: int, seed: int = 0) -> list[dict[str, object]]:
    """Learnable chats: the assistant repeats the user's words in reverse order (1 or 2 exchanges)."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for _ in range(n):
        messages = []
        for _ in range(rng.randint(1, 2)):
            words = rng.choices(POSITIVE + NEGATIVE, k=rng.randint(1, 3))
            messages += [{"role": "user", "content": "say " + " ".join(words)},
                         {"role": "assistant", "content": " ".join(reversed(words))}]
        rows.append({"messages": messages})
    return rows


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import json

    path = tmp_path_factory.mktemp("chat") / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_dialogs(160)))
    return path


def llm_overrides(model: Path, data: Path, study_dir: Path) -> list[str]:
    """--set overrides for a LoRA causal-LM study that runs in seconds on the tiny Llama and chats."""
    return [f"study.dir={study_dir}", "task.type=causal_lm", f"task.model={model}", f"task.dataset={data}",
            "task.train_size=64", "task.validation_size=16", "task.test_size=16", "task.max_length=96",
            "training.batch_size=8", "training.max_steps=4", "training.eval_every=2", "training.dropout=null",
            "training.learning_rate=1e-3", "training.lora_enabled=true", "search.n_startup_trials=2"]


# The real engines that .ci/run starts (PostgreSQL on loopback, a two-node Ray cluster). Tests that use
# them are marked `services` and skipped where these variables are not set.
@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("LMTUNE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("LMTUNE_TEST_POSTGRES_URL not set (.ci/run starts PostgreSQL)")
    return url


@pytest.fixture(scope="session")
def ray_address() -> str:
    address = os.environ.get("LMTUNE_TEST_RAY_ADDRESS")
    if not address:
        pytest.skip("LMTUNE_TEST_RAY_ADDRESS not set (.ci/run starts a two-node Ray cluster)")
    return address


@pytest.fixture
def study_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


# Cases of parametrized tests that take more than about 8 s on 2 cores (docs/development.md) while the test's
# other cases are quick: marked `slow` here, by the start of their id, since a decorator marks every case
SLOW_CASES = (
    "tests/test_imports.py::test_the_transitive_check_fails_on_a_module_that_breaks_a_rule[training-",
    "tests/execution/test_backend_contract.py::test_the_backend_keeps_the_contract[local-warm-check_runs_to_its_end]",
    "tests/execution/test_backend_contract.py::test_the_backend_keeps_the_contract[local-warm-check_kill]",
    "tests/execution/test_backend_contract.py::test_the_backend_keeps_the_contract[local-warm-check_checkpoints]",
    "tests/cli/test_cli.py::test_bad_input_exits_2_with_one_message[task.dataset=/nowhere/",
    "tests/cli/test_cli.py::test_bad_input_exits_2_with_one_message[task.label_column=sentiment-",
    "tests/cli/test_no_tracebacks.py::test_broken_arguments_are_one_message[args9]",
    "tests/cli/test_no_tracebacks.py::test_broken_arguments_are_one_message[args11]",
    "tests/training/test_trainer_contract.py::test_every_trainer_keeps_the_contract[real-check_pauses_and_resumes]",
    "tests/training/test_trainer_contract.py::test_lmtune_trainer_shows_progress_after_its_first_step[real]",
    "tests/training/test_trainer_contract.py::test_lmtune_trainer_evaluates_only_the_units_its_scheduler_needs[real]",
)


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The `SLOW_CASES` are marked `slow`; tests marked `gpu` need a CUDA GPU: skipped where none is visible (CI
    has none)."""
    for item in items:
        if item.nodeid.startswith(SLOW_CASES):
            item.add_marker(pytest.mark.slow)
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible); run `pytest -m gpu` on a GPU machine")
    for item in gpu_items:
        item.add_marker(skip)


def interrupting_executor(after: int, **kw: Any) -> Any:
    """A simulated backend whose ``acquire`` is interrupted (Ctrl-C) once ``after`` trials were launched."""
    from lmtune.execution.simulated import SimulatedExecutor

    class Interrupting(SimulatedExecutor):
        def __init__(self) -> None:
            super().__init__(**kw)
            self.after = after

        def acquire(self) -> int:
            if self.after == 0:
                raise KeyboardInterrupt
            self.after -= 1
            return super().acquire()

    return Interrupting()
