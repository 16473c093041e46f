"""Ulysses context parallel: each rank holds a slice of the sequence; around attention an all-to-all trades the
sequence split for a head split, so every rank attends over the whole sequence for heads / cp_size heads."""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._functional_collectives import all_to_all_single_autograd, wait_tensor
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from tunesmith.utils.errors import ConfigError, DataError

IMPLEMENTATION = "tunesmith_ulysses"


def _all_to_all(x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """Exchange equal chunks of dim 0 with every rank of `group` (differentiable)."""
    return wait_tensor(all_to_all_single_autograd(x.contiguous(), None, None, group))


def seq_to_heads(x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """(B, H, S/cp, D) -> (B, H/cp, S, D)."""
    cp = dist.get_world_size(group)
    b, h, s, d = x.shape
    x = x.reshape(b, cp, h // cp, s, d).permute(1, 0, 2, 3, 4)
    x = _all_to_all(x, group)  # dim 0 now indexes the source rank = the sequence chunk
    return x.permute(1, 2, 0, 3, 4).reshape(b, h // cp, cp * s, d)


def heads_to_seq(x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """(B, S, H/cp, D) -> (B, S/cp, H, D)."""
    cp = dist.get_world_size(group)
    b, s, h, d = x.shape
    x = x.reshape(b, cp, s // cp, h, d).permute(1, 0, 2, 3, 4)
    x = _all_to_all(x, group)  # dim 0 now indexes the source rank = the head group
    return x.permute(1, 2, 0, 3, 4).reshape(b, s // cp, cp * h, d)


def _repeat_heads(x: torch.Tensor, cp: int) -> torch.Tensor:
    """Key/value heads fewer than (or not divisible by) cp: repeat them up to a multiple of cp."""
    heads = x.shape[1]
    if heads % cp == 0:
        return x
    factor = cp // heads if cp % heads == 0 else None
    if factor is None:
        raise ConfigError(f"cp_size: {cp} and the model's {heads} key/value heads: one must divide the other")
    return x.repeat_interleave(factor, dim=1)


def _inner_attention(module: nn.Module, inner: str) -> Callable:
    """The wrapped implementation: a registered one (sdpa), or the model file's own eager function."""
    if inner == "eager":
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[inner]


class _LocalHeads:
    """The attention module as the wrapped function sees it: this rank's heads only (`num_key_value_groups`, and
    gpt-oss's per-head attention `sinks`); everything else is the module's own."""

    def __init__(self, module: nn.Module, groups: int, heads: slice) -> None:
        self._module, self.num_key_value_groups = module, groups
        sinks = getattr(module, "sinks", None)
        if sinks is not None:
            self.sinks = sinks[heads]

    def __getattr__(self, name: str):
        return getattr(self._module, name)


def _gathered_mask(query: torch.Tensor, window: int | None) -> torch.Tensor:
    """The additive causal mask (within `window` tokens back, when given) over the gathered sequence."""
    pos = torch.arange(query.shape[2], device=query.device)
    allowed = pos[None, :] <= pos[:, None]
    if window:
        allowed &= pos[:, None] - pos[None, :] < window
    mask = torch.zeros(allowed.shape, dtype=query.dtype, device=query.device)
    return mask.masked_fill(~allowed, torch.finfo(query.dtype).min)[None, None]


def make_ulysses_attention(inner: str, group: dist.ProcessGroup):
    """An attention function for transformers that wraps implementation `inner` (sdpa or eager)."""
    cp = dist.get_world_size(group)

    def attention(module: nn.Module, query, key, value, attention_mask, **kwargs):
        if attention_mask is not None:
            raise DataError(
                "context parallel (cp_size > 1) takes unpadded or right-padded rows without attention_mask "
                "(packed rows are not supported yet)"
            )
        if query.shape[1] % cp:
            raise ConfigError(f"cp_size: {cp} does not divide the model's {query.shape[1]} attention heads")
        key, value = _repeat_heads(key, cp), _repeat_heads(value, cp)
        groups, per_rank = query.shape[1] // key.shape[1], query.shape[1] // cp
        query, key, value = (seq_to_heads(t, group) for t in (query, key, value))
        rank = dist.get_rank(group)
        local = _LocalHeads(module, groups, slice(rank * per_rank, (rank + 1) * per_rank))
        window = kwargs.get("sliding_window")
        if not window or window >= query.shape[2]:  # no window, or one as long as the gathered sequence
            window = None
        # eager attention is causal only through its mask; sdpa is causal without one, but not windowed
        mask = _gathered_mask(query, window) if inner == "eager" or window else None
        out, weights = _inner_attention(module, inner)(local, query, key, value, mask, **kwargs)
        return heads_to_seq(out, group), weights

    return attention


def apply_ulysses(model: nn.Module, group: dist.ProcessGroup) -> nn.Module:
    """Route every attention layer of a transformers model through Ulysses over `group` (the cp ranks)."""
    inner = model.config._attn_implementation or "sdpa"
    if inner not in ("sdpa", "eager"):
        raise ConfigError(
            f"cp_type: ulysses wraps sdpa or eager attention, not {inner!r}; set attn_implementation"
        )
    name = f"{IMPLEMENTATION}_{inner}"
    AttentionInterface.register(name, make_ulysses_attention(inner, group))
    AttentionMaskInterface.register(name, _no_mask)
    model.set_attn_implementation(name)
    return model


def _no_mask(*args, **kwargs) -> None:
    """Causal attention over the gathered sequence needs no mask (each rank's slice alone would be wrong)."""
    return None


def split_sequence(batch: dict[str, torch.Tensor], rank: int, cp: int) -> dict[str, torch.Tensor]:
    """This cp rank's slice of a micro-batch: `input_ids`, global `position_ids`, and `labels` already shifted to
    the next token (so the loss needs no shift and no token pair crosses a slice boundary)."""
    ids = batch["input_ids"]
    length = ids.shape[1]
    if length % cp:
        raise DataError(
            f"context parallel: sequence length {length} is not a multiple of cp_size {cp}; pad it"
        )
    labels = torch.full_like(batch["labels"], -100)
    labels[:, :-1] = batch["labels"][:, 1:]
    positions = torch.arange(length).expand_as(ids)
    given = batch.get("position_ids")
    if given is not None and not torch.equal(given, positions):
        # attention over the gathered row is plain causal: packed sequences would attend to each other
        raise DataError("context parallel (cp_size > 1) does not support packed rows yet; turn packing off")
    chunk = slice(rank * length // cp, (rank + 1) * length // cp)
    return {"input_ids": ids[:, chunk], "position_ids": positions[:, chunk], "shift_labels": labels[:, chunk]}
