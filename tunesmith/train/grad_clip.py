"""Gradient-norm clipping that also handles sharded (DTensor) gradients from FSDP2 and tensor parallel."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

GROUP_ATTR = "grad_norm_group"  # on a plain parameter holding one rank's share (expert parallel): its group


def mark_sharded(param: torch.nn.Parameter, group: dist.ProcessGroup) -> None:
    """Declare that `param` is this rank's share of a weight split over `group` (its norm sums over the group)."""
    setattr(param, GROUP_ATTR, group)


def _local_square(param: torch.nn.Parameter) -> tuple[torch.Tensor, tuple[dist.ProcessGroup, ...]]:
    """This rank's squared gradient norm and the groups over which the shares must be summed."""
    grad = param.grad
    if hasattr(param, GROUP_ATTR):
        groups = (getattr(param, GROUP_ATTR),)
        if isinstance(grad, DTensor):  # a share that FSDP shards further (experts with ep_fsdp_size)
            groups += tuple(
                grad.device_mesh.get_group(i) for i, p in enumerate(grad.placements) if p.is_shard()
            )
            grad = grad.to_local()
        return torch.linalg.vector_norm(grad, dtype=torch.float32) ** 2, groups
    if not isinstance(grad, DTensor):
        return torch.linalg.vector_norm(grad, dtype=torch.float32) ** 2, ()
    if not all(p.is_shard() or p.is_replicate() for p in grad.placements):  # e.g. Partial: let DTensor reduce
        return torch.linalg.vector_norm(grad, dtype=torch.float32).full_tensor() ** 2, ()
    square = torch.linalg.vector_norm(grad.to_local(), dtype=torch.float32) ** 2
    dims = [i for i, p in enumerate(grad.placements) if p.is_shard()]
    return square, tuple(grad.device_mesh.get_group(i) for i in dims)


def _total_norm(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """The L2 norm of all gradients: local squares summed per group pattern, one all-reduce per group."""
    by_groups: dict[tuple[dist.ProcessGroup, ...], torch.Tensor] = {}
    for param in params:  # the same order on every rank, so the collectives below line up
        square, groups = _local_square(param)
        by_groups[groups] = by_groups[groups] + square if groups in by_groups else square
    for groups, square in by_groups.items():
        for group in groups:
            dist.all_reduce(square, group=group)
    return torch.sqrt(sum(by_groups.values()))


def clip_grad_norm(params: Sequence[torch.nn.Parameter], limit: float) -> float:
    """Scale the gradients of `params` so their total L2 norm is at most `limit`; returns the norm before.

    Plain gradients go through torch's `clip_grad_norm_`; DTensor gradients (possibly on different meshes, mixed
    with plain tensors) and `mark_sharded` ones have their norms completed over their ranks first."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    if not any(hasattr(p, GROUP_ATTR) or isinstance(p.grad, DTensor) for p in params):
        return float(torch.nn.utils.clip_grad_norm_(params, limit))
    total = _total_norm(params)
    coef = limit / (float(total) + 1e-6)
    if coef < 1.0:
        for p in params:
            p.grad.mul_(coef)
    return float(total)
