"""Token-weighted SFT losses of LLaMA-Factory: DFT, EAFT and ASFT, as sums over the valid tokens.

The trainer divides the sum once by the valid tokens of the whole optimizer step, as for plain cross-entropy
(LLaMA-Factory divides by `num_items_in_batch` for DFT/EAFT, by the micro-batch's tokens for ASFT; all agree when a
step is one micro-batch).

- DFT (dynamic fine-tuning, Wu et al. 2025): `ce_t * p_t`, where `p_t = exp(-ce_t)` is detached.
- EAFT: `ce_t * (H_t / 3) ** alpha`, where `H_t` is the entropy of the detached prediction restricted to its top-20
  logits (renormalised).
- ASFT: the DFT term plus `alpha * KL(q_t || p_t)`, `q_t` the prediction of the reference (the starting model,
  frozen) over the whole vocabulary.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.train.loss import shifted_weights, unwrap
from tunesmith.utils.errors import ConfigError

IGNORE_INDEX = -100
EAFT_TOP_K = 20


def _shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token logits (N, V) in fp32 and their targets (N,), as `loss.token_ce_sum` aligns them."""
    shifted = logits if labels.size(1) == logits.size(1) + 1 else logits[:, :-1, :]
    return shifted.float().reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1).to(logits.device)


def token_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy (0 where the target is ignored)."""
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="none")


def dft_weights(ce: torch.Tensor) -> torch.Tensor:
    """DFT's weight: the detached probability of the target token."""
    return torch.exp(-ce.detach())


def eaft_weights(logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """EAFT's weight: (entropy of the top-20 renormalised prediction / 3) ** alpha, detached."""
    top = torch.topk(logits.detach(), k=min(EAFT_TOP_K, logits.size(-1)), dim=-1).values
    log_p = top - torch.logsumexp(top, dim=-1, keepdim=True)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return (entropy / 3.0) ** alpha


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Per-token KL(q_ref || p_model) over the vocabulary."""
    log_p = F.log_softmax(logits, dim=-1)
    log_q = F.log_softmax(ref_logits.float(), dim=-1)
    return (log_q.exp() * (log_q - log_p)).sum(-1)


def weighted_ce_sum(
    method: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 1.0,
    ref_logits: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum over valid tokens of the `method` (dft, eaft, asft) token loss of next-token `logits` (B, T, V),
    each token's loss times its `weights` entry (aligned with `labels`, token_loss_weights) when given."""
    flat, targets = _shifted(logits, labels)
    valid = targets != IGNORE_INDEX
    ce = token_ce(flat, targets)
    token_loss = ce * (eaft_weights(flat, alpha) if method == "eaft" else dft_weights(ce))
    if method == "asft":
        if ref_logits is None:
            raise ValueError("asft needs the reference model's logits")
        ref_flat, _ = _shifted(ref_logits, labels)
        token_loss = token_loss + alpha * kl_to_reference(flat, ref_flat)
    if weights is not None:
        token_loss = token_loss * shifted_weights(weights, token_loss.device)
    return token_loss[valid].sum()


class TokenWeightedLoss:
    """The SFT token loss the methods arguments choose, called with the model output's logits."""

    def __init__(self, method: str, alpha: float, reference: torch.nn.Module | None = None) -> None:
        self.method, self.alpha, self.reference = method, alpha, reference

    def __call__(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        inputs: Mapping[str, torch.Tensor],
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ref_logits = None
        if self.reference is not None:
            with torch.no_grad():
                ref_logits = self.reference(**inputs, use_cache=False).logits
        return weighted_ce_sum(self.method, logits, labels, self.alpha, ref_logits, weights)


def build_token_loss(methods: Any, model: torch.nn.Module) -> TokenWeightedLoss | None:
    """The weighted token loss `methods` asks for (use_dft_loss, use_eaft_loss, use_asft_loss), or None."""
    if methods is None:
        return None
    flags = {"dft": methods.use_dft_loss, "eaft": methods.use_eaft_loss, "asft": methods.use_asft_loss}
    chosen = [name for name, on in flags.items() if on]
    if len(chosen) > 1:
        raise ConfigError(f"use_{chosen[0]}_loss and use_{chosen[1]}_loss: choose one SFT loss")
    if not chosen:
        return None
    method = chosen[0]
    if method == "dft":
        return TokenWeightedLoss("dft", 1.0)
    if method == "eaft":
        return TokenWeightedLoss("eaft", methods.eaft_alpha)
    return TokenWeightedLoss("asft", methods.asft_alpha, frozen_copy(model))


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of the starting model in eval mode (ASFT's reference). Forwards patched onto module instances
    (activation checkpointing) are dropped from the copy: deepcopy keeps their closures, which call the original,
    training modules."""
    reference = copy.deepcopy(unwrap(model)).eval()
    for module in reference.modules():
        if "forward" in vars(module):
            del module.forward
    for param in reference.parameters():
        param.requires_grad_(False)
    return reference
