"""Per-sequence log-probabilities of the supervised tokens of a micro-batch (padded or packed rows).

`sequence_ids` (B, T) names the sequence of every position (see data/batching/pairs.py); labels are not shifted
(position t predicts labels[t + 1]) and -100 marks tokens outside the answer.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from tunesmith.train.loss import IGNORE_INDEX

MODEL_KEYS = ("input_ids", "attention_mask", "position_ids")


@dataclasses.dataclass
class SequenceLogps:
    """Per sequence: summed log-probability of its answer tokens, their count, and (LD-DPO) the sum with the
    tokens past the pair's shared length weighted by `ld_alpha`."""

    sums: torch.Tensor  # (N,)
    tokens: torch.Tensor  # (N,)
    per_token: torch.Tensor  # (M,) log-probability of every answer token, in row-major order
    owner: torch.Tensor  # (M,) its sequence

    @property
    def means(self) -> torch.Tensor:
        """Average log-probability per answer token."""
        return self.sums / self.tokens.clamp(min=1)

    def length_desensitized(self, ld_alpha: float) -> torch.Tensor:
        """LD-DPO: tokens within the shorter answer of the pair count fully, the longer one's tail by ld_alpha
        (sequences k and k + N/2 form a pair)."""
        half = self.tokens.numel() // 2
        shared = torch.minimum(self.tokens[:half], self.tokens[half:]).repeat(2)
        offsets = torch.cumsum(self.tokens, 0) - self.tokens
        position = torch.arange(1, self.owner.numel() + 1, device=self.owner.device) - offsets[self.owner]
        weight = torch.where(position <= shared[self.owner], 1.0, ld_alpha)
        return torch.zeros_like(self.sums).index_add_(0, self.owner, self.per_token * weight)


def model_inputs(batch: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """The keys a causal LM takes, from `batch` (those under `prefix`, e.g. KTO's `kl_`)."""
    return {k: batch[prefix + k] for k in MODEL_KEYS if prefix + k in batch}


def sequence_logps(
    logits: torch.Tensor, labels: torch.Tensor, sequence_ids: torch.Tensor, count: int
) -> SequenceLogps:
    """Sum the answer-token log-probabilities of next-token `logits` (B, T, V) into `count` sequences."""
    targets = labels[:, 1:].to(logits.device)
    owner = sequence_ids[:, 1:].to(logits.device)
    nll = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.size(-1)),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    valid = targets.reshape(-1) != IGNORE_INDEX
    per_token, owner = -nll[valid], owner.reshape(-1)[valid]
    sums = torch.zeros(count, device=logits.device, dtype=per_token.dtype).index_add_(0, owner, per_token)
    tokens = torch.bincount(owner, minlength=count)
    return SequenceLogps(sums, tokens, per_token, owner)


def run_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor], count: int, prefix: str = "") -> tuple:
    """(model output, SequenceLogps) of `model` on the sequences of `batch` (under `prefix`)."""
    out = model(**model_inputs(batch, prefix), use_cache=False)
    logps = sequence_logps(out.logits, batch[prefix + "labels"], batch[prefix + "sequence_ids"], count)
    return out, logps
