"""Vocabulary growth: resize the input embeddings and the LM head to the tokenizer, initialise the new rows.

Documented initialisation (`init_special_tokens`), applied to the input embeddings and, when untied, the LM head:
- `noise_init`: mean of the existing rows + Gaussian noise with std 1/sqrt(hidden_size) (LLaMA-Factory's rule).
- `desc_init`: the mean of the rows of the description's tokens (`new_special_tokens_config`, {token: text}).
- `desc_init_w_noise`: `desc_init` + Gaussian noise with std 0.1 x the std of the existing rows.
The matrices grow to exactly `len(tokenizer)` rows (what `peft` expects when it reloads an adapter saved with its
tokenizer); they never shrink. The noise draws use the run's seed.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tunesmith.model.tokenizer import new_token_ids, read_token_descriptions
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")

DESC_NOISE_SCALE = 0.1


def resize_and_init(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, margs: Any, seed: int
) -> None:
    """Grow the embeddings to `len(tokenizer)` rows and initialise the rows of new tokens."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        if not margs.resize_vocab:
            logger.info(
                "tokenizer has %d tokens but the model only %d rows: resizing the vocabulary",
                len(tokenizer),
                rows,
            )
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        logger.info(
            "embeddings resized from %d to %d rows", rows, model.get_input_embeddings().weight.shape[0]
        )
    total = model.get_input_embeddings().weight.shape[0]
    added = new_token_ids(tokenizer)
    fresh = sorted(set(added) | set(range(rows, total)))
    if not fresh:
        return
    targets = _token_targets(tokenizer, margs, added)
    if model.get_input_embeddings().weight.is_meta:
        return  # a meta-device rank > 0: rank 0's initialised rows arrive after sharding
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for weight in _embedding_weights(model):
            _init_rows(weight, fresh, targets, margs.init_special_tokens)


def _embedding_weights(model: PreTrainedModel) -> list[torch.Tensor]:
    weights = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not weights[0]:
        weights.append(head.weight)
    return weights


def _token_targets(tokenizer: PreTrainedTokenizerBase, margs: Any, added: list[int]) -> dict[int, list[int]]:
    """New token id -> ids of its description's tokens, for the description-based methods."""
    method = margs.init_special_tokens
    if method == "noise_init":
        return {}
    if not margs.new_special_tokens_config:
        raise ConfigError(
            f"init_special_tokens: {method} needs new_special_tokens_config (a YAML of descriptions)"
        )
    targets: dict[int, list[int]] = {}
    for token, text in read_token_descriptions(margs.new_special_tokens_config).items():
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id not in added:
            continue  # the token already existed: keep its trained row
        ids = [i for i in tokenizer(text, add_special_tokens=False)["input_ids"] if i not in added]
        if not ids:
            raise ConfigError(
                f"new_special_tokens_config: the description of {token!r} has no existing tokens to average"
            )
        targets[token_id] = ids
    return targets


def _init_rows(weight: torch.Tensor, fresh: list[int], targets: dict[int, list[int]], method: str) -> None:
    keep = torch.ones(weight.shape[0], dtype=torch.bool)
    keep[fresh] = False
    old = weight[keep].float()
    mean, spread = old.mean(dim=0), old.std()
    for row in fresh:
        if row in targets:
            value = weight[targets[row]].float().mean(dim=0)
            if method == "desc_init_w_noise":
                value = value + torch.randn_like(value) * (DESC_NOISE_SCALE * spread)
        else:
            value = mean + torch.randn_like(mean) / math.sqrt(weight.shape[1])
        weight[row] = value.to(weight.dtype)
