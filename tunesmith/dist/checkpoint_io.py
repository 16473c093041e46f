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
from torch.distributed.tensor import DTensor

from tunesmith.dist.dcp_safe import SafeLoadPlanner, SafeReader, read_metadata
from tunesmith.dist.expert_parallel import expert_modules, full_experts, global_expert
from tunesmith.utils.errors import ConfigError


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def save_sharded(
    path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Every rank writes its shards of the model (and optimizer) state to directory `path`."""
    state = _global_experts(model, _state(model, optimizer))
    dcp.save(state, checkpoint_id=str(path), no_dist=not _distributed())


def load_sharded(
    path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Load a `save_sharded` checkpoint into `model` (and `optimizer`) on this run's layout: the number of ranks and
    the sharding may differ from the run that saved it. Also loads `dcp_path` for fast sharded start."""
    if not (Path(path) / ".metadata").is_file():
        raise ConfigError(f"dcp_path: {path} is not a torch distributed checkpoint (no .metadata file)")
    state = _state(model, optimizer)
    dcp.load(_global_experts(model, state), no_dist=not _distributed(), **safe_io(path))
    if optimizer is None:
        set_model_state_dict(model, state["model"])
    else:
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


def safe_io(path: str | os.PathLike) -> dict[str, Any]:
    """`dcp.load` arguments that read `path` without unpickling anything but DCP's own metadata classes (the index
    is checked here first, so a refused one is a one-line ConfigError rather than DCP's wrapped error)."""
    read_metadata(Path(path) / ".metadata")
    return {"checkpoint_id": str(path), "storage_reader": SafeReader(path), "planner": SafeLoadPlanner()}


def _state(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    if optimizer is None:
        return {"model": get_model_state_dict(model)}
    model_state, optim_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optim": optim_state}


def _global_experts(model: nn.Module, state: dict[str, Any]) -> dict[str, Any]:
    """`state` for DCP: expert-parallel blocks (parameters and their per-expert optimizer states, not `step`) as
    DTensors of all experts that share storage with `state`'s tensors, so `dcp.load` fills `state`. Copies every
    dict it changes: the optimizer's state dict shares its inner dicts with the live optimizer."""
    experts = expert_modules(model)
    if not experts:
        return state
    model_state = {k: global_expert(v, experts[k]) if k in experts else v for k, v in state["model"].items()}
    if "optim" not in state:
        return {"model": model_state}
    optim = state["optim"]
    per_param = {k: _global_states(v, experts[k]) if k in experts else v for k, v in optim["state"].items()}
    return {"model": model_state, "optim": {**optim, "state": per_param}}


def _global_states(states: dict[str, Any], experts: nn.Module) -> dict[str, Any]:
    return {
        k: global_expert(v, experts) if isinstance(v, torch.Tensor) and v.dim() > 0 else v
        for k, v in states.items()
    }


def is_sharded(model: nn.Module) -> bool:
    """Whether `model` is checkpointed with DCP: DTensor parameters (FSDP2 / tensor parallel) or expert-parallel
    blocks (which every rank holds a different part of, also under DDP)."""
    return any(isinstance(p, DTensor) for p in model.parameters()) or bool(expert_modules(model))


def full_model_state(model: nn.Module, every_rank: bool = False) -> dict[str, torch.Tensor]:
    """The whole, unsharded model state (expert-parallel experts gathered too) on CPU on rank 0 (empty on other
    ranks), or on every rank with `every_rank`; a collective: call on all ranks."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=not every_rank)
    state = get_model_state_dict(model, options=options)
    for name, tensor in full_experts(model).items():
        if name in state:
            state[name] = tensor.cpu()
    return state


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
    load_dcp_model(dcp_path, model)
    model.save_pretrained(str(output_dir))


def load_dcp_model(dcp_path: str | os.PathLike, model: nn.Module) -> None:
    """Load the model part of a sharded checkpoint into `model` (one process, built on CPU from the same config)."""
    if not (Path(dcp_path) / ".metadata").is_file():
        raise ConfigError(f"{dcp_path}: not a torch distributed checkpoint (no .metadata file)")
    state = {"model": model.state_dict()}
    dcp.load(state, no_dist=True, **safe_io(dcp_path))
    model.load_state_dict(state["model"])
