"""Reward-model loss (stage rm), as TRL 1.16's RewardTrainer: -log sigmoid(r_chosen - r_rejected) per pair, plus
`center_rewards_coefficient` x (r_chosen + r_rejected)^2 (mean over pairs: TRL's mean of squared sums).

The reward of a sequence is the score head's output at its last token. It is read with a forward hook on the head
(per-token scores), so the model is always called through its wrappers (DDP, FSDP2, DeepSpeed, PEFT) and packed
rows work too. Metrics as TRL logs them: accuracy, margin, mean_reward (and rewards/chosen, rewards/rejected).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.model.value_head import HEAD
from tunesmith.train.losses.dpo import MetricSums
from tunesmith.train.losses.logps import model_inputs

REWARD_METRICS = ("accuracy", "margin", "mean_reward", "rewards/chosen", "rewards/rejected")


class ScoreTap:
    """Keeps the per-token output of the `score` head of the last forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        heads = [
            m for name, m in model.named_modules() if name.split(".")[-1] == HEAD and hasattr(m, "weight")
        ]
        if not heads:
            raise TypeError(f"{type(model).__name__} has no {HEAD!r} head; stage rm needs a reward model")
        self.scores: torch.Tensor | None = None
        self.handles = [head.register_forward_hook(self._keep) for head in heads]

    def _keep(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        self.scores = output


def last_positions(sequence_ids: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of the last position of each of `count` sequences."""
    rows, cols = torch.nonzero(sequence_ids >= 0, as_tuple=True)
    owner = sequence_ids[rows, cols]
    flat = rows * sequence_ids.size(1) + cols
    last = torch.full((count,), -1, dtype=flat.dtype, device=flat.device).scatter_reduce(
        0, owner, flat, reduce="amax"
    )
    return last // sequence_ids.size(1), last % sequence_ids.size(1)


class RewardObjective:
    """The stage-rm loss for the trainer: `(model, micro-batch of pairs) -> (sum of per-pair losses, aux)`."""

    metric_names = REWARD_METRICS

    def __init__(self, pref: Any, model: torch.nn.Module) -> None:
        self.center = pref.center_rewards_coefficient
        self.tap = ScoreTap(model)
        self.metrics = MetricSums(REWARD_METRICS)

    def units(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pairs in the micro-batch."""
        return (batch["sequence_ids"].amax() + 1) // 2

    def rewards(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], count: int) -> torch.Tensor:
        """The reward of each of the `count` sequences of `batch`."""
        model(**model_inputs(batch), use_cache=False)
        rows, cols = last_positions(batch["sequence_ids"], count)
        return self.tap.scores[rows, cols, 0].float()

    def __call__(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = int(self.units(batch))
        chosen, rejected = self.rewards(model, batch, 2 * pairs).chunk(2)
        losses = -F.logsigmoid(chosen - rejected)
        if self.center is not None:
            losses = losses + self.center * (chosen + rejected) ** 2
        c, r = chosen.detach(), rejected.detach()
        values = {
            "accuracy": (c > r).float(),
            "margin": c - r,
            "mean_reward": (c + r) / 2,
            "rewards/chosen": c,
            "rewards/rejected": r,
        }
        self.metrics.add(values)
        return losses.sum(), losses.new_zeros(())

    def step_metrics(self, sync_group: Any = None) -> dict[str, float]:
        """The metrics averaged over the pairs since the last call."""
        return self.metrics.pop(sync_group)
