"""Mixed precision: bf16/fp16 autocast (CPU or CUDA), fp16 loss scaling, tf32, and the dtype of full-precision eval."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import torch

from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")

BACKENDS = ("auto", "cpu_amp", "amp")


@dataclasses.dataclass
class Precision:
    """How the forward pass runs and how the loss is scaled before backward."""

    device_type: str
    dtype: torch.dtype | None  # autocast dtype; None = full precision
    scaler: torch.amp.GradScaler | None  # fp16 only

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for the forward pass and loss."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to call backward on."""
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the loss scale (before clipping)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimizer step (skipped by the scaler when fp16 gradients overflowed) and scale update."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()


def build_precision(train: Any, device: torch.device) -> Precision:
    """The precision policy of the training arguments `train` on `device`."""
    if train.bf16 and train.fp16:
        raise ConfigError("bf16 and fp16 are both set; choose one")
    backend = getattr(train, "half_precision_backend", "auto") or "auto"
    if backend not in BACKENDS:
        raise ConfigError(
            f"half_precision_backend: {backend!r} is not available (apex is not supported); use auto"
        )
    if getattr(train, "tf32", None):
        _enable_tf32(device)
    if train.bf16:
        return Precision(device.type, torch.bfloat16, None)
    if train.fp16:
        return Precision(device.type, torch.float16, torch.amp.GradScaler(device.type))
    return Precision(device.type, None, None)


def _enable_tf32(device: torch.device) -> None:
    if device.type != "cuda" or torch.cuda.get_device_capability(device)[0] < 8:
        logger.warning("tf32 has no effect here: it needs an NVIDIA Ampere (or newer) GPU; on CPU use bf16")
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def eval_dtype(train: Any) -> torch.dtype | None:
    """The dtype the model is cast to for evaluation (`bf16_full_eval` / `fp16_full_eval`), or None."""
    if getattr(train, "bf16_full_eval", False) and getattr(train, "fp16_full_eval", False):
        raise ConfigError("bf16_full_eval and fp16_full_eval are both set; choose one")
    if getattr(train, "bf16_full_eval", False):
        return torch.bfloat16
    if getattr(train, "fp16_full_eval", False):
        return torch.float16
    return None


@contextlib.contextmanager
def cast_for_eval(model: torch.nn.Module, dtype: torch.dtype | None) -> Iterator[None]:
    """Evaluate with the model's floating-point weights and buffers cast to `dtype` (HF's full bf16/fp16 eval:
    a cast, not autocast); the original tensors are put back afterwards, bit for bit. None: no cast."""
    if dtype is None:
        yield
        return
    kept = [
        (t, t.data)
        for t in (*model.parameters(), *model.buffers())
        if t.is_floating_point() and t.dtype != dtype
    ]
    for tensor, data in kept:
        tensor.data = data.to(dtype)
    try:
        yield
    finally:
        for tensor, data in kept:
            tensor.data = data
