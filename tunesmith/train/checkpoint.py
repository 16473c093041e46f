"""What a checkpoint holds and writing it: a snapshot of the trainer, the atomic write (temporary name,
completion marker last, rename), the sync or background saver, and rotation. Finding checkpoints is in
`checkpoint_find`, restoring a trainer in `checkpoint_load`.

A checkpoint `checkpoint-<step>/` holds `model.safetensors` (every weight; only the trainable ones when part of
the model is frozen, e.g. LoRA), `optimizer.pt`, `scheduler.pt`, `scaler.pt` (fp16), `rng_state_<rank>.pth`,
`data_state_<rank>.json` (batcher position), `trainer_state.json` and, written last, `COMPLETE` (the list of files
with their sizes and BLAKE2b checksums, verified before resuming). It is written as `checkpoint-<step>.tmp` and
renamed only once complete, so a kill during the write never leaves a visible half checkpoint.

A sharded model (FSDP2 / tensor parallel: DTensor parameters) stores model and optimizer instead in `dcp/`, a torch
distributed checkpoint every rank writes its shards to; it resumes on any number of ranks. Resuming on a different
number of ranks keeps weights, optimizer, scheduler, step and epoch; the data position carries over too when the
micro-batches map onto the new ranks (the same groups, or fixed-count slices of the same shuffled order, and the
examples consumed divide evenly among them: e.g. the same global batch size), so the loss curve continues exactly.
Otherwise (a token-budget strategy whose groups depend on the changed micro batch size) the current epoch's data
order restarts, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safetensors.torch
import torch

from tunesmith.dist.checkpoint_io import is_sharded, save_sharded
from tunesmith.dist.deepspeed import gathered
from tunesmith.train import rng
from tunesmith.train.checkpoint_find import MARKER, PREFIX, STATE_FILE, checkpoints, problem
from tunesmith.train.loss import unwrap
from tunesmith.utils.hashing import ALGORITHM, file_digest

if TYPE_CHECKING:
    from tunesmith.train.trainer import Trainer

logger = logging.getLogger("tunesmith")
DCP_DIR = "dcp"


# --- what a checkpoint holds --------------------------------------------------------------------------------------
# set on a model whose trainable set changes while it trains (LISA, BAdam): its checkpoints keep every weight
TRAINABLE_SET_CHANGES = "tunesmith_trainable_set_changes"


def model_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights a checkpoint stores: all of them, or only the trainable ones when some are frozen (and the
    frozen set never changes)."""
    inner = unwrap(model)
    params = dict(inner.named_parameters())
    if getattr(inner, TRAINABLE_SET_CHANGES, False) or all(p.requires_grad for p in params.values()):
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


def snapshot(trainer: Trainer, rank: int = 0) -> dict[str, Any]:
    """Everything to write, copied to the CPU now (the state at this step, whatever training does next); a sharded
    model's weights and optimizer are not in it (`save_sharded`, or the DeepSpeed engine, writes them from the live
    model)."""
    a = trainer.args
    engine_only_model = trainer.update.state_dir is not None and a.save_only_model
    sharded = is_sharded(trainer.model) or (trainer.update.state_dir is not None and not engine_only_model)
    snap: dict[str, Any] = {
        "weights": None if sharded else _model_copy(trainer, engine_only_model),
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


def _model_copy(trainer: Trainer, engine_only_model: bool) -> dict[str, torch.Tensor]:
    """The weights to store, on the CPU; a DeepSpeed checkpoint with `save_only_model` holds the model's weights
    gathered from every rank's partition (a collective), as transformers writes it, not the engine's files."""
    if not engine_only_model:
        return _unique_storage(model_weights(trainer.model))  # copied with the whole snapshot
    with gathered(trainer.model):  # the full weights exist only inside the block: copy them here
        return _detached_copy(_unique_storage(model_weights(trainer.model.module)))


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
        "num_input_tokens_seen": s.input_tokens_seen,
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
    write_shards: Callable[[Path], None] | None = None,
) -> Path:
    """Write `snap` to `final.tmp`, the marker last, then rename to `final`; returns `final`.

    With several ranks every rank writes its own RNG/data files (and, with `write_shards`, its shards into the
    temporary folder it is given); the ranks that
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
    if write_shards is not None:
        write_shards(tmp)
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
        old = final.with_name(final.name + ".old")
        if (
            final.exists()
        ):  # the same step saved again: the earlier copy goes only once the new one is in place
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return str(value)


def _write_marker(folder: Path) -> None:
    files = {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, ALGORITHM: file_digest(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    with (folder / MARKER).open("w") as f:
        json.dump({"files": files}, f)
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
            # sharded: every rank writes from the live model and optimizer, so never in the background
            self._write(snap, final, trainer, self._shard_writer(trainer))
            return final
        if not self.background:
            self._write(snap, final, trainer)
            return final
        self._thread = threading.Thread(target=self._write_in_background, args=(snap, final, trainer))
        self._thread.start()
        return final

    def _shard_writer(self, trainer: Trainer) -> Callable[[Path], None]:
        """Writes the model and optimizer shards into a checkpoint folder: the engine's own files (DeepSpeed), else
        a torch distributed checkpoint in `dcp/`."""
        update = trainer.update
        if update.state_dir is not None:
            return lambda folder: update.save_state(folder / update.state_dir)
        optimizer = None if self.args.save_only_model else trainer.optimizer
        return lambda folder: save_sharded(folder / DCP_DIR, trainer.model, optimizer)

    def _write(
        self,
        snap: dict[str, Any],
        final: Path,
        trainer: Trainer,
        write_shards: Callable[[Path], None] | None = None,
    ) -> None:
        extra = (
            {} if write_shards is None else {"write_shards": write_shards}
        )  # plain writes: 3-argument call
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
