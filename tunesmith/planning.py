"""`tunesmith plan`: the resolved config plus the derived numbers, counting the real training data when it can."""

from __future__ import annotations

import dataclasses
from typing import Any

from tunesmith.config import TunesmithConfig
from tunesmith.config.plan import run_plan
from tunesmith.config.serialize import config_to_dict
from tunesmith.plan_memory_config import memory_plan
from tunesmith.utils import dist_env


def count_micro_batches(cfg: TunesmithConfig, world_size: int) -> tuple[int, int]:
    """Training examples after preprocessing, and micro-batches per epoch on one data-parallel rank."""
    from tunesmith.config.validate import data_parallel_size
    from tunesmith.data import build_datasets
    from tunesmith.data.batching import build_batcher
    from tunesmith.model import load_tokenizer

    tokenizer = load_tokenizer(cfg)
    bundle = build_datasets(cfg, tokenizer)
    batcher = build_batcher(
        cfg, bundle.train, tokenizer, rank=0, world_size=data_parallel_size(cfg, world_size)
    )
    return len(bundle.train), len(batcher)


def describe_plan(
    cfg: TunesmithConfig, *, count_data: bool = True, memory: str | None = None
) -> dict[str, Any]:
    """`{"config": ..., "set": [...], "derived": {...}, "memory": {...}}` for `cfg` on the world size the
    environment asks for; `memory` is the budget the largest micro batch must fit (default: the device's)."""
    world_size = dist_env.world_size()
    examples = batches = None
    if count_data and cfg.data.dataset and not cfg.data.streaming:
        examples, batches = count_micro_batches(cfg, world_size)
    plan = run_plan(cfg, world_size, examples, micro_batches=batches)
    derived = {k: v for k, v in dataclasses.asdict(plan).items() if k != "steps"}
    if plan.steps is not None:
        derived.update(dataclasses.asdict(plan.steps))
    dialect = cfg.dialect.as_dict() if cfg.dialect is not None else {"name": cfg.train.dialect}
    return {
        "config": config_to_dict(cfg),
        "set": sorted(cfg.origins),
        "derived": derived,
        "dialect": dialect,
        "memory": memory_plan(cfg, world_size, memory),
    }
