"""TR-DPO's reference update (`sync_ref_model`): every `ref_model_sync_steps` optimizer steps the reference
becomes `alpha` x policy + (1 - alpha) x reference (`ref_model_mixup_alpha`), as TRL's SyncRefModelCallback."""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.train.callbacks import Callback
from tunesmith.train.loss import unwrap


class SyncReference(Callback):
    """Mixes the policy's weights into the frozen reference copy after every `steps` optimizer steps."""

    def __init__(self, reference: torch.nn.Module, alpha: float, steps: int) -> None:
        self.reference, self.alpha, self.steps = reference, alpha, steps

    def on_step_end(self, trainer: Any, metrics: dict[str, Any]) -> None:
        """Sync when the step count is a multiple of `steps` (a collective for sharded policies)."""
        if trainer.state.global_step % self.steps:
            return
        policy = dict(unwrap(getattr(trainer.model, "module", trainer.model)).named_parameters())
        with torch.no_grad():
            for name, ref in self.reference.named_parameters():
                value = policy[name].detach()
                value = value.full_tensor() if hasattr(value, "full_tensor") else value
                ref.mul_(1 - self.alpha).add_(value.to(ref.device, ref.dtype), alpha=self.alpha)
