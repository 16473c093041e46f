"""What to run: a run's output_dir (full model or adapter), a model folder, a built-in, or a config file (base +
`adapter_name_or_path`) -> the inference config; then the model (eval mode, cache on) and its tokenizer."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
import yaml

from tunesmith.config import load_config
from tunesmith.config.loader import TunesmithConfig
from tunesmith.model.adapter_load import ADAPTER_CONFIG, adapter_paths, attach_adapters
from tunesmith.model.loader import load_model
from tunesmith.model.tokenizer import load_tokenizer
from tunesmith.utils.builtin import is_builtin
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")

RUN_CONFIG = "tunesmith_config.yaml"
# How a run rendered its conversations: taken from its saved config unless set again.
RUN_KEYS = ("template", "default_system", "enable_thinking", "tool_format", "trust_remote_code")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


@dataclasses.dataclass
class Loaded:
    """A model ready to generate, its tokenizer, the config it was loaded with and the name it is served under."""

    model: Any
    tokenizer: Any
    cfg: TunesmithConfig
    name: str


def inference_config(target: str | None, overrides: list[str]) -> TunesmithConfig:
    """The config for `target` (see the module docstring) with the command-line `overrides` on top."""
    if target is not None and Path(target).suffix.lower() in CONFIG_SUFFIXES and not Path(target).is_file():
        raise ConfigError(f"{target}: no such config file")
    if target is None or Path(target).suffix.lower() in CONFIG_SUFFIXES:
        return load_config(target, overrides)
    cfg = load_config(None, [*_model_settings(target), *overrides])
    _take_run_settings(cfg, Path(target))
    return cfg


def _model_settings(target: str) -> list[str]:
    """Where the base, the adapter and the tokenizer of `target` come from."""
    folder = Path(target).expanduser()
    if is_builtin(target) or not folder.exists():
        return [f"model_name_or_path={target}"]
    if (folder / ADAPTER_CONFIG).is_file():
        base = _adapter_base(folder)
        return [
            f"model_name_or_path={base}",
            f"adapter_name_or_path={folder}",
            f"tokenizer_name_or_path={folder}",
        ]
    if (folder / "config.json").is_file():
        return [f"model_name_or_path={folder}"]
    raise ConfigError(
        f"{target}: holds neither a model (config.json) nor an adapter ({ADAPTER_CONFIG}); give the output_dir of a "
        "finished run, a Hugging Face model folder, or a config file"
    )


def _adapter_base(folder: Path) -> str:
    meta = json.loads((folder / ADAPTER_CONFIG).read_text())
    base = meta.get("base_model_name_or_path")
    if not base:
        raise ConfigError(
            f"{folder / ADAPTER_CONFIG}: names no base model; give model_name_or_path=BASE and "
            f"adapter_name_or_path={folder}"
        )
    return base


def _take_run_settings(cfg: TunesmithConfig, folder: Path) -> None:
    """The chat template settings of the run that wrote `folder` (its tunesmith_config.yaml), unless set now."""
    flat = _run_settings(folder)
    for name in RUN_KEYS:
        if name in flat and flat[name] is not None and not cfg.is_set(name):
            setattr(cfg.data if hasattr(cfg.data, name) else cfg.model, name, flat[name])


def run_base_model(folder: Path) -> str | None:
    """The model the run that wrote `folder` started from (its tunesmith_config.yaml), if it says."""
    return _run_settings(folder).get("model_name_or_path")


def _run_settings(folder: Path) -> dict[str, Any]:
    """The flat settings of the run that wrote `folder` (its tunesmith_config.yaml), or {}."""
    path = folder / RUN_CONFIG
    if not path.is_file():
        return {}
    saved = yaml.safe_load(path.read_text()) or {}
    flat = {k: v for section in saved.values() if isinstance(section, dict) for k, v in section.items()}
    return flat | {k: v for k, v in saved.items() if not isinstance(v, dict)}


def load_for_inference(
    cfg: TunesmithConfig, *, merge_all: bool | None = None, device: str | None = None
) -> Loaded:
    """Tokenizer and model of `cfg` (dtype `infer_dtype`, else `torch_dtype`), the adapters attached (merged when
    `merge_all`, default `merge_lora`), in eval mode with the cache on, on `device` (default: the GPU if any)."""
    if cfg.generation.infer_dtype:
        cfg.model.torch_dtype = cfg.generation.infer_dtype
    if cfg.model.quantization_bit and cfg.model.finetuning_type in ("full", "freeze"):
        cfg.model.finetuning_type = (
            "lora"  # nothing trains here: the loader's full/freeze refusal does not apply
        )
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer)
    merge = cfg.generation.merge_lora if merge_all is None else merge_all
    model = attach_adapters(model, adapter_paths(cfg.model.adapter_name_or_path), merge_all=merge)
    model.eval()
    (model.get_base_model() if hasattr(model, "get_base_model") else model).config.use_cache = True
    if not getattr(model, "is_quantized", False):
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return Loaded(model, tokenizer, cfg, served_name(cfg))


def served_name(cfg: TunesmithConfig) -> str:
    """`served_model_name`, else the last adapter's or the model's folder name."""
    if cfg.generation.served_model_name:
        return cfg.generation.served_model_name
    adapters = adapter_paths(cfg.model.adapter_name_or_path)
    source = adapters[-1] if adapters else str(cfg.model.model_name_or_path)
    return source if is_builtin(source) else Path(source).name or source
