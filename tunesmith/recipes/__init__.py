"""Recipes: one module per training stage (`pt`, `sft`), each with `run(cfg)`."""

from __future__ import annotations

import importlib

from tunesmith.config import TunesmithConfig


def run_recipe(cfg: TunesmithConfig) -> None:
    """Run the recipe of `cfg.train.stage`."""
    importlib.import_module(f"tunesmith.recipes.{cfg.train.stage}").run(cfg)
