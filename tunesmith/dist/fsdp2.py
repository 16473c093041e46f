"""FSDP2 (`fully_shard`) by module patterns, mixed precision, CPU offload, prefetch, and loading from rank 0."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import (
    CPUOffloadPolicy,
    FSDPModule,
    MixedPrecisionPolicy,
    OffloadPolicy,
    fully_shard,
)

from tunesmith.dist.patterns import match_modules
from tunesmith.utils.errors import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def to_dtype(name: str, key: str) -> torch.dtype:
    """`bf16`/`fp16`/`fp32` (also `bfloat16`, `float16`, `float32`) -> torch dtype; ConfigError names `key`."""
    aliases = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}
    dtype = DTYPES.get(aliases.get(name, name))
    if dtype is None:
        raise ConfigError(f"{key}: unknown dtype {name!r}; allowed: bf16, fp16, fp32")
    return dtype


def mixed_precision_policy(param_dtype: str = "fp32", reduce_dtype: str = "fp32") -> MixedPrecisionPolicy:
    """Compute in `param_dtype`, reduce gradients in `reduce_dtype`; sharded master weights stay fp32."""
    param = to_dtype(param_dtype, "param_dtype")
    reduce = to_dtype(reduce_dtype, "reduce_dtype")
    if param == torch.float32 and reduce == torch.float32:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=param, reduce_dtype=reduce)


def offload_policy(offload_params: bool, pin_memory: bool = True) -> OffloadPolicy:
    """CPUOffloadPolicy when `offload_params`; memory is pinned only when a GPU exists (pinning needs CUDA)."""
    if not offload_params:
        return OffloadPolicy()
    return CPUOffloadPolicy(pin_memory=pin_memory and torch.cuda.is_available())


def load_placement_fn(path: str | None) -> Callable | None:
    """Import `shard_placement_fn` given as `package.module:function` (param -> Shard(dim) or None)."""
    if not path:
        return None
    module_name, _, attr = path.partition(":")
    if not attr:
        raise ConfigError(f"shard_placement_fn: expected 'package.module:function', got {path!r}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"shard_placement_fn: cannot import {path!r}: {exc}") from exc
    if not callable(fn):
        raise ConfigError(f"shard_placement_fn: {path!r} is not callable")
    return fn


def apply_fsdp2(
    model: nn.Module,
    mesh: DeviceMesh,
    *,
    modules: Sequence[str] = ("model.layers.{}", "model.embed_tokens", "lm_head"),
    ignored_modules: Sequence[str] = (),
    reshard_after_forward: bool = True,
    shard_placement_fn: str | None = None,
    param_dtype: str = "fp32",
    reduce_dtype: str = "fp32",
    offload_params: bool = False,
    pin_memory: bool = True,
    num_to_forward_prefetch: int = 1,
    num_to_backward_prefetch: int = 1,
    skip_params: set[nn.Parameter] | None = None,
) -> nn.Module:
    """Shard each module matching `modules` (`fsdp_modules`, names of the base model under a PEFT wrapper), then the
    root. Parameters of `ignored_modules` stay whole on every rank and their gradients are averaged here;
    `skip_params` (expert-parallel weights) are left entirely to their owner. Returns the same (now FSDP) model."""
    if not modules:
        raise ConfigError("fsdp_modules: must list at least one module pattern, e.g. model.layers.{}")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    ignored = {p for _, m in match_modules(base, ignored_modules, "ignored_modules") for p in m.parameters()}
    skipped = set(skip_params or ())
    kwargs = {
        "mesh": mesh,
        "reshard_after_forward": reshard_after_forward,
        "shard_placement_fn": load_placement_fn(shard_placement_fn),
        "mp_policy": mixed_precision_policy(param_dtype, reduce_dtype),
        "offload_policy": offload_policy(offload_params, pin_memory),
    }
    units = [m for _, m in match_modules(base, modules, "fsdp_modules") if m is not base]
    for group in _tied_groups(sorted(units, key=_depth(base), reverse=True)):
        own = {p for unit in group for p in unit.parameters() if p in ignored or p in skipped}
        fully_shard(group if len(group) > 1 else group[0], ignored_params=own or None, **kwargs)
    fully_shard(model, ignored_params=(ignored | skipped) or None, **kwargs)
    _set_prefetch(
        [u for u in units if isinstance(u, FSDPModule)], num_to_forward_prefetch, num_to_backward_prefetch
    )
    _average_grads_of(ignored, mesh)
    return model


def _average_grads_of(params: set[nn.Parameter], mesh: DeviceMesh) -> None:
    """FSDP2 neither shards nor reduces ignored parameters: average their gradients over the data-parallel ranks
    after each backward so the replicas stay equal."""
    if not params:
        return
    group = (mesh if mesh.ndim == 1 else mesh._flatten()).get_group()
    size = dist.get_world_size(group)

    def hook(param: torch.Tensor) -> None:
        dist.all_reduce(param.grad, group=group)
        param.grad.div_(size)

    for param in params:
        if param.requires_grad:
            param.register_post_accumulate_grad_hook(hook)


def _tied_groups(units: list[nn.Module]) -> list[list[nn.Module]]:
    """`units` in order, with units that share a parameter without nesting (tied input and output embeddings)
    joined into one group: FSDP2 must shard a shared parameter in one group."""
    groups: list[list[nn.Module]] = []
    for unit in units:
        params = set(unit.parameters())
        tied = next((g for g in groups if any(_shares(unit, params, other) for other in g)), None)
        if tied is None:
            groups.append([unit])
        else:
            tied.append(unit)
    return groups


def _shares(unit: nn.Module, params: set[nn.Parameter], other: nn.Module) -> bool:
    nested = any(m is other for m in unit.modules()) or any(m is unit for m in other.modules())
    return not nested and any(p in params for p in other.parameters())


def _depth(model: nn.Module) -> Callable[[nn.Module], int]:
    depth = {id(m): name.count(".") for name, m in model.named_modules()}
    return lambda module: depth[id(module)]


def _set_prefetch(units: list[FSDPModule], forward: int, backward: int) -> None:
    """Explicit prefetch of the next `forward` units in forward and the previous `backward` units in backward."""
    if forward < 0 or backward < 0:
        raise ConfigError("num_to_forward_prefetch/num_to_backward_prefetch: must be >= 0")
    for i, unit in enumerate(units):
        if forward > 1:
            unit.set_modules_to_forward_prefetch(units[i + 1 : i + 1 + forward])
        if backward > 1:
            unit.set_modules_to_backward_prefetch(units[max(0, i - backward) : i][::-1])


def load_full_state_from_rank0(model: nn.Module, full_state: dict[str, torch.Tensor] | None) -> None:
    """`init_model_with_meta_device`: rank 0 passes the full state dict of the loaded model, the other ranks built
    `model` on the meta device and pass None; every rank ends with its shard of rank 0's weights and buffers."""
    if any(p.is_meta for p in model.parameters()) or any(b.is_meta for b in model.buffers()):
        model.to_empty(device=_local_device())
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    # set_model_state_dict mutates the dict it gets (PLATFORM.md): give it a shallow copy.
    set_model_state_dict(model, dict(full_state) if full_state is not None else {}, options=options)
    for buffer in model.buffers():  # non-persistent buffers (RoPE inv_freq) are not in any state dict
        dist.broadcast(buffer, src=0)


def _local_device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
