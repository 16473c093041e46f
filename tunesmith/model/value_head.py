"""Reward models: the causal LM of `cfg.model` with a scalar head (`AutoModelForSequenceClassification`,
`num_labels: 1`), so the saved model loads as a sequence classifier and scores text.

The decoder weights come from the loaded causal LM (built-ins, quantisation and vocabulary growth as for every
stage); the head `score` starts from N(0, initializer_range) drawn with `cfg.train.seed`. With LoRA the head is
trained fully (added to `modules_to_save`).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from tunesmith.model.loader import load_model
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")
HEAD = "score"


def load_reward_model(cfg: Any, tokenizer: Any) -> PreTrainedModel:
    """The reward model of `cfg`: the causal LM's decoder under a one-output `score` head."""
    causal = load_model(cfg, tokenizer)
    if getattr(causal, "is_quantized", False):
        raise ConfigError(
            "quantization_bit: stage rm trains a new score head on a full-precision decoder; unset it"
        )
    config = copy.deepcopy(causal.config)
    config.num_labels = 1
    config.pad_token_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.train.seed))
        model = AutoModelForSequenceClassification.from_config(config, dtype=causal.dtype)
    prefix = causal.base_model_prefix
    getattr(model, prefix).load_state_dict(getattr(causal, prefix).state_dict(), strict=True)
    model.config.use_cache = False
    if cfg.model.finetuning_type in ("lora", "qlora") and HEAD not in (cfg.model.modules_to_save or []):
        cfg.model.modules_to_save = [*(cfg.model.modules_to_save or []), HEAD]
        logger.info("reward model with LoRA: the %s head is trained fully (modules_to_save)", HEAD)
    return model
