"""Turn examples into micro-batch tensors: padded to the longest row, or packed rows with `position_ids`.

Micro-batch format (docs/INTERNALS.md): `input_ids`, `labels` (B, T); `attention_mask` (B, T) for padded
batches; `position_ids` (B, T) restarting at 0 per sequence for packed rows; with `mask_4d` a float
`attention_mask` (B, 1, T, T) that is 0 where a query may attend and the dtype's minimum elsewhere. Examples with
`loss_weights` (per-token loss weights, `token_loss_weights`) give a float `loss_weights` (B, T), 0 on padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

IGNORE_INDEX = -100
WEIGHTS = "loss_weights"
Example = dict[str, Any]
Batch = dict[str, torch.Tensor]


def pack_row(examples: Sequence[Example]) -> Example:
    """Concatenate examples into one row: `position_ids` restart at 0 per example, and the first label of every
    example after the first is masked so no token predicts across a boundary."""
    input_ids: list[int] = []
    labels: list[int] = []
    position_ids: list[int] = []
    weights: list[float] = []
    for i, ex in enumerate(examples):
        ids, labs = list(ex["input_ids"]), list(ex["labels"])
        if i > 0 and labs:
            labs[0] = IGNORE_INDEX
        input_ids += ids
        labels += labs
        position_ids += range(len(ids))
        if WEIGHTS in ex:
            weights += [
                0.0 if label == IGNORE_INDEX else w for w, label in zip(ex[WEIGHTS], labs, strict=True)
            ]
    row = {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}
    return {**row, WEIGHTS: weights} if WEIGHTS in examples[0] else row


def split_after(example: Example, separator_id: int) -> list[Example]:
    """Cut a concatenated pre-training block into its documents: a new one starts after each separator (EOS)."""
    ids, labels = list(example["input_ids"]), list(example["labels"])
    cuts = [i + 1 for i, tok in enumerate(ids[:-1]) if tok == separator_id]
    bounds = list(zip([0, *cuts], [*cuts, len(ids)], strict=True))
    return [{"input_ids": ids[a:b], "labels": labels[a:b]} for a, b in bounds]


def _pad(rows: Sequence[Sequence[int]], width: int, value: int, left: bool) -> torch.Tensor:
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        start = width - len(row) if left else 0
        out[i, start : start + len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def pad_collate(
    examples: Sequence[Example],
    pad_id: int,
    *,
    left: bool = False,
    mask_4d: bool = False,
    label_pad_id: int = IGNORE_INDEX,
) -> Batch:
    """Pad `input_ids`/`labels` to the longest example of the micro-batch (on the left when `left`).

    Padded labels are `label_pad_id`: -100 (ignored) unless `ignore_pad_token_for_loss` is off, when they are the
    pad token id and count in the loss, as in LLaMA-Factory."""
    width = max(len(ex["input_ids"]) for ex in examples)
    ids = _pad([ex["input_ids"] for ex in examples], width, pad_id, left)
    labels = _pad([ex["labels"] for ex in examples], width, label_pad_id, left)
    valid = _pad([[1] * len(ex["input_ids"]) for ex in examples], width, 0, left)
    mask = padded_causal_mask(valid) if mask_4d else valid
    return _with_weights({"input_ids": ids, "labels": labels, "attention_mask": mask}, examples, width, left)


def packed_collate(rows: Sequence[Example], pad_id: int, *, mask_4d: bool = False) -> Batch:
    """Stack packed rows (each with `position_ids`), right-padding shorter rows to the longest.

    Padding forms a block of its own (positions restart at 0, labels ignored), so it never touches a real token.
    """
    width = max(len(row["input_ids"]) for row in rows)
    ids = _pad([row["input_ids"] for row in rows], width, pad_id, False)
    labels = _pad([row["labels"] for row in rows], width, IGNORE_INDEX, False)
    filled = [list(row["position_ids"]) + list(range(width - len(row["position_ids"]))) for row in rows]
    positions = torch.tensor(filled, dtype=torch.long)
    batch = {"input_ids": ids, "labels": labels, "position_ids": positions}
    if mask_4d:
        batch["attention_mask"] = block_causal_mask(positions)
    return _with_weights(batch, rows, width, False)


def _with_weights(batch: Batch, examples: Sequence[Example], width: int, left: bool) -> Batch:
    """The micro-batch with the examples' `loss_weights` padded by 0, when they have them."""
    if WEIGHTS not in examples[0]:
        return batch
    out = torch.zeros((len(examples), width), dtype=torch.float32)
    for i, ex in enumerate(examples):
        row = torch.as_tensor(ex[WEIGHTS], dtype=torch.float32)
        start = width - len(row) if left else 0
        out[i, start : start + len(row)] = row
    return {**batch, WEIGHTS: out}


def _to_float_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mask = torch.zeros(allowed.shape, dtype=dtype)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min).unsqueeze(1)


def block_causal_mask(position_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, 1, T, T) float mask: causal attention kept inside each sequence (a sequence starts at position 0)."""
    segments = (position_ids == 0).cumsum(-1)
    same = segments.unsqueeze(-1) == segments.unsqueeze(-2)
    return _to_float_mask(same & _causal(position_ids.size(-1)), dtype)


def padded_causal_mask(valid: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, 1, T, T) float mask: causal attention to non-padding keys (each query always sees itself)."""
    width = valid.size(-1)
    allowed = _causal(width) & valid.bool().unsqueeze(-2)
    return _to_float_mask(allowed | torch.eye(width, dtype=torch.bool), dtype)


def _causal(width: int) -> torch.Tensor:
    return torch.ones(width, width, dtype=torch.bool).tril()
