"""Kernel switches: attention implementation, fused RMSNorm, MoE grouped GEMM, and the GPU-only ones (Liger,
flash attention, fused rotary embedding, Triton Gated DeltaNet), which are refused with a clear message here."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import torch
from torch import nn

from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")

FLASH = {
    "flash_attn": "flash_attention_2",
    "flash_attention_2": "flash_attention_2",
    "flash_attention_3": "flash_attention_3",
}
FLASH_PACKAGE = {
    "flash_attention_2": "flash-attn (flash_attn)",
    "flash_attention_3": "flash-attn-3 (flash_attn_interface)",
}
FLASH_MODULE = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}


def resolve_attn_impl(margs: Any) -> str:
    """The transformers `attn_implementation` for `attn_impl` / `use_flash_attn`; unset means sdpa."""
    name = margs.attn_impl or ("flash_attention_2" if margs.use_flash_attn else "sdpa")
    field = "attn_impl" if margs.attn_impl else ("use_flash_attn" if margs.use_flash_attn else "attn_impl")
    if name in FLASH:
        impl = FLASH[name]
        if not torch.cuda.is_available() or importlib.util.find_spec(FLASH_MODULE[impl]) is None:
            raise ConfigError(
                f"{field}: {name} needs a CUDA GPU and the {FLASH_PACKAGE[impl]} package "
                f"(GPU: {'yes' if torch.cuda.is_available() else 'no'}, package installed: "
                f"{'yes' if importlib.util.find_spec(FLASH_MODULE[impl]) else 'no'}); use attn_impl: sdpa or eager"
            )
        return impl
    if name == "flex_attention" and not torch.cuda.is_available():
        raise ConfigError(
            "attn_impl: flex_attention has no backward pass on CPU in this torch version; use sdpa or eager"
        )
    return name


GDN_CHUNK_DEFAULT = 64


def check_kernel_flags(margs: Any) -> None:
    """Refuse kernel flags that cannot run here: GPU-only ones without a GPU, ones with no implementation."""
    gpu_only = {
        "use_liger_kernel": "Liger kernels run on Triton, which has no CPU backend",
        "use_triton_gdn": "the Gated DeltaNet kernels are written in Triton, which has no CPU backend",
    }
    for field, why in gpu_only.items():
        if getattr(margs, field) and not torch.cuda.is_available():
            raise ConfigError(f"{field}: needs a CUDA GPU ({why}); remove it to train on CPU")
    if margs.use_fused_rotary_pos_emb:  # a speed switch: the same numbers either way
        logger.warning(
            "use_fused_rotary_pos_emb: MindSpeed's fused rotary embedding is an NPU kernel missing here; rotary "
            "embeddings run unfused (same results, no speed-up)"
        )
    if margs.liger_kernel_config and not margs.use_liger_kernel:
        raise ConfigError("liger_kernel_config: set only with use_liger_kernel: true")


def apply_kernels(model: nn.Module, margs: Any) -> None:
    """Apply the kernel switches that have an implementation on this machine."""
    if margs.use_liger_kernel:
        _apply_liger(model, margs.liger_kernel_config or {})
    if margs.use_fused_rmsnorm:
        count = fuse_rmsnorm(model)
        if count == 0:
            raise ConfigError("use_fused_rmsnorm: the model has no RMSNorm layers to fuse")
        logger.info("use_fused_rmsnorm: %d RMSNorm layers use torch.nn.functional.rms_norm", count)
    if margs.moe_grouped_gemm:
        _use_grouped_gemm(model)
    if (
        margs.gdn_chunk_size != GDN_CHUNK_DEFAULT or margs.use_triton_gdn
    ):  # the default is in every MindSpeed config
        field = "use_triton_gdn" if margs.use_triton_gdn else "gdn_chunk_size"
        raise ConfigError(
            f"{field}: Gated DeltaNet models are not supported by tunesmith yet; remove {field}"
        )


def fuse_rmsnorm(model: nn.Module) -> int:
    """Make every RMSNorm layer (a module named *RMSNorm with `weight` and an epsilon) compute with the fused
    `torch.nn.functional.rms_norm` in float32; returns how many layers were changed."""
    count = 0
    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm") and isinstance(
            getattr(module, "weight", None), torch.Tensor
        ):
            eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
            if eps is None:
                continue
            module.forward = _fused_rmsnorm_forward(module, float(eps))
            count += 1
    return count


def _fused_rmsnorm_forward(module: nn.Module, eps: float) -> Any:
    def forward(hidden_states: torch.Tensor) -> torch.Tensor:
        normed = nn.functional.rms_norm(hidden_states.float(), (hidden_states.shape[-1],), eps=eps)
        return module.weight * normed.to(hidden_states.dtype)

    return forward


def _use_grouped_gemm(model: nn.Module) -> None:
    config = getattr(model, "config", None)
    if config is None or not getattr(config, "num_experts", getattr(config, "num_local_experts", None)):
        raise ConfigError("moe_grouped_gemm: the model has no mixture-of-experts layers")
    model.set_experts_implementation("grouped_mm")
    logger.info("moe_grouped_gemm: experts computed with grouped GEMM (torch grouped_mm)")


def _apply_liger(model: nn.Module, options: dict[str, Any]) -> None:
    if importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError(
            "use_liger_kernel: the liger-kernel package is not installed (pip install liger-kernel)"
        )
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(model=model, **options)
