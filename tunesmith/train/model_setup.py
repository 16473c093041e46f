"""What the trainer does around the model: seeds, torch.compile, cache release, out-of-memory detection.

Activation checkpointing and NEFTune are applied by `tunesmith.model.prepare_for_training`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import transformers

logger = logging.getLogger("tunesmith")


def seed_everything(train: Any) -> None:
    """Seed Python, NumPy and torch from `seed`; `full_determinism` also forces deterministic algorithms."""
    if train.full_determinism:
        transformers.enable_full_determinism(train.seed)
    else:
        transformers.set_seed(train.seed)


def maybe_compile(model: torch.nn.Module, train: Any) -> None:
    """`torch_compile` (or a backend/mode, which turn it on as in HF): compile the model in place."""
    if not (train.torch_compile or train.torch_compile_backend or train.torch_compile_mode):
        return
    mode = None if train.torch_compile_mode in (None, "default") else train.torch_compile_mode
    logger.info(
        "compiling the model (backend %s, mode %s); the first step is slow", train.torch_compile_backend, mode
    )
    model.compile(backend=train.torch_compile_backend or "inductor", mode=mode)


def empty_cache(device: torch.device) -> None:
    """Release cached accelerator memory (`torch_empty_cache_steps`); on CPU, run the garbage collector."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocator out-of-memory error on any device."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )
