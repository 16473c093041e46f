"""ms-swift's truncation strategies for examples longer than cutoff_len: delete the example, keep its end (left:
tokens are cut from the left), keep its start (right), or, for pre-training documents, split it into cutoff_len
pieces. Unset, tunesmith splits the budget between prompt and answer per turn as LLaMA-Factory does."""

from __future__ import annotations

from tunesmith.utils.errors import ConfigError

STRATEGIES = ("delete", "left", "right", "split")


def truncate(
    input_ids: list[int], labels: list[int], cutoff_len: int, strategy: str
) -> tuple[list[int], list[int]] | None:
    """The example cut to `cutoff_len` tokens by `strategy` (None: deleted). `split` is for documents only."""
    if len(input_ids) <= cutoff_len:
        return input_ids, labels
    if strategy == "delete":
        return None
    if strategy == "left":
        return input_ids[-cutoff_len:], labels[-cutoff_len:]
    if strategy == "right":
        return input_ids[:cutoff_len], labels[:cutoff_len]
    raise ConfigError(
        f"truncation_strategy: {strategy!r} splits pre-training documents (stage: pt); for conversations use "
        "delete, left or right"
    )


def cut_document(doc: list[int], cutoff_len: int, strategy: str | None) -> list[list[int]]:
    """One pre-training document as examples of at most `cutoff_len` tokens (packing off)."""
    if len(doc) <= cutoff_len:
        return [doc]
    if strategy == "split":
        return [doc[i : i + cutoff_len] for i in range(0, len(doc), cutoff_len)]
    if strategy == "delete":
        return []
    if strategy == "left":
        return [doc[-cutoff_len:]]
    return [doc[:cutoff_len]]
