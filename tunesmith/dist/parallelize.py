"""Apply the configured parallelisms to a model in a fixed order: tensor → expert → context → FSDP2 or DDP."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from tunesmith.config.plugins import DIST
from tunesmith.dist.ddp import wrap_ddp
from tunesmith.dist.expert_parallel import apply_expert_parallel, check_fsdp_modules
from tunesmith.dist.mesh import (
    ParallelSizes,
    build_mesh,
    expert_mesh,
    fsdp_mesh,
    grad_sync_mesh,
    sizes_from_config,
)
from tunesmith.dist.tensor_parallel import apply_tensor_parallel
from tunesmith.dist.ulysses import apply_ulysses
from tunesmith.utils.errors import ConfigError


@dataclasses.dataclass
class Parallelized:
    """The model to train and where this rank sits.

    Rows of a global batch go to data-parallel rank `dp_rank` of `sizes.dp`; with context parallel, each of the
    `sizes.cp` ranks takes one slice of the sequence (`tunesmith.dist.ulysses.split_sequence`). Multiply the loss
    (token-loss sum / global valid tokens) by `loss_scale` before backward: the engines average gradients."""

    model: nn.Module
    sizes: ParallelSizes
    mesh: DeviceMesh
    dp_rank: int
    cp_rank: int
    loss_scale: int


def parallelize(model: nn.Module, cfg: Any, world_size: int) -> Parallelized:
    """Apply tp_size/ep_size/cp_size and the `dist_config` engine (fsdp2; DDP when none) from `cfg`.

    Activation checkpointing and adapters are applied before (model layer); DeepSpeed is built by its plugin."""
    spec = cfg.train.dist_config
    engine = spec.name if spec is not None else "ddp"
    if engine == "deepspeed":
        raise ConfigError(
            "dist_config: deepspeed wraps model and optimizer together; build it with its plugin"
        )
    par = cfg.parallel
    sizes = sizes_from_config(cfg, world_size)
    device_type = "cuda" if torch.cuda.is_available() else "cpu"  # FSDP2 allocates on the mesh's device
    mesh = build_mesh(sizes, device_type)
    if sizes.tp > 1:
        apply_tensor_parallel(model, mesh["tp"], par.tp_colwise, par.tp_rowwise)
    expert_names: list[str] = []
    if sizes.ep > 1:
        ep = expert_mesh(sizes, device_type)
        if ep["ep_fsdp"].size() > 1:
            check_fsdp_modules(model, par.ep_fsdp_modules, par.ep_modules)
        replicate = ep["ep_replicate"].get_group() if ep["ep_replicate"].size() > 1 else None
        expert_names = apply_expert_parallel(
            model, ep["ep"].get_group(), par.ep_modules, par.ep_dispatcher, replicate, mesh=ep
        )
    if sizes.cp > 1:
        apply_ulysses(model, mesh["cp"].get_group())
    sync = grad_sync_mesh(mesh, sizes)
    if engine == "fsdp2":
        skip = {p for n, p in model.named_parameters() if n in set(expert_names)}
        model = DIST.get("fsdp2").factory(model, cfg, fsdp_mesh(mesh, sizes), spec.params, skip_params=skip)
    elif sync.size() > 1:
        model = wrap_ddp(
            model,
            find_unused_parameters=par.ddp_find_unused_parameters,
            bucket_cap_mb=par.ddp_bucket_cap_mb,
            broadcast_buffers=par.ddp_broadcast_buffers,
            mesh=sync,
            ignore_parameters=expert_names,
        )
    return Parallelized(
        model, sizes, mesh, mesh["dp"].get_local_rank(), mesh["cp"].get_local_rank(), sync.size()
    )
