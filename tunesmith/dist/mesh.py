"""Parallel sizes (data replicate/shard, context, tensor, expert) checked against the world, and one DeviceMesh."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from tunesmith.utils.errors import ConfigError

MESH_DIMS = ("dp_replicate", "dp_shard", "cp", "tp")


@dataclasses.dataclass(frozen=True)
class ParallelSizes:
    """How the world is split: world = dp_replicate x dp_shard x cp x tp; experts over `ep` ranks of dp x cp, each
    block of experts sharded (FSDP) over `ep_fsdp` of the ranks holding it."""

    world: int
    dp_replicate: int = 1
    dp_shard: int = 1
    cp: int = 1
    tp: int = 1
    ep: int = 1
    ep_fsdp: int = 1

    @property
    def dp(self) -> int:
        """Data-parallel ranks (replicas x shards): each sees different samples."""
        return self.dp_replicate * self.dp_shard


def parallel_sizes(
    world_size: int,
    *,
    tp_size: int = 1,
    cp_size: int = 1,
    fsdp_size: int = 1,
    ep_size: int = 1,
    ep_fsdp_size: int = 1,
    sharded: bool = False,
) -> ParallelSizes:
    """Split `world_size` ranks; a ConfigError names the size that does not fit.

    With `sharded` (FSDP2), `fsdp_size` ranks share one copy of the model (1 = shard over all data-parallel ranks)
    and the rest replicate it (HSDP). Without it, every data-parallel rank holds a full replica (DDP).
    """
    for name, size in (
        ("tp_size", tp_size),
        ("cp_size", cp_size),
        ("fsdp_size", fsdp_size),
        ("ep_size", ep_size),
        ("ep_fsdp_size", ep_fsdp_size),
    ):
        if size < 1:
            raise ConfigError(f"{name}: must be >= 1, got {size}")
    if world_size % (tp_size * cp_size):
        raise ConfigError(
            f"tp_size ({tp_size}) x cp_size ({cp_size}) = {tp_size * cp_size} does not divide the world size "
            f"{world_size}; the product of the parallel sizes must divide the number of processes"
        )
    dp = world_size // (tp_size * cp_size)
    shard = (fsdp_size if fsdp_size > 1 else dp) if sharded else 1
    if not sharded and fsdp_size > 1:
        raise ConfigError(f"fsdp_size: {fsdp_size} needs the fsdp2 engine (dist_config: {{name: fsdp2}})")
    if dp % shard:
        raise ConfigError(
            f"fsdp_size: {fsdp_size} does not divide the data-parallel size {dp} (world {world_size})"
        )
    if (dp * cp_size) % ep_size:
        raise ConfigError(
            f"ep_size: {ep_size} does not divide world size / tp_size = {dp * cp_size}; allowed: a divisor of it"
        )
    holders = dp * cp_size // ep_size  # ranks holding the same experts
    if holders % ep_fsdp_size or (ep_fsdp_size > 1 and ep_size == 1):
        raise ConfigError(
            f"ep_fsdp_size: {ep_fsdp_size} must divide world size / (tp_size x ep_size) = {holders} (the ranks "
            "holding the same experts) and needs ep_size > 1; allowed: a divisor of it"
        )
    return ParallelSizes(world_size, dp // shard, shard, cp_size, tp_size, ep_size, ep_fsdp_size)


def sizes_from_config(cfg: Any, world_size: int) -> ParallelSizes:
    """`parallel_sizes` from `cfg.parallel` and the engine chosen by `cfg.train.dist_config`."""
    par = cfg.parallel
    spec = cfg.train.dist_config
    engine = getattr(spec, "name", None) if spec is not None else None
    return parallel_sizes(
        world_size,
        tp_size=par.tp_size,
        cp_size=par.cp_size,
        fsdp_size=par.fsdp_size,
        ep_size=par.ep_size,
        ep_fsdp_size=par.ep_fsdp_size,
        sharded=engine == "fsdp2",
    )


def build_mesh(sizes: ParallelSizes, device_type: str = "cpu") -> DeviceMesh:
    """One DeviceMesh with dims dp_replicate, dp_shard, cp, tp, plus flattened `dp` (replicate x shard)."""
    shape = (sizes.dp_replicate, sizes.dp_shard, sizes.cp, sizes.tp)
    mesh = init_device_mesh(device_type, shape, mesh_dim_names=MESH_DIMS)
    mesh["dp_replicate", "dp_shard"]._flatten("dp")
    return mesh


def fsdp_mesh(mesh: DeviceMesh, sizes: ParallelSizes) -> DeviceMesh:
    """The mesh FSDP2 shards over: dp_shard (times cp, whose ranks hold the same weights), with dp_replicate as
    an outer dimension for HSDP."""
    shard = "dp_shard"
    if sizes.cp > 1:
        shard = "dp_shard_cp"
        mesh["dp_shard", "cp"]._flatten(shard)
    if sizes.dp_replicate > 1:
        return mesh["dp_replicate", shard]
    return mesh[shard]


def grad_sync_mesh(mesh: DeviceMesh, sizes: ParallelSizes) -> DeviceMesh:
    """The 1D mesh of ranks holding the same (non-expert) weights: dp x cp; DDP averages gradients over it."""
    if sizes.cp > 1:
        return mesh["dp_replicate", "dp_shard", "cp"]._flatten("dp_cp")
    return mesh["dp"]


def expert_mesh(sizes: ParallelSizes, device_type: str = "cpu") -> DeviceMesh:
    """A (ep_replicate, ep, ep_fsdp) mesh over the world: `ep` ranks share out the experts, each block of experts
    is sharded over `ep_fsdp` consecutive ranks and replicated over `ep_replicate` (without ep_fsdp: consecutive
    blocks of ep ranks share out the experts)."""
    if sizes.tp > 1:
        raise ConfigError(
            "ep_size: expert parallel together with tp_size > 1 is not supported yet; use tp_size: 1"
        )
    replicas = sizes.world // (sizes.ep * sizes.ep_fsdp)
    return init_device_mesh(
        device_type, (replicas, sizes.ep, sizes.ep_fsdp), mesh_dim_names=("ep_replicate", "ep", "ep_fsdp")
    )
