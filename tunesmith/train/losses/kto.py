"""KTO (Ethayarajh et al. 2024), as TRL 1.16's KTOTrainer: desirable examples lose 1 - sigmoid(beta (r - KL)),
undesirable ones 1 - sigmoid(beta (KL - r)), with r = log pi/pi_ref of the completion and KL the micro-batch's
mean log-ratio on mismatched (prompt, completion) pairs (no gradient, averaged over data-parallel ranks, clamped
at 0), weighted by kto_chosen_weight / kto_rejected_weight. The trainer divides the step's sum by its examples.
Metrics: rewards/chosen, rewards/rejected (per desirable / undesirable example), rewards/margins, logps/*, kl.
"""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.train.losses.dpo import MetricSums, reference_logps
from tunesmith.train.losses.logps import run_logps

KTO_METRICS = ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected", "kl")


class KTOObjective:
    """The stage-kto loss for the trainer: `(model, micro-batch) -> (sum of per-example losses, aux)`."""

    metric_names = (*KTO_METRICS, "rewards/margins")

    def __init__(self, pref: Any, reference: torch.nn.Module | None, adapter_reference: bool = False) -> None:
        self.beta = pref.pref_beta
        self.weights = (pref.kto_chosen_weight, pref.kto_rejected_weight)
        self.reference, self.adapter_reference = reference, adapter_reference
        self.metrics = MetricSums(KTO_METRICS)

    def units(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Examples in the micro-batch."""
        return batch["sequence_ids"].amax() + 1

    def kl(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], count: int) -> torch.Tensor:
        """The KL estimate of the micro-batch from its mismatched sequences."""
        with torch.no_grad():
            policy = run_logps(model, batch, count, prefix="kl_")[1].sums
        ref = reference_logps(model, self.reference, batch, count, self.adapter_reference, prefix="kl_").sums
        kl = (policy - ref).mean()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(kl)
            kl = kl / torch.distributed.get_world_size()
        return kl.clamp(min=0)

    def __call__(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        count = int(self.units(batch))
        kl = self.kl(model, batch, count)
        logps = run_logps(model, batch, count)[1].sums
        ratio = logps - reference_logps(model, self.reference, batch, count, self.adapter_reference).sums
        desirable = batch["kto_tag"].bool()
        chosen_loss = self.weights[0] * (1 - torch.sigmoid(self.beta * (ratio - kl)))
        rejected_loss = self.weights[1] * (1 - torch.sigmoid(self.beta * (kl - ratio)))
        losses = torch.where(desirable, chosen_loss, rejected_loss)
        rewards = self.beta * ratio.detach()
        self.metrics.add(
            {
                "rewards/chosen": rewards[desirable],
                "rewards/rejected": rewards[~desirable],
                "logps/chosen": logps.detach()[desirable],
                "logps/rejected": logps.detach()[~desirable],
                "kl": kl.reshape(1),
            }
        )
        return losses.sum(), losses.new_zeros(())

    def step_metrics(self, sync_group: Any = None) -> dict[str, float]:
        """The metrics since the last call; margins = mean chosen reward - mean rejected reward."""
        out = self.metrics.pop(sync_group)
        if "rewards/chosen" in out and "rewards/rejected" in out:
            out["rewards/margins"] = out["rewards/chosen"] - out["rewards/rejected"]
        return out
