"""Where a training process computes: `cuda:LOCAL_RANK` when CUDA is available (unless `use_cpu`), else the CPU;
how micro-batches get there (pinned memory, non-blocking copies on CUDA); the CUDA defaults (fused AdamW, as
transformers uses); and the peak accelerator memory for the step log (`peak_gpu_mb`)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from tunesmith.utils import dist_env

logger = logging.getLogger("tunesmith")
FUSED_DEFAULT = "adamw_torch_fused"


def training_device(use_cpu: bool = False) -> torch.device:
    """This process's device: `cuda:LOCAL_RANK` on a CUDA machine (each torchrun process its own GPU), else CPU."""
    if use_cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", dist_env.local_rank())


def bind_process_to_device(device: torch.device) -> None:
    """Make `device` the current CUDA device, so collectives, DDP and FSDP2 allocate on this rank's own GPU."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def apply_cuda_defaults(cfg: Any, device: torch.device) -> None:
    """On CUDA, an unset `optim` becomes fused AdamW (transformers' default); the same arithmetic in one kernel."""
    if device.type == "cuda" and not cfg.is_set("optim") and cfg.train.optim == "adamw_torch":
        cfg.train.optim = FUSED_DEFAULT
        logger.info("optim: %s (the CUDA default; set optim to choose another)", FUSED_DEFAULT)


def to_device(
    batch: dict[str, torch.Tensor], device: torch.device, pin: bool = True
) -> dict[str, torch.Tensor]:
    """`batch` on `device`; to CUDA from pinned host memory with non-blocking copies (`dataloader_pin_memory`)."""
    if device.type != "cuda":
        return {k: v.to(device) for k, v in batch.items()}
    moved = {}
    for key, value in batch.items():
        if pin and value.device.type == "cpu" and not value.is_pinned():
            value = value.pin_memory()
        moved[key] = value.to(device, non_blocking=pin)
    return moved


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak memory allocated on `device` since the start (MiB), for CUDA; None elsewhere."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
