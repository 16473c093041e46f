"""Input-token counting with HF's meaning (`include_num_input_tokens_seen`, `tokens_per_second`): the tokens fed
to the model, beside the supervised label tokens (`tokens`) the loss is normalised by."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def input_tokens_mode(args: Any) -> str:
    """`include_num_input_tokens_seen` as HF normalises it: all, non_padding or no (true: all; unset: no)."""
    value = args.include_num_input_tokens_seen
    if value is True or value == "all":
        return "all"
    return "non_padding" if value == "non_padding" else "no"


def step_input_tokens(
    group: Sequence[dict[str, torch.Tensor]], args: Any, distributed: bool, sync_group: Any = None
) -> int:
    """Input tokens of one optimizer step summed over the data-parallel ranks: every position (HF's `all`, also
    what `tokens_per_second` counts when the mode is `no`) or the positions a 2D attention mask keeps
    (`non_padding`; packed rows have no padding)."""
    non_padding = input_tokens_mode(args) == "non_padding"
    count = torch.zeros((), dtype=torch.long, device=group[0]["input_ids"].device)
    for mb in group:
        mask = mb.get("attention_mask")
        count += (
            mask.sum() if non_padding and mask is not None and mask.dim() == 2 else mb["input_ids"].numel()
        )
    if distributed:
        torch.distributed.all_reduce(count, group=sync_group)
    return int(count)


def window_rates(window: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Input and label tokens per second over the logged window (each step's time is input/tokens_per_second)."""
    seconds = sum(m["input_tokens"] / m["tokens_per_second"] for m in window)
    return {
        "input_tokens": sum(m["input_tokens"] for m in window),
        "tokens_per_second": sum(m["input_tokens"] for m in window) / seconds,
        "label_tokens_per_second": sum(m["tokens"] for m in window) / seconds,
    }
