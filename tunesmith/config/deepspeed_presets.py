"""DeepSpeed configs by name, as ms-swift accepts them (`--deepspeed zero2`): ZeRO stage and offload, every
batch, clipping and precision value left "auto" so it follows the tunesmith config."""

from __future__ import annotations

import copy
from typing import Any

_COMMON: dict[str, Any] = {
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto",
    "gradient_clipping": "auto",
    "bf16": {"enabled": "auto"},
    "fp16": {"enabled": "auto"},
    "steps_per_print": 2000,
    "wall_clock_breakdown": False,
}
_CPU = {"device": "cpu"}
_STAGES: dict[str, dict[str, Any]] = {
    "zero0": {"stage": 0},
    "zero1": {"stage": 1},
    "zero2": {"stage": 2, "overlap_comm": False, "contiguous_gradients": True},
    "zero2_offload": {"stage": 2, "offload_optimizer": _CPU, "contiguous_gradients": True},
    "zero3": {
        "stage": 3,
        "overlap_comm": False,
        "contiguous_gradients": True,
        "stage3_gather_16bit_weights_on_model_save": True,
    },
    "zero3_offload": {
        "stage": 3,
        "offload_optimizer": _CPU,
        "offload_param": _CPU,
        "contiguous_gradients": True,
        "stage3_gather_16bit_weights_on_model_save": True,
    },
}
PRESETS = tuple(_STAGES)


def preset(name: str) -> dict[str, Any]:
    """The DeepSpeed config of preset `name` (one of PRESETS), a fresh copy."""
    return copy.deepcopy({**_COMMON, "zero_optimization": _STAGES[name]})
