"""Distributed wiring of a training stage: process group from the config, parallelisms, this rank's data share,
main-process-first preprocessing, rank-0 outputs and the final Hugging Face export of a sharded model."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from tunesmith.config import TunesmithConfig
from tunesmith.config.plan import StepPlan
from tunesmith.config.plugins import DIST
from tunesmith.dist.checkpoint_io import full_model_state
from tunesmith.dist.deepspeed import gathered
from tunesmith.dist.parallelize import parallelize
from tunesmith.dist.setup import (
    cleanup,
    init_distributed,
    init_single_process,
    is_main_process,
    main_process_first,
)
from tunesmith.dist.ulysses import split_sequence
from tunesmith.model import save_pretrained_output
from tunesmith.model.saving import atomic_export, safetensors_to_bin
from tunesmith.train.grad_clip import mark_sharded
from tunesmith.train.trainer import UpdateFactory
from tunesmith.train.update import DeepSpeedUpdate
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")


@dataclasses.dataclass
class DistRun:
    """Where this process sits in the job; a single process is `DistRun()` (nothing distributed)."""

    active: bool = False
    dp_rank: int = 0
    dp_size: int = 1
    sync_group: dist.ProcessGroup | None = None  # ranks whose token counts and gradients are summed
    sharded: bool = False  # parameters are DTensors (FSDP2 / tensor parallel): export gathers them
    cp_rank: int = 0
    cp_size: int = 1
    deepspeed: bool = False  # the model is a DeepSpeed engine, which owns backward and step

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

    def save_output(
        self, model: nn.Module, tokenizer: Any, cfg: TunesmithConfig, output_dir: str | Path | None = None
    ) -> None:
        """The model in `output_dir` (default: the run's) as `transformers` loads it, written by the main process
        (each node's with `save_on_each_node`); a sharded model is gathered into a full state dict first (a
        collective, so every rank calls this)."""
        args = cfg.train
        target = output_dir or args.output_dir
        main = self.is_main(args.save_on_each_node)
        safe = args.save_safetensors
        if self.deepspeed:
            with gathered(model):
                if main:
                    save_pretrained_output(model.module, tokenizer, target, safe)
            self.barrier()
            return
        if self.sharded:
            if args.save_hf_weights:
                state = full_state(model, every_rank=args.save_on_each_node)
                if main:
                    with atomic_export(target) as tmp:
                        getattr(model, "module", model).save_pretrained(tmp, state_dict=state)
                        if not safe:
                            safetensors_to_bin(tmp)
                        if tokenizer is not None:
                            tokenizer.save_pretrained(tmp)
            self.barrier()
            return
        if main:
            save_pretrained_output(getattr(model, "module", model), tokenizer, target, safe)
        self.barrier()

    def barrier(self) -> None:
        """Wait for every rank (no-op when not distributed)."""
        if self.active:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group."""
        if self.active:
            cleanup()


def full_state(model: nn.Module, every_rank: bool = False) -> dict[str, torch.Tensor]:
    """The unsharded state dict of a FSDP2 / tensor- / expert-parallel model on CPU: on rank 0 (empty elsewhere),
    or on every rank with `every_rank`. A collective: call on all ranks."""
    return full_model_state(model, every_rank)


def apply_local_rank(cfg: TunesmithConfig) -> None:
    """HF's `local_rank` (passed as --local_rank by torch.distributed.launch): the environment's LOCAL_RANK wins
    when set, as in HF (a different value is an error, not a silent pick); otherwise it becomes LOCAL_RANK, which
    chooses this process's device and per-node main process."""
    given = cfg.parallel.local_rank
    if given < 0:
        return
    env = os.environ.get("LOCAL_RANK")
    if env is not None and env.strip() != str(given):
        raise ConfigError(
            f"{cfg.where('local_rank')} = {given} but the launcher set LOCAL_RANK={env}; drop local_rank"
        )
    os.environ["LOCAL_RANK"] = str(given)


def start(cfg: TunesmithConfig) -> DistRun:
    """Join the process group torchrun describes (`ddp_backend`, `ddp_timeout`); without torchrun, a one-process
    group when `dist_config` asks for fsdp2 or deepspeed, else `DistRun()` (nothing distributed)."""
    par = cfg.parallel
    if not init_distributed(par.ddp_backend, par.ddp_timeout):
        if _engine(cfg) not in ("fsdp2", "deepspeed"):
            return DistRun()
        init_single_process(par.ddp_backend, par.ddp_timeout)  # the engine runs on one rank
        logger.info("dist_config %s without torchrun: running the engine on a single process", _engine(cfg))
    check_supported(cfg)
    return DistRun(active=True)


def check_supported(cfg: TunesmithConfig) -> None:
    """Combinations the distributed training path cannot honour yet: a clear error instead of wrong training."""
    par, args = cfg.parallel, cfg.train
    if par.cp_size > 1 and args.chunk_loss_size:
        raise ConfigError("chunk_loss_size: not supported with context parallel (cp_size > 1); unset it")
    if (_sharding(cfg) or _engine(cfg) == "deepspeed") and (args.do_predict or args.predict_with_generate):
        raise ConfigError(
            "do_predict: prediction after training with a sharded model (fsdp2 / deepspeed / tp_size / ep_size) "
            "is not supported; predict from the exported output_dir in one process"
        )
    if _engine(cfg) == "deepspeed" and args.save_only_model and args.load_best_model_at_end:
        raise ConfigError(
            "save_only_model: with deepspeed its checkpoints hold the gathered model, which the engine does not load "
            "back; drop load_best_model_at_end or save_only_model (as transformers refuses the pair under DeepSpeed)"
        )


def _engine(cfg: TunesmithConfig) -> str:
    spec = cfg.train.dist_config
    return spec.name if spec is not None else "ddp"


def _sharding(cfg: TunesmithConfig) -> bool:
    par = cfg.parallel
    return _engine(cfg) == "fsdp2" or par.tp_size > 1 or par.ep_size > 1


def wrap(run: DistRun, model: nn.Module, cfg: TunesmithConfig) -> tuple[DistRun, nn.Module]:
    """Apply tensor/expert parallel and FSDP2 or DDP; returns this rank's data share and the model to train."""
    if not run.active:
        return run, model
    if _engine(cfg) == "deepspeed":  # the engine is built with the optimizer, by `engine_update`
        world = dist.get_world_size()
        return dataclasses.replace(run, dp_rank=dist.get_rank(), dp_size=world, deepspeed=True), model
    par = parallelize(model, cfg, dist.get_world_size())
    sync = par.mesh["dp_cp" if par.sizes.cp > 1 else "dp"]  # flattened by parallelize when cp > 1
    placed = dataclasses.replace(
        run,
        dp_rank=par.dp_rank,
        dp_size=par.sizes.dp,
        sync_group=sync.get_group(),
        sharded=_sharding(cfg),
        cp_rank=par.cp_rank,
        cp_size=par.sizes.cp,
    )
    for module in par.model.modules():  # expert parallel: each rank holds some experts
        if hasattr(module, "ep_group"):
            for param in module.parameters(recurse=False):
                mark_sharded(param, module.ep_group)
    return placed, par.model


def engine_update(run: DistRun, cfg: TunesmithConfig) -> UpdateFactory | None:
    """The trainer's update path when an engine owns backward and step (DeepSpeed); None for torch's own."""
    if not run.deepspeed:
        return None
    spec = cfg.train.dist_config

    def build(model: nn.Module, optimizer: torch.optim.Optimizer, plan: StepPlan) -> DeepSpeedUpdate:
        engine = DIST.get("deepspeed").factory(
            model,
            cfg,
            run.dp_size,
            spec.params,
            optimizer=optimizer,
            warmup_steps=plan.warmup_steps,
            total_steps=plan.max_steps,
        )
        return DeepSpeedUpdate(engine, engine.basic_optimizer)

    return build


def sequence_slices(run: DistRun, batcher: Any, tokenizer: Any) -> Any:
    """With context parallel, `batcher`'s micro-batches as this cp rank's slice of the sequence; else `batcher`."""
    if run.cp_size == 1:
        return batcher
    if not hasattr(batcher, "__len__"):
        raise ConfigError("cp_size: context parallel needs a map-style dataset; set streaming: false")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return SequenceSlices(batcher, run.cp_rank, run.cp_size, int(pad_id))


class SequenceSlices:
    """Micro-batches padded to a multiple of `cp` positions and cut to slice `rank` (Ulysses context parallel).

    `labels` get a leading ignored column, so each of the slice's logits is scored against the next token, also
    across slice boundaries (see `tunesmith.train.loss.token_ce_sum`); the other batcher methods pass through."""

    def __init__(self, batcher: Any, rank: int, cp: int, pad_id: int) -> None:
        self.batcher, self.rank, self.cp, self.pad_id = batcher, rank, cp, pad_id

    def __len__(self) -> int:
        return len(self.batcher)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.batcher, name)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.batcher:
            yield self._slice(batch)

    def _slice(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        extra = -batch["input_ids"].size(1) % self.cp
        padded = {
            "input_ids": torch.nn.functional.pad(batch["input_ids"], (0, extra), value=self.pad_id),
            "labels": torch.nn.functional.pad(batch["labels"], (0, extra), value=-100),
        }
        if "position_ids" in batch:
            end = batch["position_ids"][:, -1:] + 1 + torch.arange(extra)
            padded["position_ids"] = torch.cat([batch["position_ids"], end], dim=1)
        part = split_sequence(padded, self.rank, self.cp)
        ignored = torch.full_like(part["shift_labels"][:, :1], -100)
        labels = torch.cat([ignored, part.pop("shift_labels")], dim=1)
        return {**part, "labels": labels}
