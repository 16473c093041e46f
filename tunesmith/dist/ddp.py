"""DistributedDataParallel with HF's `ddp_find_unused_parameters`, `ddp_bucket_cap_mb`, `ddp_broadcast_buffers`."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.nn.parallel import DistributedDataParallel


def wrap_ddp(
    model: nn.Module,
    *,
    find_unused_parameters: bool | None = None,
    bucket_cap_mb: int | None = None,
    broadcast_buffers: bool | None = None,
    mesh: DeviceMesh | None = None,
    ignore_parameters: Iterable[str] = (),
) -> DistributedDataParallel:
    """Wrap `model` in DDP; None keeps each option's default (HF: find_unused_parameters False unless gradient
    checkpointing, bucket 25 MB, broadcast buffers True). `mesh` is the 1D data-parallel mesh (default: world);
    `ignore_parameters` are names DDP must leave alone (expert-parallel weights that are not replicas)."""
    ignored = list(ignore_parameters)
    if ignored:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignored)
    kwargs: dict = {"find_unused_parameters": bool(find_unused_parameters)}
    if broadcast_buffers is False:  # the default (True) syncs buffers before each forward
        kwargs["broadcast_buffers"] = False
    if bucket_cap_mb is not None:
        kwargs["bucket_cap_mb"] = bucket_cap_mb
    if mesh is not None:
        kwargs["device_mesh"] = mesh
    if torch.cuda.is_available():
        kwargs["device_ids"] = [torch.cuda.current_device()]
    return DistributedDataParallel(model, **kwargs)
