"""Sharded checkpoints with torch distributed checkpoint (DCP), resumable on any number of ranks, and HF export."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from tunesmith.utils.errors import ConfigError


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def save_sharded(
    path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Every rank writes its shards of the model (and optimizer) state to directory `path`."""
    state = _state(model, optimizer)
    dcp.save(state, checkpoint_id=str(path), no_dist=not _distributed())


def load_sharded(
    path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Load a `save_sharded` checkpoint into `model` (and `optimizer`) on this run's layout: the number of ranks and
    the sharding may differ from the run that saved it. Also loads `dcp_path` for fast sharded start."""
    if not (Path(path) / ".metadata").is_file():
        raise ConfigError(f"dcp_path: {path} is not a torch distributed checkpoint (no .metadata file)")
    state = _state(model, optimizer)
    dcp.load(state, checkpoint_id=str(path), no_dist=not _distributed())
    if optimizer is None:
        set_model_state_dict(model, state["model"])
    else:
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


def _state(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    if optimizer is None:
        return {"model": get_model_state_dict(model)}
    model_state, optim_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optim": optim_state}


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole, unsharded model state on CPU on rank 0 (empty on other ranks); a collective: call on all ranks."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def export_hf(model: nn.Module, output_dir: str | os.PathLike, *, is_main: bool | None = None) -> None:
    """Gather a sharded (FSDP2/TP/DDP) `transformers` model and write it with `save_pretrained` from rank 0."""
    state = full_model_state(model)
    if is_main is None:
        is_main = not _distributed() or dist.get_rank() == 0
    if is_main:
        target = getattr(model, "module", model)
        target.save_pretrained(str(output_dir), state_dict=state)
    if _distributed():
        dist.barrier()


def convert_dcp_to_hf(dcp_path: str | os.PathLike, model: nn.Module, output_dir: str | os.PathLike) -> None:
    """Offline conversion (one process): load the model part of a sharded checkpoint into `model` (built on CPU from
    the same config) and write it as a `transformers` model directory."""
    if not (Path(dcp_path) / ".metadata").is_file():
        raise ConfigError(f"{dcp_path}: not a torch distributed checkpoint (no .metadata file)")
    state = {"model": model.state_dict()}
    dcp.load(state, checkpoint_id=str(dcp_path), no_dist=True)
    model.load_state_dict(state["model"])
    model.save_pretrained(str(output_dir))
