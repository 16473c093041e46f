"""Shared by the test_methods_* files: build a config, model and trainer for a few steps on the tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tunesmith.config import load_config
from tunesmith.model import load_model, load_tokenizer, prepare_for_training
from tunesmith.train.trainer import Trainer


def micro_batches(tokenizer: Any, n: int = 3) -> list[dict[str, torch.Tensor]]:
    """`n` padded micro-batches of two short lines each, every real token supervised."""
    out = []
    for i in range(n):
        ids = tokenizer(
            [f"Example {i}: the answer is {i * 7}.", f"Another line number {i}, a bit longer."],
            padding=True,
            return_tensors="pt",
        )
        labels = ids["input_ids"].masked_fill(ids["attention_mask"] == 0, -100)
        out.append({"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"], "labels": labels})
    return out


def setup(model_dir: Path, out: Path, *overrides: str, steps: int = 3) -> tuple[Any, Any, torch.nn.Module]:
    """(config, tokenizer, prepared model) for `overrides` on the saved tiny model."""
    cfg = load_config(
        None,
        [
            f"model_name_or_path={model_dir}",
            f"output_dir={out}",
            f"max_steps={steps}",
            "logging_steps=1",
            "disable_tqdm=true",
            "learning_rate=1e-2",
            *([] if any(o.startswith("finetuning_type=") for o in overrides) else ["finetuning_type=full"]),
            *overrides,
        ],
        validate=False,
    )
    tokenizer = load_tokenizer(cfg)
    return cfg, tokenizer, prepare_for_training(load_model(cfg, tokenizer), cfg)


def trainer_for(
    cfg: Any, model: torch.nn.Module, data: list[dict[str, torch.Tensor]], **kwargs: Any
) -> Trainer:
    """A Trainer over `data` with the config's method arguments."""
    return Trainer(model, cfg.train, data, methods=cfg.methods, **kwargs)


def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Eval-mode logits of `batch` (labels dropped)."""
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    """Names of the parameters that differ from `before`."""
    return {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
