"""Distributed wiring of a training stage: process group from the config, parallelisms, this rank's data share,
main-process-first preprocessing, rank-0 outputs and the final Hugging Face export of a sharded model."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch.distributed as dist
from torch import nn

from tunesmith.config import TunesmithConfig
from tunesmith.dist.checkpoint_io import export_hf
from tunesmith.dist.parallelize import parallelize
from tunesmith.dist.setup import cleanup, init_distributed, is_main_process, main_process_first
from tunesmith.model import save_pretrained_output
from tunesmith.utils.errors import ConfigError


@dataclasses.dataclass
class DistRun:
    """Where this process sits in the job; a single process is `DistRun()` (nothing distributed)."""

    active: bool = False
    dp_rank: int = 0
    dp_size: int = 1
    sync_group: dist.ProcessGroup | None = None  # ranks whose token counts and gradients are summed
    sharded: bool = False  # parameters are DTensors (FSDP2 / tensor parallel): export gathers them

    @contextlib.contextmanager
    def main_first(self, on_each_node: bool = False) -> Iterator[None]:
        """Preprocess on the main process first; the others then read its cache (no collective timeout)."""
        if not self.active:
            yield
            return
        with main_process_first(on_each_node):
            yield

    def is_main(self, on_each_node: bool = False) -> bool:
        """Rank 0 (each node's local rank 0 with `on_each_node`); True when not distributed."""
        return not self.active or is_main_process(on_each_node)

    def save_output(self, model: nn.Module, tokenizer: Any, cfg: TunesmithConfig) -> None:
        """The final model in `output_dir` as `transformers` loads it, written by the main process (each node's
        with `save_on_each_node`); a sharded model is gathered into a full state dict first (a collective)."""
        args = cfg.train
        main = self.is_main(args.save_on_each_node)
        if self.sharded:
            if args.save_hf_weights:
                export_hf(model, args.output_dir, is_main=main)
                if main and tokenizer is not None:
                    tokenizer.save_pretrained(args.output_dir)
            return
        if main:
            save_pretrained_output(getattr(model, "module", model), tokenizer, args.output_dir)
        self.barrier()

    def barrier(self) -> None:
        """Wait for every rank (no-op when not distributed)."""
        if self.active:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group."""
        if self.active:
            cleanup()


def start(cfg: TunesmithConfig) -> DistRun:
    """Join the process group torchrun describes (`ddp_backend`, `ddp_timeout`); `DistRun()` when single-process."""
    par = cfg.parallel
    if not init_distributed(par.ddp_backend, par.ddp_timeout) or dist.get_world_size() == 1:
        return DistRun(active=dist.is_initialized())
    _check_supported(cfg)
    return DistRun(active=True)


def _check_supported(cfg: TunesmithConfig) -> None:
    """Combinations the distributed training path cannot honour yet: a clear error instead of wrong training."""
    spec, par, args = cfg.train.dist_config, cfg.parallel, cfg.train
    if spec is not None and spec.name == "deepspeed":
        raise ConfigError(
            "dist_config: deepspeed is not wired into `tunesmith train` yet; use dist_config: {name: fsdp2} "
            "(ZeRO-3 equivalent) or DDP (no dist_config)"
        )
    if par.cp_size > 1:
        raise ConfigError(
            "cp_size: context parallel is not wired into `tunesmith train` yet; use cp_size: 1"
        )
    if _sharding(cfg) and args.save_strategy != "no":
        raise ConfigError(
            f"save_strategy: {args.save_strategy!r} with a sharded model (fsdp2 / tp_size / ep_size) needs "
            "sharded checkpoints, not wired into `tunesmith train` yet; use save_strategy: no (the final model "
            "is still exported) or DDP"
        )
    if _sharding(cfg) and (args.do_predict or args.predict_with_generate):
        raise ConfigError(
            "do_predict: prediction after training with a sharded model (fsdp2 / tp_size / ep_size) is not "
            "supported; predict from the exported output_dir in one process"
        )


def _sharding(cfg: TunesmithConfig) -> bool:
    spec, par = cfg.train.dist_config, cfg.parallel
    return (spec is not None and spec.name == "fsdp2") or par.tp_size > 1 or par.ep_size > 1


def wrap(run: DistRun, model: nn.Module, cfg: TunesmithConfig) -> tuple[DistRun, nn.Module]:
    """Apply tensor/expert parallel and FSDP2 or DDP; returns this rank's data share and the model to train."""
    if not run.active:
        return run, model
    par = parallelize(model, cfg, dist.get_world_size())
    sync = par.mesh["dp_cp" if par.sizes.cp > 1 else "dp"]  # flattened by parallelize when cp > 1
    placed = dataclasses.replace(
        run,
        dp_rank=par.dp_rank,
        dp_size=par.sizes.dp,
        sync_group=sync.get_group(),
        sharded=_sharding(cfg),
    )
    return placed, par.model

