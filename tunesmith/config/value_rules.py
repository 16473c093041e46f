"""Value rules that no single field's type or range can say: finite numbers, seeds numpy accepts, a run that
trains at least one step, an existing `dataset_dir`, and an `output_dir` that is a usable folder and never one the
run reads from."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tunesmith.config.arguments.model import ATTENTION, HUB_KERNEL
from tunesmith.config.loader import TunesmithConfig
from tunesmith.utils.errors import ConfigError

SEED_MAX = 2**32 - 1  # numpy's limit; torch and random accept it too


def check_values(cfg: TunesmithConfig) -> None:
    """Every rule of this module."""
    _finite(cfg)
    _seeds(cfg)
    _attention(cfg)
    _not_empty(cfg)
    _dataset_dir(cfg)
    _output_dir(cfg)


def _finite(cfg: TunesmithConfig) -> None:
    """NaN or infinity in a number the user set (`learning_rate: .nan`, `num_train_epochs: .inf`)."""
    for name in cfg.origins:
        value = cfg.get(name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{cfg.where(name)}: {value!r} is not a finite number")


def _seeds(cfg: TunesmithConfig) -> None:
    for name in ("seed", "data_seed"):
        value = cfg.get(name)
        if value is not None and not 0 <= value <= SEED_MAX:
            raise ConfigError(f"{cfg.where(name)}: {value} is out of range; a seed is 0 to {SEED_MAX}")


def _attention(cfg: TunesmithConfig) -> None:
    """`attn_impl`: a built-in implementation or a hub kernel's name (whether that kernel runs here is checked
    before the model loads)."""
    value = cfg.model.attn_impl
    if value is not None and value not in ATTENTION and not HUB_KERNEL.match(value):
        raise ConfigError(
            f"{cfg.where('attn_impl')}: {value!r} is not allowed; choose one of: {', '.join(ATTENTION)}, or a hub "
            "kernel such as kernels-community/flash-attn"
        )


def _not_empty(cfg: TunesmithConfig) -> None:
    """`max_steps` <= 0 falls back to `num_train_epochs` (as in transformers); both empty trains nothing."""
    train = cfg.train
    if train.max_steps <= 0 and train.num_train_epochs <= 0:
        raise ConfigError(
            f"{cfg.where('num_train_epochs')}: {train.num_train_epochs} with {cfg.where('max_steps')} "
            f"{train.max_steps} trains no step; set num_train_epochs > 0 or max_steps > 0"
        )


def _dataset_dir(cfg: TunesmithConfig) -> None:
    value = cfg.data.dataset_dir
    if cfg.is_set("dataset_dir") and value and not value.startswith("builtin:") and not Path(value).is_dir():
        raise ConfigError(f"{cfg.where('dataset_dir')}: {value} is not an existing folder")


def _output_dir(cfg: TunesmithConfig) -> None:
    """`output_dir` must be a folder (or not exist yet), and never the model or data being read, nor a folder
    holding them (writing the result there would overwrite the base weights)."""
    value = cfg.train.output_dir
    where = cfg.where("output_dir")
    if not str(value).strip():
        raise ConfigError(f"{where}: empty; name the folder for checkpoints, logs and the model")
    out = Path(value).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{where}: {value} is a file, not a folder")
    if cfg.evaluation_only():
        return  # evaluation only: it writes its results files, no model
    for name, path in _read_paths(cfg):
        if path == out or out in path.parents:
            relation = "is" if path == out else "contains"
            raise ConfigError(
                f"{where}: {value} {relation} the {name} this run reads ({path}), and the run writes its model, "
                "checkpoints and logs there (and moves earlier runs aside). "
                "Use another output_dir"
            )


def _read_paths(cfg: TunesmithConfig) -> list[tuple[str, Path]]:
    """Local folders and files the run reads: the model, tokenizer and adapters, and dataset_dir."""
    found: list[tuple[str, Any]] = [
        ("model_name_or_path", cfg.model.model_name_or_path),
        ("tokenizer_name_or_path", cfg.model.tokenizer_name_or_path),
        *[("adapter_name_or_path", a) for a in cfg.model.adapter_name_or_path or []],
        ("dataset_dir", cfg.data.dataset_dir),
    ]
    paths = []
    for name, value in found:
        if isinstance(value, str) and value and not value.startswith("builtin:") and Path(value).exists():
            paths.append((name, Path(value).expanduser().resolve()))
    return paths
