"""The wiring every stage shares: tokenizer -> datasets -> model -> batcher -> trainer -> saved outputs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from tunesmith.config import TunesmithConfig
from tunesmith.config.serialize import save_config
from tunesmith.data.batching import build_batcher
from tunesmith.data.pipeline import build_datasets
from tunesmith.model import load_model, load_tokenizer, prepare_for_training, save_pretrained_output
from tunesmith.train.callbacks import SaveOnAbort
from tunesmith.train.model_setup import seed_everything
from tunesmith.train.step_log import JsonlLog
from tunesmith.train.trainer import Trainer, TrainState
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")


def per_token_loss(cfg: TunesmithConfig) -> bool:
    """Normalise by the step's label tokens, unless the user explicitly set calculate_per_token_loss: false
    (MindSpeed's per-micro-batch averaging)."""
    return cfg.train.calculate_per_token_loss or not cfg.is_set("calculate_per_token_loss")


def reporter_for(cfg: TunesmithConfig) -> Any:
    """The reporting backends of `report_to` (trainer_log.jsonl always), or the plain jsonl writer."""
    try:
        from tunesmith.report import build_reporter
    except ImportError:
        return JsonlLog(cfg.train.output_dir)
    return build_reporter(cfg, cfg.train.output_dir, is_main=True)


def run_stage(cfg: TunesmithConfig, stage: str) -> TrainState:
    """Train `cfg` as stage `stage` in this process and save the model, tokenizer and resolved config."""
    if cfg.train.stage != stage:
        raise ConfigError(f"stage: the {stage} recipe was asked to run stage {cfg.train.stage!r}")
    seed_everything(cfg.train)
    tokenizer = load_tokenizer(cfg)
    data = build_datasets(cfg, tokenizer)
    model = prepare_for_training(load_model(cfg, tokenizer), cfg)
    if torch.cuda.is_available() and not cfg.train.use_cpu and not getattr(model, "is_quantized", False):
        model.to("cuda")
    batcher = build_batcher(cfg, data.train, tokenizer, rank=0, world_size=1)
    output_dir = cfg.train.output_dir
    trainer = Trainer(
        model,
        cfg.train,
        batcher,
        aux_loss_coef=cfg.model.router_aux_loss_coef,
        reporter=reporter_for(cfg),
        callbacks=[SaveOnAbort(tokenizer, output_dir)],
        per_token_loss=per_token_loss(cfg),
    )
    try:
        state = trainer.train()
    finally:
        trainer.close()
    save_pretrained_output(model, tokenizer, output_dir)
    save_config(cfg, Path(output_dir) / "tunesmith_config.yaml")
    logger.info("trained %d steps; outputs in %s", state.global_step, output_dir)
    return state
