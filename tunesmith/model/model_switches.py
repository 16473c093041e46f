"""Model switches of LLaMA-Factory: RoPE scaling for a longer context (the factor computed from cutoff_len as LF
does), norm weights and LM-head output kept in float32, extra config values (model_kwargs), and the per-parameter
status listing."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")


def apply_rope_scaling(config: Any, kind: str | None, max_length: int | None) -> float | None:
    """Scale RoPE so `max_length` tokens fit: factor = ceil(max_length / original length), the config's
    max_position_embeddings enlarged by it (LLaMA-Factory's rule). Returns the factor, or None when no scaling is
    needed (max_length within the original length)."""
    if kind is None:
        return None
    current = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if not hasattr(config, "max_position_embeddings"):
        raise ConfigError(f"rope_scaling: model type {config.model_type!r} has no RoPE length to scale")
    original = current.get("original_max_position_embeddings") or config.max_position_embeddings
    if max_length is None or max_length <= original:
        logger.warning(
            "rope_scaling: cutoff_len %s is within the model's %d positions; no scaling", max_length, original
        )
        return None
    factor = float(math.ceil(max_length / original))
    params = {k: v for k, v in current.items() if k in ("rope_theta", "partial_rotary_factor")}
    params.update(rope_type=kind, factor=factor)
    if kind in ("dynamic", "yarn", "llama3"):
        params["original_max_position_embeddings"] = original
    if kind == "llama3":
        params.update(low_freq_factor=1.0, high_freq_factor=4.0)
    config.rope_parameters = params
    config.max_position_embeddings = int(original * factor)
    logger.info(
        "rope_scaling %s: factor %s, %d -> %d positions",
        kind,
        factor,
        original,
        config.max_position_embeddings,
    )
    return factor


def apply_model_kwargs(config: Any, values: dict[str, Any] | None) -> None:
    """Set each `model_kwargs` entry on the model config before the model is built; unknown names are errors."""
    for key, value in (values or {}).items():
        if not hasattr(config, key):
            raise ConfigError(f"model_kwargs: the {config.model_type} config has no field {key!r}")
        setattr(config, key, value)


def upcast_layernorm(model: torch.nn.Module) -> int:
    """Keep the weights of normalisation layers in float32 (LLaMA-Factory's upcast_layernorm); returns how many."""
    count = 0
    for name, param in model.named_parameters():
        if param.ndim == 1 and "norm" in name and param.dtype != torch.float32:
            param.data = param.data.to(torch.float32)
            count += 1
    return count


def upcast_lmhead_output(model: torch.nn.Module) -> None:
    """Return the LM head's logits in float32."""
    head = model.get_output_embeddings()
    if head is None:
        raise ConfigError("upcast_lmhead_output: the model has no output embeddings (LM head)")
    head.register_forward_hook(lambda _module, _inputs, output: output.to(torch.float32))


def param_status(model: torch.nn.Module) -> str:
    """One line per parameter: name, shape, dtype, device, trainable (print_param_status)."""
    return "\n".join(
        f"name: {n}, shape: {tuple(p.shape)}, dtype: {p.dtype}, device: {p.device}, trainable: {p.requires_grad}"
        for n, p in model.named_parameters()
    )
