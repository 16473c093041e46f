"""Test session setup: offline, single-threaded by default; shared tokenizer and tiny model fixtures."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import save_tiny_model, tiny_tokenizer  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def tokenizer():
    """A private copy of the shipped tiny tokenizer."""
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny Qwen2 model + tokenizer directory (seed 0), shared by the session: do not modify it."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny_qwen2"))


@pytest.fixture(autouse=True)
def _float32_default_dtype():
    """Every test starts with torch's default dtype float32: a test that changes it (or code under test that
    leaks it, e.g. a model build interrupted inside transformers' dtype context) must not change the next one's
    numbers (the planner's autograd measurement read half the bytes after such a leak)."""
    torch.set_default_dtype(torch.float32)
    yield
