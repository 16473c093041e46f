"""Restoring a trainer from a checkpoint: weights and optimizer (full files or `dcp/`), scheduler, scaler, loop
state, callback states, and each rank's RNG and data position. Loading never executes pickled code."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safetensors.torch
import torch

from tunesmith.dist.checkpoint_io import load_sharded
from tunesmith.train import rng
from tunesmith.train.checkpoint import DCP_DIR, is_sharded, model_weights
from tunesmith.train.checkpoint_find import read_state
from tunesmith.train.loss import unwrap
from tunesmith.train.resume_check import check_resumed, hparams
from tunesmith.train.update import DeepSpeedUpdate
from tunesmith.utils.errors import ConfigError

if TYPE_CHECKING:
    from tunesmith.train.trainer import Trainer

logger = logging.getLogger("tunesmith")


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a checkpoint's weights into `model` (safetensors, or a torch file with `weights_only=True`)."""
    path = Path(path)
    file = path / "model.safetensors"
    if file.is_file():
        weights = safetensors.torch.load_file(file)
    else:
        weights = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    inner = unwrap(model)
    expected = set(model_weights(model))
    unknown = set(weights) - set(inner.state_dict())
    if unknown:
        raise ConfigError(
            f"resume_from_checkpoint: {path} has weights this model lacks: {sorted(unknown)[:3]}"
        )
    with torch.no_grad():
        own = inner.state_dict()
        for name, tensor in weights.items():
            own[name].copy_(tensor)
    tied = expected - set(weights)
    untied = [n for n in tied if not _shares_storage(own[n], [own[w] for w in weights])]
    if untied:
        raise ConfigError(
            f"resume_from_checkpoint: {path} misses weights of this model: {sorted(untied)[:3]}"
        )


def _shares_storage(tensor: torch.Tensor, others: list[torch.Tensor]) -> bool:
    ptr = tensor.untyped_storage().data_ptr()
    return any(o.untyped_storage().data_ptr() == ptr for o in others)


def _load_torch(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(trainer: Trainer, path: str | Path, rank: int = 0) -> None:
    """Restore the trainer from checkpoint `path`: weights, optimizer, scheduler, scaler, loop state, RNG and,
    unless `ignore_data_skip`, the data position; callback states with `restore_callback_states_from_checkpoint`."""
    path, a = Path(path), trainer.args
    if not (path / "scheduler.pt").is_file():
        raise ConfigError(
            f"resume_from_checkpoint: {path} holds only the model (save_only_model) and cannot resume training"
        )
    given = hparams(trainer)
    _load_model_and_optimizer(trainer, path)
    trainer.scheduler.load_state_dict(_load_torch(path / "scheduler.pt"))
    if trainer.precision.scaler is not None and (path / "scaler.pt").is_file():
        trainer.precision.scaler.load_state_dict(_load_torch(path / "scaler.pt"))
    state = read_state(path)
    check_resumed(trainer, given, path, state)
    _restore_loop_state(trainer, state)
    if a.restore_callback_states_from_checkpoint:
        saved = state.get("stateful_callbacks", {})
        for cb in trainer.callbacks:
            if hasattr(cb, "load_state_dict") and type(cb).__name__ in saved:
                cb.load_state_dict(saved[type(cb).__name__])
    _restore_rank_files(trainer, path, rank, a.ignore_data_skip)
    logger.info("resumed from %s at step %d", path, trainer.state.global_step)


def load_model_weights(trainer: Trainer, path: Path) -> None:
    """Only the weights of checkpoint `path` into the trainer's model (`load_best_model_at_end`), however it was
    saved."""
    _load_model_and_optimizer(trainer, path, with_optimizer=False)


def _load_model_and_optimizer(trainer: Trainer, path: Path, with_optimizer: bool = True) -> None:
    """Weights and optimizer: from the engine's own folder (DeepSpeed), from `dcp/` (saved sharded; loads on any
    number of ranks, sharded or not), else from the full files (which a sharded model cannot take)."""
    optimizer = trainer.optimizer if with_optimizer else None
    engine_dir = trainer.update.state_dir
    if engine_dir is not None or (path / DeepSpeedUpdate.state_dir).is_dir():
        if engine_dir is None or not (path / engine_dir).is_dir():
            saved_by = "a DeepSpeed run" if engine_dir is None else "a run without DeepSpeed"
            raise ConfigError(
                f"resume_from_checkpoint: {path} was saved by {saved_by}; resume it with the same dist_config / "
                "deepspeed setting it was saved with"
            )
        trainer.update.load_state(path / engine_dir, with_optimizer)
        return
    if (path / DCP_DIR).is_dir():
        load_sharded(path / DCP_DIR, trainer.model, optimizer)
        return
    if is_sharded(trainer.model):
        raise ConfigError(
            f"resume_from_checkpoint: {path} was saved by an unsharded run and cannot resume a sharded "
            "(fsdp2 / tp_size) one; resume without dist_config fsdp2 / tp_size"
        )
    load_weights(trainer.model, path)
    if optimizer is not None:
        optimizer.load_state_dict(_load_torch(path / "optimizer.pt"))


def _restore_loop_state(trainer: Trainer, state: dict[str, Any]) -> None:
    s = trainer.state
    s.global_step, s.epoch = state["global_step"], state["epoch"]
    s.epoch_index, s.micro_batches_done = state["epoch_index"], state["micro_batches_done"]
    s.tokens_seen, s.bad_steps = state["tokens_seen"], state["bad_steps"]
    s.input_tokens_seen = state.get("num_input_tokens_seen", 0)
    s.log_history = list(state["log_history"])
    trainer.split = state.get("micro_batch_split", 1)
    best = getattr(trainer, "best", None)
    if best is not None:
        best.best_metric = state.get("best_metric")
        best.best_step = state.get("best_global_step")
        best.best_checkpoint = state.get("best_model_checkpoint")


def _restore_rank_files(trainer: Trainer, path: Path, rank: int, ignore_data_skip: bool) -> None:
    rng_file = path / f"rng_state_{rank}.pth"
    if rng_file.is_file():
        rng.restore(_load_torch(rng_file))
    else:
        logger.warning("resume: %s has no RNG state for rank %d; random draws will differ", path, rank)
    s = trainer.state
    if ignore_data_skip:
        s.micro_batches_done = 0  # the epoch restarts from its beginning, as in transformers
    else:
        _restore_data_position(trainer, path, rank)
    if trainer.epoch_length is not None and s.micro_batches_done >= trainer.epoch_length:
        s.epoch_index, s.micro_batches_done = s.epoch_index + 1, 0  # saved at the end of an epoch


def _restore_data_position(trainer: Trainer, path: Path, rank: int) -> None:
    """Continue the batcher where the saved run stopped: from this rank's state, or rank 0's when the run had
    fewer ranks, mapped onto this run's ranks when its batches allow (see `Batcher.position_for`), else the
    epoch's data order restarts with a warning."""
    batcher, s = trainer.batcher, trainer.state
    files = [f for f in (path / f"data_state_{rank}.json", path / "data_state_0.json") if f.is_file()]
    if not files or not hasattr(batcher, "load_state_dict"):
        return
    data = json.loads(files[0].read_text())
    saved_ranks = len(list(path.glob("data_state_*.json")))
    data.setdefault("world_size", saved_ranks)  # a state saved before the batcher kept its world size
    position = batcher.position_for(data) if hasattr(batcher, "position_for") else int(data["position"])
    if position is None:
        logger.warning(
            "resume: %s was saved by %d data-parallel processes with micro-batches that do not map onto this "
            "run's %d: step %d and epoch %d continue, but the epoch's data order restarts from its beginning",
            path,
            data["world_size"],
            getattr(batcher, "world_size", 1),
            s.global_step,
            s.epoch_index,
        )
        s.micro_batches_done = 0
        return
    batcher.load_state_dict(data)
    s.micro_batches_done = position
