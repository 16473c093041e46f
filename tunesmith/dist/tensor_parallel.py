"""Tensor parallel with DTensor: `tp_colwise` / `tp_rowwise` module patterns on the attention and MLP projections."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    RowwiseParallel,
    parallelize_module,
)

from tunesmith.dist.patterns import match_modules
from tunesmith.utils.errors import ConfigError

COLWISE = ("*.q_proj", "*.k_proj", "*.v_proj", "*.gate_proj", "*.up_proj")
ROWWISE = ("*.o_proj", "*.down_proj")


def check_heads(config: object, tp_size: int) -> None:
    """Attention and key/value head counts (and the MLP width) must split evenly over `tp_size` ranks."""
    for attr in ("num_attention_heads", "num_key_value_heads", "intermediate_size"):
        value = getattr(config, attr, None)
        if value is not None and value % tp_size:
            raise ConfigError(
                f"tp_size: {tp_size} does not divide the model's {attr} ({value}); choose a divisor"
            )


def tensor_parallel_plan(
    model: nn.Module, colwise: Sequence[str] = COLWISE, rowwise: Sequence[str] = ROWWISE
) -> dict[str, ParallelStyle]:
    """Module name -> Colwise/RowwiseParallel for every module matching the patterns (they must all match)."""
    plan: dict[str, ParallelStyle] = {}
    for key, patterns, style in (
        ("tp_colwise", colwise, ColwiseParallel),
        ("tp_rowwise", rowwise, RowwiseParallel),
    ):
        for name, module in match_modules(model, patterns, key):
            if name in plan:
                raise ConfigError(f"{key}: module {name!r} is matched by both tp_colwise and tp_rowwise")
            if type(module) is not nn.Linear:
                raise ConfigError(
                    f"{key}: {name!r} is a {type(module).__name__}, not nn.Linear; tensor parallel splits plain "
                    "linear layers (LoRA adapters and quantized layers are not supported with tp_size > 1)"
                )
            plan[name] = style()
    return plan


def apply_tensor_parallel(
    model: nn.Module, tp_mesh: DeviceMesh, colwise: Sequence[str] = COLWISE, rowwise: Sequence[str] = ROWWISE
) -> nn.Module:
    """Split the matched projections over `tp_mesh` (1D). Attention modules compute the local head count from the
    projection width, so each rank runs heads / tp_size heads. Apply before FSDP2 (2D mesh: dp x tp)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is not None:
        check_heads(config, tp_mesh.size())
    parallelize_module(base, tp_mesh, tensor_parallel_plan(base, colwise, rowwise))
    return model
