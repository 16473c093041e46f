"""Loading saved LoRA adapters (`adapter_name_or_path`) onto a loaded base: every adapter but the last is merged
into the weights in order; the last stays attached as the active adapter (trainable when asked), or is merged
too (`merge_all`). A 4/8-bit base takes a single adapter, kept unmerged."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from transformers import PreTrainedModel

from tunesmith.utils.errors import ConfigError

if TYPE_CHECKING:  # peft is imported only when an adapter is used (it takes seconds to import)
    from peft import PeftModel

logger = logging.getLogger("tunesmith")

FIELD = "adapter_name_or_path"
ADAPTER_CONFIG = "adapter_config.json"


def adapter_paths(value: str | list[str] | None) -> list[str]:
    """The adapter folders of `adapter_name_or_path` (comma-separated string or list), each checked to hold a
    saved PEFT adapter."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    paths = [str(Path(item.strip()).expanduser()) for item in items if item.strip()]
    for path in paths:
        if not (Path(path) / ADAPTER_CONFIG).is_file():
            raise ConfigError(
                f"{FIELD}: {path} is not a saved adapter folder (no {ADAPTER_CONFIG}); give the output_dir of a "
                "LoRA run or a folder written by peft's save_pretrained"
            )
    return paths


def attach_adapters(
    model: PreTrainedModel, paths: list[str], *, trainable: bool = False, merge_all: bool = False
) -> PreTrainedModel | PeftModel:
    """Load `paths` onto `model` in order: all but the last merged; the last attached as adapter "default"
    (`trainable`: its weights require grad) unless `merge_all`. Returns `model` unchanged when `paths` is empty."""
    if not paths:
        return model
    quantized = bool(getattr(model, "is_quantized", False))
    if quantized and (len(paths) > 1 or merge_all):
        raise ConfigError(
            f"{FIELD}: a 4/8-bit (quantised) base takes one adapter, unmerged; load the base in full precision "
            "(no quantization_bit) to merge adapters"
        )
    for index, path in enumerate(paths):
        keep = index == len(paths) - 1 and not merge_all
        peft_model = _load_one(model, path, trainable=trainable and keep)
        if keep:
            logger.info("adapter %s attached (%s)", path, "trainable" if trainable else "frozen")
            return peft_model
        model = peft_model.merge_and_unload()
        logger.info("adapter %s merged into the base", path)
    return model


def _load_one(model: PreTrainedModel, path: str, *, trainable: bool) -> PeftModel:
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, path, is_trainable=trainable)
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{FIELD}: cannot load the adapter in {path} onto this base: {first}") from err
