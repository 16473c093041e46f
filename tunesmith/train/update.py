"""How gradients become a parameter update: backward, gradient synchronisation, clipping and the optimizer step.

`TorchUpdate` serves a plain, DDP, FSDP2 or tensor-parallel model with a torch optimizer (loss scaling for fp16,
DDP's `no_sync` for all but the step's last micro-batch, sharding-aware clipping). `DeepSpeedUpdate` hands all of
that to a DeepSpeed engine, which owns the partitioned gradients and optimizer state (ZeRO 1/2/3, offload) and
clips with the JSON's `gradient_clipping`. The trainer talks only to this interface.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from tunesmith.dist.deepspeed import check_checkpoint_files
from tunesmith.train.grad_clip import clip_grad_norm
from tunesmith.train.precision import Precision
from tunesmith.utils.errors import ConfigError

TAG = "state"  # the DeepSpeed checkpoint tag inside a checkpoint's `deepspeed/` folder


class TorchUpdate:
    """Backward and step with a torch optimizer; `max_grad_norm` <= 0 disables clipping (the norm is still
    measured)."""

    state_dir: str | None = (
        None  # model and optimizer are checkpointed by the checkpoint module, not by an engine
    )

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        precision: Precision,
        max_grad_norm: float,
    ) -> None:
        self.model, self.optimizer, self.precision = model, optimizer, precision
        self.max_grad_norm = max_grad_norm
        self.dynamic_loss_scale = precision.scaler is not None

    def sync(self, last: bool) -> contextlib.AbstractContextManager:
        """DDP: all-reduce gradients only in the backward of the step's last micro-batch."""
        if not last and isinstance(self.model, DistributedDataParallel):
            return self.model.no_sync()
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradients of `loss` (scaled for fp16)."""
        self.precision.scale(loss).backward()

    def step(self, loss_finite: bool) -> tuple[float, bool]:
        """Unscale, clip and update; returns the gradient norm before clipping and whether loss and norm were
        finite. A non-finite step is not applied (fp16: the scaler decides and lowers its scale)."""
        self.precision.unscale(self.optimizer)
        if hasattr(self.optimizer, "take_grad_norm"):  # layer-wise: updated inside backward, nothing to clip
            grad_norm = self.optimizer.take_grad_norm()
        else:
            params = [p for p in self.model.parameters() if p.grad is not None]
            limit = self.max_grad_norm if self.max_grad_norm > 0 else float("inf")
            grad_norm = clip_grad_norm(params, limit)
        finite = loss_finite and math.isfinite(grad_norm)
        if finite or self.dynamic_loss_scale:
            self.precision.step(self.optimizer)
        self.zero_grad()
        return grad_norm, finite

    def zero_grad(self) -> None:
        """Drop the accumulated gradients."""
        self.optimizer.zero_grad(set_to_none=True)


class DeepSpeedUpdate:
    """Backward and step through a DeepSpeed engine with caller-owned gradient accumulation: every backward only
    accumulates, `step` reduces, clips and updates once per optimizer step (however many micro-batches it had).

    The forward runs without autocast: the engine keeps the module in bf16/fp16 itself when the JSON enables it.
    Checkpoints hold the engine's own files (`state_dir` of the checkpoint): every rank's ZeRO partitions. The
    trainer's learning-rate schedule drives `optimizer` (the engine's base optimizer)."""

    state_dir = "deepspeed"

    def __init__(self, engine: Any, optimizer: torch.optim.Optimizer) -> None:
        self.engine, self.model, self.optimizer = engine, engine, optimizer
        device = next(engine.module.parameters()).device
        self.precision = Precision(device.type, None, None)
        self.dynamic_loss_scale = bool(engine.fp16_enabled())

    def sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Nothing to do: the engine reduces gradients in `step`."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate gradients (the loss is already normalised for the whole step: no 1/GA scaling here)."""
        self.engine.backward(loss, scale_wrt_gas=False)

    def step(self, loss_finite: bool) -> tuple[float, bool]:
        """Reduce, clip (the JSON's `gradient_clipping`) and update; DeepSpeed skips the update when the gradients
        overflow. Returns the gradient norm before clipping and whether loss and norm were finite."""
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        grad_norm = float(norm) if norm is not None else float("nan")
        return grad_norm, loss_finite and math.isfinite(grad_norm) and self.engine.was_step_applied()

    def zero_grad(self) -> None:
        """Drop the accumulated gradients."""
        self.engine.zero_grad()

    def save_state(self, folder: Path) -> None:
        """Every rank writes its partitions of model and optimizer state (and an engine-owned schedule) to
        `folder`. A collective."""
        # `latest` names the tag: DeepSpeed's weights-only ZeRO-3 load (load_best_model_at_end) looks for it
        self.engine.save_checkpoint(str(folder), tag=TAG, save_latest=True)

    def load_state(self, folder: Path, with_optimizer: bool = True) -> None:
        """Restore what `save_state` wrote, on the same number of ranks (only the weights without
        `with_optimizer`)."""
        saved = len(list(folder.glob(f"{TAG}/*optim_states.pt")))
        world = self.engine.dp_world_size
        if with_optimizer and saved and saved != world:
            raise ConfigError(
                f"resume_from_checkpoint: {folder.parent} holds DeepSpeed optimizer partitions of {saved} processes; "
                f"DeepSpeed resumes them only on as many (this run has {world}): resume with {saved} processes"
            )
        check_checkpoint_files(folder, TAG)
        path, _ = self.engine.load_checkpoint(
            str(folder),
            tag=TAG,
            load_optimizer_states=with_optimizer,
            load_lr_scheduler_states=False,
            load_module_only=not with_optimizer,
        )
        if path is None:
            raise ConfigError(f"resume_from_checkpoint: {folder} holds no DeepSpeed checkpoint")
