"""`ignore_pad_token_for_loss`: padded label positions are ignored (default) or carry the pad id, as in LLaMA-Factory."""

from __future__ import annotations

import datasets
import pytest
from helpers import tiny_tokenizer

from tunesmith.config import load_config
from tunesmith.data.batching import build_batcher

ROWS = {"input_ids": [[5, 6, 7, 8], [9, 10]], "labels": [[-100, 6, 7, 8], [-100, 10]]}


@pytest.mark.parametrize(("ignore", "expected_pad_label"), [(True, -100), (False, None)])
def test_padded_labels_follow_ignore_pad_token_for_loss(ignore, expected_pad_label):
    cfg = load_config(
        None,
        [
            "model=builtin:tiny",
            "micro_batch_size=2",
            "disable_shuffling=true",
            "batching_workers=0",
            f"ignore_pad_token_for_loss={ignore}",
        ],
    )
    tokenizer = tiny_tokenizer()
    batch = next(iter(build_batcher(cfg, datasets.Dataset.from_dict(ROWS), tokenizer)))
    pad_label = tokenizer.pad_token_id if expected_pad_label is None else expected_pad_label
    assert batch["labels"].tolist() == [[-100, 6, 7, 8], [-100, 10, pad_label, pad_label]]
