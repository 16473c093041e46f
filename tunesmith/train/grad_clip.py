"""Gradient-norm clipping that also handles sharded (DTensor) gradients from FSDP2 and tensor parallel."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.distributed.tensor import DTensor


def _norm(grad: torch.Tensor) -> torch.Tensor:
    """The L2 norm of one gradient; a sharded one is reduced over its mesh (every rank gets the full norm)."""
    norm = torch.linalg.vector_norm(grad, dtype=torch.float32)
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


def clip_grad_norm(params: Sequence[torch.nn.Parameter], limit: float) -> float:
    """Scale the gradients of `params` so their total L2 norm is at most `limit`; returns the norm before.

    Plain gradients go through torch's `clip_grad_norm_`; when some are DTensors (possibly on different meshes,
    mixed with plain tensors), each norm is completed over its mesh first."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if not any(isinstance(g, DTensor) for g in grads):
        return float(torch.nn.utils.clip_grad_norm_(params, limit))
    total = torch.linalg.vector_norm(torch.stack([_norm(g) for g in grads]))
    coef = limit / (float(total) + 1e-6)
    if coef < 1.0:
        for g in grads:
            g.mul_(coef)
    return float(total)
