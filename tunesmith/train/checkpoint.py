"""Checkpoints that resume exactly: atomic write (temporary name, completion marker last, rename), rotation,
finding the newest complete checkpoint, and loading without executing pickled code.

A checkpoint `checkpoint-<step>/` holds `model.safetensors` (every weight; only the trainable ones when part of
the model is frozen, e.g. LoRA), `optimizer.pt`, `scheduler.pt`, `scaler.pt` (fp16), `rng_state_<rank>.pth`,
`data_state_<rank>.json` (batcher position), `trainer_state.json` and, written last, `COMPLETE` (the list of files
and their sizes). It is written as `checkpoint-<step>.tmp` and renamed only once complete, so a kill during the
write never leaves a visible half checkpoint.

A sharded model (FSDP2 / tensor parallel: DTensor parameters) stores model and optimizer instead in `dcp/`, a torch
distributed checkpoint every rank writes its shards to; it resumes on any number of ranks. Resuming on a different
number of ranks keeps weights, optimizer, scheduler, step and epoch but restarts the current epoch's data order (the
per-rank batcher positions do not carry over), with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safetensors.torch
import torch
from torch.distributed.tensor import DTensor

from tunesmith.dist.checkpoint_io import load_sharded, save_sharded
from tunesmith.train import rng
from tunesmith.train.loss import unwrap
from tunesmith.utils.errors import ConfigError

if TYPE_CHECKING:
    from tunesmith.train.trainer import Trainer

logger = logging.getLogger("tunesmith")
MARKER = "COMPLETE"
DCP_DIR = "dcp"
STATE_FILE = "trainer_state.json"
PREFIX = "checkpoint-"
_NAME = re.compile(r"^checkpoint-(\d+)$")


# --- what a checkpoint holds --------------------------------------------------------------------------------------
def model_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights a checkpoint stores: all of them, or only the trainable ones when some are frozen."""
    inner = unwrap(model)
    params = dict(inner.named_parameters())
    if all(p.requires_grad for p in params.values()):
        return dict(inner.state_dict())
    return {name: p for name, p in params.items() if p.requires_grad}


def _detached_copy(obj: Any) -> Any:
    """A deep copy with every tensor copied to the CPU, so later training steps cannot change it."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _detached_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detached_copy(v) for v in obj)
    return obj


def _unique_storage(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop names sharing storage with an earlier one (tied embeddings); safetensors refuses shared tensors."""
    seen: set[tuple[int, int]] = set()
    unique = {}
    for name, t in weights.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key not in seen:
            seen.add(key)
            unique[name] = t.contiguous()
    return unique


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether the model's parameters are DTensors (FSDP2 / tensor parallel): checkpointed with DCP."""
    return any(isinstance(p, DTensor) for p in model.parameters())


def snapshot(trainer: Trainer, rank: int = 0) -> dict[str, Any]:
    """Everything to write, copied to the CPU now (the state at this step, whatever training does next); a sharded
    model's weights and optimizer are not in it (`save_sharded` writes them from the live model)."""
    a = trainer.args
    sharded = is_sharded(trainer.model)
    snap: dict[str, Any] = {
        "weights": None if sharded else _unique_storage(model_weights(trainer.model)),
        "trainer_state": trainer_state_dict(trainer),
        "rank": rank,
        "safetensors": a.save_safetensors,
    }
    if not a.save_only_model:
        if not sharded:
            snap["optimizer"] = trainer.optimizer.state_dict()
        snap["scheduler"] = trainer.scheduler.state_dict()
        if trainer.precision.scaler is not None:
            snap["scaler"] = trainer.precision.scaler.state_dict()
        snap["rng"] = rng.capture()
        if hasattr(trainer.batcher, "state_dict"):
            snap["data"] = trainer.batcher.state_dict()
    return _detached_copy(snap)


def trainer_state_dict(trainer: Trainer) -> dict[str, Any]:
    """`trainer_state.json`: the loop's TrainState plus best-model and callback states (HF-like keys)."""
    s = trainer.state
    best = getattr(trainer, "best", None)
    stateful = {type(cb).__name__: cb.state_dict() for cb in trainer.callbacks if hasattr(cb, "state_dict")}
    return {
        "global_step": s.global_step,
        "epoch": s.epoch,
        "epoch_index": s.epoch_index,
        "micro_batches_done": s.micro_batches_done,
        "tokens_seen": s.tokens_seen,
        "bad_steps": s.bad_steps,
        "max_steps": trainer.plan.max_steps,
        "num_train_epochs": trainer.plan.num_train_epochs,
        "micro_batch_split": trainer.split,
        "best_metric": best.best_metric if best else None,
        "best_global_step": best.best_step if best else None,
        "best_model_checkpoint": best.best_checkpoint if best else None,
        "log_history": list(s.log_history),
        "stateful_callbacks": stateful,
    }


def _barrier() -> None:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def write_snapshot(
    snap: dict[str, Any],
    final: Path,
    write_shared: bool = True,
    write_dcp: Callable[[Path], None] | None = None,
) -> Path:
    """Write `snap` to `final.tmp`, the marker last, then rename to `final`; returns `final`.

    With several ranks every rank writes its own RNG/data files (and, with `write_dcp`, its shards); the ranks that
    `write_shared` (the main one, or each node's with save_on_each_node) write the rest, the marker and rename,
    after all ranks have written."""
    tmp = final.with_name(final.name + ".tmp")
    if write_shared:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    _barrier()
    tmp.mkdir(parents=True, exist_ok=True)
    rank = snap["rank"]
    if write_dcp is not None:
        write_dcp(tmp / DCP_DIR)
    if write_shared and snap["weights"] is not None:
        if snap["safetensors"]:
            safetensors.torch.save_file(snap["weights"], tmp / "model.safetensors", metadata={"format": "pt"})
        else:
            torch.save(snap["weights"], tmp / "pytorch_model.bin")
    if write_shared:
        for key in ("optimizer", "scheduler", "scaler"):
            if key in snap:
                torch.save(snap[key], tmp / f"{key}.pt")
        (tmp / STATE_FILE).write_text(json.dumps(snap["trainer_state"], indent=2, default=_jsonable))
    if "rng" in snap:
        torch.save(snap["rng"], tmp / f"rng_state_{rank}.pth")
    if "data" in snap:
        (tmp / f"data_state_{rank}.json").write_text(json.dumps(snap["data"]))
    _barrier()
    if write_shared:
        _write_marker(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    _barrier()
    return final


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return str(value)


def _write_marker(folder: Path) -> None:
    files = {
        p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()
    }
    with (folder / MARKER).open("w") as f:
        json.dump(files, f)
        f.flush()
        os.fsync(f.fileno())


# --- the saver: sync or async, rotation ---------------------------------------------------------------------------
class CheckpointSaver:
    """Writes checkpoints of a trainer to `output_dir`, in the background with `save_async`, and rotates them."""

    def __init__(self, args: Any, rank: int = 0, local_rank: int = 0, world_size: int = 1) -> None:
        self.args, self.rank = args, rank
        self.output_dir = Path(args.output_dir)
        self.write_shared = rank == 0 or (args.save_on_each_node and local_rank == 0)
        self.background = args.save_async and world_size == 1
        if args.save_async and world_size > 1:
            logger.warning("save_async: with %d processes checkpoints are written synchronously", world_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, trainer: Trainer) -> Path:
        """Checkpoint the trainer's current state as `checkpoint-<global_step>`; returns its path."""
        self.wait()
        final = self.output_dir / f"{PREFIX}{trainer.state.global_step}"
        snap = snapshot(trainer, self.rank)
        if snap["weights"] is None:
            # sharded: DCP writes the live model and optimizer from every rank, so never in the background
            optimizer = None if self.args.save_only_model else trainer.optimizer
            self._write(snap, final, trainer, lambda d: save_sharded(d, trainer.model, optimizer))
            return final
        if not self.background:
            self._write(snap, final, trainer)
            return final
        self._thread = threading.Thread(target=self._write_in_background, args=(snap, final, trainer))
        self._thread.start()
        return final

    def _write(
        self,
        snap: dict[str, Any],
        final: Path,
        trainer: Trainer,
        write_dcp: Callable[[Path], None] | None = None,
    ) -> None:
        extra = {} if write_dcp is None else {"write_dcp": write_dcp}  # plain writes keep the 3-argument call
        write_snapshot(snap, final, self.write_shared, **extra)
        if self.write_shared and self.args.save_total_limit:
            best = getattr(trainer, "best", None)
            rotate(self.output_dir, self.args.save_total_limit, best.best_checkpoint if best else None)

    def _write_in_background(self, snap: dict[str, Any], final: Path, trainer: Trainer) -> None:
        try:
            self._write(snap, final, trainer)
        except BaseException as exc:  # reported by wait() in the training thread
            self._error = exc

    def wait(self) -> None:
        """Block until a background write has finished; re-raise its error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"writing a checkpoint failed: {error}") from error


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The `checkpoint-<step>` folders of `output_dir` (complete or not), oldest step first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def rotate(output_dir: str | Path, limit: int, best: str | None) -> list[Path]:
    """Delete the oldest complete checkpoints beyond `limit`, never the newest nor `best`; returns the deleted."""
    done = [p for p in checkpoints(output_dir) if problem(p) is None]
    keep = {done[-1]} if done else set()
    if best:
        keep.add(Path(best))
    deletable = [p for p in done if p not in keep]
    excess = len(done) - max(limit, len(keep))
    deleted = deletable[: max(excess, 0)]
    for path in deleted:
        logger.info("save_total_limit %d: deleting %s", limit, path)
        shutil.rmtree(path)
    return deleted


# --- finding and loading ------------------------------------------------------------------------------------------
def problem(path: Path) -> str | None:
    """Why `path` is not a complete checkpoint, or None when it is."""
    marker = path / MARKER
    if not marker.is_file():
        return f"no {MARKER} marker (the write did not finish)"
    try:
        files = json.loads(marker.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"its {MARKER} marker is unreadable"
    for name, size in files.items():
        file = path / name
        if not file.is_file() or file.stat().st_size != size:
            return f"{name} is missing or has the wrong size (corrupt)"
    return None


def find_resume_checkpoint(output_dir: str | Path) -> Path | None:
    """`resume_from_checkpoint: auto`: the newest complete checkpoint of `output_dir` (incomplete ones are skipped
    with a warning), or None."""
    for path in reversed(checkpoints(output_dir)):
        why = problem(path)
        if why is None:
            return path
        logger.warning("resume_from_checkpoint auto: skipping %s: %s", path, why)
    return None


def resolve_resume(args: Any) -> Path | None:
    """The checkpoint to resume from (`auto` or a path, checked), or None to start fresh."""
    value = args.resume_from_checkpoint
    if value in (None, "", False):
        return None
    if str(value).lower() in ("auto", "true"):
        found = find_resume_checkpoint(args.output_dir)
        if found is None:
            logger.warning(
                "resume_from_checkpoint auto: no complete checkpoint in %s; starting fresh", args.output_dir
            )
        return found
    path = Path(value)
    if not path.is_dir():
        raise ConfigError(f"resume_from_checkpoint: {path} is not a directory")
    why = problem(path)
    if why is not None:
        raise ConfigError(
            f"resume_from_checkpoint: {path} is not a complete checkpoint ({why}); "
            "use resume_from_checkpoint: auto to take the newest complete one"
        )
    return path


def check_output_dir(args: Any) -> None:
    """Refuse to start a fresh run in an `output_dir` that holds checkpoints, unless `overwrite_output_dir`."""
    if args.resume_from_checkpoint not in (None, "", False) or args.overwrite_output_dir:
        return
    found = checkpoints(args.output_dir)
    if found:
        raise ConfigError(
            f"output_dir: {args.output_dir} already holds checkpoints ({found[-1].name}); set "
            "resume_from_checkpoint: auto to continue that run, or overwrite_output_dir: true to start over"
        )


def read_state(path: str | Path) -> dict[str, Any]:
    """The `trainer_state.json` of checkpoint `path`."""
    return json.loads((Path(path) / STATE_FILE).read_text())


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
    _load_model_and_optimizer(trainer, path)
    trainer.scheduler.load_state_dict(_load_torch(path / "scheduler.pt"))
    if trainer.precision.scaler is not None and (path / "scaler.pt").is_file():
        trainer.precision.scaler.load_state_dict(_load_torch(path / "scaler.pt"))
    state = read_state(path)
    _restore_loop_state(trainer, state)
    if a.restore_callback_states_from_checkpoint:
        saved = state.get("stateful_callbacks", {})
        for cb in trainer.callbacks:
            if hasattr(cb, "load_state_dict") and type(cb).__name__ in saved:
                cb.load_state_dict(saved[type(cb).__name__])
    _restore_rank_files(trainer, path, rank, a.ignore_data_skip)
    logger.info("resumed from %s at step %d", path, trainer.state.global_step)


def _load_model_and_optimizer(trainer: Trainer, path: Path) -> None:
    """Weights and optimizer: from `dcp/` (saved sharded; loads on any number of ranks, sharded or not), else from
    the full files (which a sharded model cannot take)."""
    if (path / DCP_DIR).is_dir():
        load_sharded(path / DCP_DIR, trainer.model, trainer.optimizer)
        return
    if is_sharded(trainer.model):
        raise ConfigError(
            f"resume_from_checkpoint: {path} was saved by an unsharded run and cannot resume a sharded "
            "(fsdp2 / tp_size) one; resume without dist_config fsdp2 / tp_size"
        )
    load_weights(trainer.model, path)
    trainer.optimizer.load_state_dict(_load_torch(path / "optimizer.pt"))


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _restore_loop_state(trainer: Trainer, state: dict[str, Any]) -> None:
    s = trainer.state
    s.global_step, s.epoch = state["global_step"], state["epoch"]
    s.epoch_index, s.micro_batches_done = state["epoch_index"], state["micro_batches_done"]
    s.tokens_seen, s.bad_steps = state["tokens_seen"], state["bad_steps"]
    s.log_history = list(state["log_history"])
    trainer.split = state.get("micro_batch_split", 1)
    if trainer.epoch_length is not None and s.micro_batches_done >= trainer.epoch_length:
        s.epoch_index, s.micro_batches_done = s.epoch_index + 1, 0  # saved at the end of an epoch
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
    data_file = path / f"data_state_{rank}.json"
    s = trainer.state
    saved_ranks = len(list(path.glob("data_state_*.json")))
    if saved_ranks and saved_ranks != _world_size() and not ignore_data_skip:
        logger.warning(
            "resume: %s was saved by %d processes, this run has %d: step %d and epoch %d continue, but the "
            "epoch's data order restarts from its beginning (per-process data positions do not carry over)",
            path,
            saved_ranks,
            _world_size(),
            s.global_step,
            s.epoch_index,
        )
        ignore_data_skip = True
    if ignore_data_skip:
        s.micro_batches_done = 0  # the epoch restarts from its beginning, as in transformers
        return
    if data_file.is_file() and hasattr(trainer.batcher, "load_state_dict"):
        data = json.loads(data_file.read_text())
        if trainer.epoch_length is not None and data.get("position", 0) >= trainer.epoch_length:
            data = {**data, "epoch": s.epoch_index, "position": 0}
        trainer.batcher.load_state_dict(data)
