"""The pre-flight both `tunesmith plan` and `tunesmith train` run before any process starts or any weight loads:
everything train would refuse later (device-dependent switches, the distributed combinations, the DeepSpeed JSON,
reporting backends, missing data) is refused here, once, with the same one-line message."""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.config import TunesmithConfig
from tunesmith.config.validate import data_parallel_size
from tunesmith.data.megatron_indexed import IndexedDataset, megatron_prefixes, reads_megatron
from tunesmith.data.registry import resolve_datasets
from tunesmith.dist.plugins import resolved_ds_config
from tunesmith.model.fused_ops import check_kernel_flags, resolve_attn_impl
from tunesmith.model.source import resolve_source
from tunesmith.recipes.distributed import check_supported
from tunesmith.report.base import require
from tunesmith.report.reporter import requested_backends
from tunesmith.train.losses import cpo, dpo
from tunesmith.utils import dist_env


def preflight(cfg: TunesmithConfig, world_size: int | None = None) -> None:
    """Raise the ConfigError (or DataError) training `cfg` on `world_size` processes would raise before its
    first step, without loading weights or data."""
    world = world_size if world_size is not None else dist_env.world_size()
    check_kernel_flags(cfg.model)
    resolve_attn_impl(cfg.model)
    cpo.check_options(cfg)  # CPO's options, and cpo_alpha / alphapo_alpha outside CPO (every stage)
    dpo.check_stage_options(cfg)
    if world > 1 or cfg.train.dist_config is not None:
        check_supported(cfg)
    _check_deepspeed(cfg, world)
    for name, named in requested_backends(cfg.train.report_to):
        if named:
            require(name)
    _check_data(cfg)


def _check_deepspeed(cfg: TunesmithConfig, world: int) -> None:
    spec = cfg.train.dist_config
    if spec is None or spec.name != "deepspeed":
        return
    resolved_ds_config(cfg, spec.params, data_parallel_size(cfg, world), _hidden_size(cfg), 0, 1)


def _hidden_size(cfg: TunesmithConfig) -> int:
    """The model's hidden size from its config.json (the DeepSpeed buckets depend on it); 1 when it is a hub id."""
    path = Path(resolve_source(cfg.model.model_name_or_path, "model_name_or_path")) / "config.json"
    if not path.is_file():
        return 1
    config = json.loads(path.read_text(encoding="utf-8"))
    return int(config.get("hidden_size") or config.get("text_config", {}).get("hidden_size") or 1)


def _check_data(cfg: TunesmithConfig) -> None:
    """The datasets exist: Megatron prefixes have their .bin/.idx, named datasets resolve (files, registry)."""
    data = cfg.data
    if data.tokenized_path and Path(data.tokenized_path).exists():
        return
    if reads_megatron(data):
        for prefix in megatron_prefixes(data.dataset):
            IndexedDataset(prefix)
        return
    resolve_datasets(data.dataset, data.dataset_dir, "dataset")
    resolve_datasets(data.eval_dataset, data.dataset_dir, "eval_dataset")
