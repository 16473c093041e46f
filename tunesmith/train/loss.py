"""Causal-LM losses: summed token cross-entropy (normalised once per optimizer step), chunked CE, MoE aux loss.

The trainer sums token losses over every micro-batch of an optimizer step and divides once by the number of
valid label tokens in the whole step (`step_tokens`), so gradient accumulation gives the gradient of one big
batch. The MoE router loss (times `router_aux_loss_coef`) is averaged over the micro-batches of a step, so its
weight does not grow with gradient accumulation (transformers.Trainer sums it; the two agree at accumulation 1).
Labels are not shifted (the position `t` predicts `labels[t + 1]`); `-100` marks unsupervised tokens. A
micro-batch's `loss_weights` (B, T), aligned with the labels (`token_loss_weights`), weight each token's loss
in the sum; the step is still divided by its valid tokens (ms-swift's loss_scale).

The model computes logits only at the positions that have a target (`logits_to_keep` as a boolean mask, which
transformers' causal LMs accept): prompt tokens, padding and each sequence's last position never reach the LM head
(a model class without that mask computes them all, as before); the loss is the same sum.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.checkpoint import checkpoint

from tunesmith.utils.errors import ConfigError

IGNORE_INDEX = -100
WEIGHTS = "loss_weights"


def valid_tokens(labels: torch.Tensor) -> torch.Tensor:
    """Number of label tokens that take part in the loss (after the causal shift)."""
    return (labels[..., 1:] != IGNORE_INDEX).sum()


def token_ce_sum(
    logits: torch.Tensor,
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum over valid tokens of the (optionally label-smoothed) cross-entropy of next-token `logits` (B, T, V),
    each token's term times its `weights` entry (aligned with `labels`) when given.

    `labels` one position longer than `logits` (a context-parallel slice) are already aligned: labels[:, 1:] are
    the targets of every logit position."""
    shifted = (logits if labels.size(1) == logits.size(1) + 1 else logits[:, :-1, :]).float()
    targets = labels[:, 1:].to(shifted.device)
    ce = F.cross_entropy(
        shifted.reshape(-1, shifted.size(-1)),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum" if weights is None else "none",
        label_smoothing=label_smoothing,
    )
    return ce if weights is None else (ce * shifted_weights(weights, ce.device)).sum()


def next_token_targets(labels: torch.Tensor, length: int, fill: float = IGNORE_INDEX) -> torch.Tensor:
    """The target of each of the `length` input positions: the next label, `fill` after the last one (`labels`
    one position longer, a context-parallel slice, are aligned already). Also aligns per-label loss weights."""
    if labels.size(1) == length + 1:
        return labels[:, 1:]
    return F.pad(labels[:, 1:], (0, 1), value=fill)


def kept_ce_sum(
    logits: torch.Tensor,
    targets: torch.Tensor,
    label_smoothing: float = 0.0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """`token_ce_sum` for logits (N, V) computed only at positions with a target (N,), each weighted by `weights`
    (N,) when given."""
    ce = F.cross_entropy(
        logits.float(),
        targets.to(logits.device),
        ignore_index=IGNORE_INDEX,
        reduction="sum" if weights is None else "none",
        label_smoothing=label_smoothing,
    )
    return ce if weights is None else (ce * weights.to(device=ce.device, dtype=torch.float32)).sum()


@functools.cache
def takes_logit_mask(cls: type) -> bool:
    """Whether the causal LM class `cls` slices its hidden states with transformers' `slice_logits_to_keep`, which
    accepts a boolean (B, T) mask of the positions to compute logits for."""
    owner = next((k for k in cls.__mro__ if "forward" in vars(k)), None)
    if owner is None or not hasattr(sys.modules.get(owner.__module__), "slice_logits_to_keep"):
        return False
    return "logits_to_keep" in inspect.signature(owner.forward).parameters


def shifted_weights(weights: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The loss weights of the targets (positions 1..T), flattened as the token losses are."""
    return weights[:, 1:].reshape(-1).to(device=device, dtype=torch.float32)


def chunked_ce_sum(
    hidden: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    labels: torch.Tensor,
    chunk_size: int,
    label_smoothing: float = 0.0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """`token_ce_sum(head(hidden), labels, label_smoothing, weights)` over sequence chunks of `chunk_size`.

    Each chunk's logits are built, reduced to a scalar and freed; backward recomputes them chunk by chunk
    (activation checkpointing), so the full (B, T, V) fp32 logits never exist.
    """
    targets = torch.full_like(labels, IGNORE_INDEX)
    targets[:, :-1] = labels[:, 1:]
    target_weights = None
    if weights is not None:
        target_weights = torch.zeros(labels.shape, dtype=torch.float32, device=hidden.device)
        target_weights[:, :-1] = weights[:, 1:]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.size(1), chunk_size):
        h = hidden[:, start : start + chunk_size]
        t = targets[:, start : start + chunk_size]
        w = None if target_weights is None else target_weights[:, start : start + chunk_size]
        if bool((t != IGNORE_INDEX).any()):
            total = total + checkpoint(_chunk_ce, h, t, head, label_smoothing, w, use_reentrant=False)
    return total


def _chunk_ce(
    h: torch.Tensor, t: torch.Tensor, head: Callable, label_smoothing: float, w: torch.Tensor | None
) -> torch.Tensor:
    logits = head(h).float()
    ce = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)),
        t.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum" if w is None else "none",
        label_smoothing=label_smoothing,
    )
    return ce if w is None else (ce * w.reshape(-1)).sum()


class CausalLMLoss:
    """Runs a model on a micro-batch and returns its summed token loss (and the MoE auxiliary loss)."""

    def __init__(
        self,
        label_smoothing: float = 0.0,
        chunk_size: int | None = None,
        aux_loss_coef: float = 0.0,
        token_loss: Callable[..., torch.Tensor] | None = None,
        regularizer: Callable[[], torch.Tensor] | None = None,
    ):
        """`token_loss(logits, labels, inputs)`, when given, replaces the summed cross-entropy (sft_losses.py);
        `regularizer()` (AdaLoRA's orthogonality penalty) joins the auxiliary loss, once per optimizer step."""
        if token_loss is not None and (label_smoothing or chunk_size):
            raise ConfigError(
                "use_dft_loss/use_eaft_loss/use_asft_loss: not combinable with label_smoothing_factor or "
                "chunk_loss_size; drop those"
            )
        self.label_smoothing = label_smoothing
        self.chunk_size = chunk_size or None
        self.aux_loss_coef = aux_loss_coef
        self.token_loss = token_loss
        self.regularizer = regularizer

    def __call__(
        self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of token CE over valid tokens, auxiliary loss already multiplied by its coefficient)."""
        inputs = {k: v for k, v in batch.items() if k not in ("labels", WEIGHTS)}
        labels, weights = batch["labels"], batch.get(WEIGHTS)
        moe = self.aux_loss_coef > 0
        if moe:
            inputs["output_router_logits"] = True
        if self.chunk_size:
            return self._chunked(model, inputs, labels, moe, weights)
        if self.token_loss is None and takes_logit_mask(type(unwrap(model))):
            return self._kept(model, inputs, labels, moe, weights)
        out = model(**inputs, use_cache=False)
        if self.token_loss is not None:
            ce = self.token_loss(out.logits, labels, batch_inputs(inputs), weights=weights)
        else:
            ce = token_ce_sum(out.logits, labels, self.label_smoothing, weights)
        return ce, self._aux(out.aux_loss if moe else None, ce)

    def _kept(
        self,
        model: torch.nn.Module,
        inputs: dict,
        labels: torch.Tensor,
        moe: bool,
        weights: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The summed CE with logits only where a target is (the LM head skips every other position)."""
        targets = next_token_targets(labels, inputs["input_ids"].size(1))
        keep = targets != IGNORE_INDEX
        out = model(**inputs, use_cache=False, logits_to_keep=keep.to(inputs["input_ids"].device))
        kept_weights = None if weights is None else next_token_targets(weights, keep.size(1), 0.0)[keep]
        ce = kept_ce_sum(out.logits, targets[keep], self.label_smoothing, kept_weights)
        return ce, self._aux(out.aux_loss if moe else None, ce)

    def _chunked(
        self,
        model: torch.nn.Module,
        inputs: dict,
        labels: torch.Tensor,
        moe: bool,
        weights: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        decoder, head = decoder_and_head(model)
        out = decoder(**inputs, use_cache=False)
        ce = chunked_ce_sum(
            out.last_hidden_state, head, labels, self.chunk_size, self.label_smoothing, weights
        )
        aux = None
        if moe:
            aux = moe_aux_loss(model, out.router_logits, inputs.get("attention_mask"))
        return ce, self._aux(aux, ce)

    def _aux(self, aux: torch.Tensor | None, ce: torch.Tensor) -> torch.Tensor:
        extra = self.regularizer() if self.regularizer is not None else ce.new_zeros(())
        if aux is None:
            return extra
        return self.aux_loss_coef * aux.to(ce.device) + extra


def batch_inputs(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model inputs of a micro-batch without the options this loss added (for a reference model)."""
    return {k: v for k, v in inputs.items() if k != "output_router_logits"}


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside DDP and PEFT wrappers."""
    if isinstance(model, DistributedDataParallel):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The decoder stack (returning hidden states) and the LM head of a causal LM, through PEFT wrappers."""
    if isinstance(model, DistributedDataParallel):
        raise ConfigError(
            "chunk_loss_size: not supported with DDP (its gradient sync needs the full forward); "
            "use FSDP2 (dist_config: {name: fsdp2}) or drop chunk_loss_size"
        )
    base = unwrap(model)
    decoder, head = base.get_decoder(), base.get_output_embeddings()
    if decoder is None or head is None:
        raise TypeError(
            f"{type(base).__name__} exposes no decoder/LM head; chunk_loss_size needs a causal LM"
        )
    return decoder, head


def moe_aux_loss(
    model: torch.nn.Module, router_logits: tuple, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """The load-balancing loss of the routers, computed by the model family's own function."""
    base = unwrap(model)
    family = sys.modules[type(base).__module__]
    if not hasattr(family, "load_balancing_loss_func"):
        raise TypeError(
            f"{type(base).__name__} has no router load-balancing loss; set router_aux_loss_coef: 0"
        )
    mask = attention_mask if attention_mask is not None and attention_mask.dim() == 2 else None
    return family.load_balancing_loss_func(router_logits, base.num_experts, base.num_experts_per_tok, mask)
