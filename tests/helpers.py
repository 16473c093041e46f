"""Shared test fixtures: the shipped tiny tokenizer, tiny random-init models, small file writers.

Import from a test file as `from helpers import tiny_model, tiny_tokenizer` (pytest puts `tests/` on sys.path).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tunesmith.utils.builtin import resolve_builtin

TINY_DIR = resolve_builtin("builtin:tiny")
DEMO_DIR = resolve_builtin("builtin:demo", field="dataset_dir")
ARCHS = ("qwen2", "llama", "qwen3_moe")

_COMMON = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 512,
}
_PER_ARCH: dict[str, dict[str, Any]] = {
    "qwen2": {},
    "llama": {},
    "qwen3_moe": {
        "head_dim": 16,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 64,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
    },
}


@functools.cache
def _load_tokenizer() -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(TINY_DIR)


def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """The shipped byte-level BPE tokenizer (ChatML template, eos `<|im_end|>`, pad `<|endoftext|>`, no BOS).

    Loaded once; each call returns a private copy, so a test may change it freely."""
    return copy.deepcopy(_load_tokenizer())


def tiny_vocab_size() -> int:
    """The tokenizer length rounded up to a multiple of 64 (the vocab of every tiny model)."""
    return -(-len(_load_tokenizer()) // 64) * 64


def tiny_model(
    arch: str = "qwen2", *, vocab_size: int | None = None, seed: int = 0, **overrides: Any
) -> PreTrainedModel:
    """A random-init fp32 causal LM: hidden 64, 2 layers, 4 heads, 2 KV heads, intermediate 128 (qwen3_moe: 4
    experts, top-2, expert intermediate 64). `overrides` are config fields (e.g. `attn_implementation="eager"`).
    Returned in eval mode (call `.train()` for dropout). The global RNG is left untouched; the same seed gives
    the same weights."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    tok = _load_tokenizer()
    fields = {
        **_COMMON,
        **_PER_ARCH[arch],
        "vocab_size": vocab_size or tiny_vocab_size(),
        "bos_token_id": None,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        **overrides,
    }
    config = AutoConfig.for_model(arch, **fields)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


def save_tiny_model(path: str | Path, arch: str = "qwen2", **kwargs: Any) -> Path:
    """Save `tiny_model(arch, **kwargs)` and the tiny tokenizer as a Hugging Face model directory."""
    path = Path(path)
    tiny_model(arch, **kwargs).save_pretrained(path)
    _load_tokenizer().save_pretrained(path)
    return path


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write one JSON object per line (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Write one JSON document (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2))
    return path


# The TrainingArguments every transformers/TRL reference run shares: one log row per step, the data in order, no
# saving or reporting, fp32 on the CPU.
REFERENCE_ARGS = {
    "logging_steps": 1,
    "train_sampling_strategy": "sequential",
    "report_to": "none",
    "save_strategy": "no",
    "use_cpu": True,
}
