"""Activation checkpointing (gradient_checkpointing / recompute) of the modules chosen by `recompute_modules`
patterns such as `model.layers.{*}` (`{*}` and `*` match one name part, e.g. a layer index)."""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from torch import nn
from torch.utils.checkpoint import checkpoint

from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")

DEFAULT_PATTERNS = ("model.layers.{*}",)


def enable_checkpointing(
    model: nn.Module, patterns: list[str] | None, kwargs: dict[str, Any] | None
) -> list[str]:
    """Recompute the forward of every module matching `patterns` during backward (training mode only);
    `kwargs` go to `torch.utils.checkpoint.checkpoint` (use_reentrant defaults to False). Returns the names."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    options = {"use_reentrant": False, **(kwargs or {})}
    regexes = [_compile(p) for p in (patterns or DEFAULT_PATTERNS)]
    names = [name for name, _ in base.named_modules() if name and any(r.fullmatch(name) for r in regexes)]
    if not names:
        raise ConfigError(
            f"recompute_modules: {list(patterns or DEFAULT_PATTERNS)} match no module of the model "
            "(names look like model.layers.0.mlp)"
        )
    for name in names:
        module = base.get_submodule(name)
        module.forward = _checkpointed(module.forward, options)
    if options["use_reentrant"] and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    logger.info("activation checkpointing on %d module(s), e.g. %s", len(names), names[0])
    return names


def _compile(pattern: str) -> re.Pattern[str]:
    parts = re.escape(pattern).replace(r"\{\*\}", "[^.]+").replace(r"\*", "[^.]+")
    return re.compile(parts)


def _checkpointed(forward: Any, options: dict[str, Any]) -> Any:
    owner = forward.__self__

    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        if owner.training:
            return checkpoint(functools.partial(forward, **kwargs), *args, **options)
        return forward(*args, **kwargs)

    return run
