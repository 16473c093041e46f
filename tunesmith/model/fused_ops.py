"""Kernel switches: attention implementation (including transformers' hub kernels, `kernels-community/<repo>`),
fused RMSNorm, MoE grouped GEMM, and the GPU-only ones (Liger, flash attention, fused rotary embedding, Triton Gated
DeltaNet), which are refused with a clear message here."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunesmith.config.arguments.model import HUB_KERNEL
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
TRUSTED_KERNEL_OWNER = "kernels-community"  # transformers loads other owners only with allow_all_kernels


def attn_for_model(margs: Any, config: Any, attn: str) -> str:
    """With attn_impl unset, a model class without sdpa (gpt-oss, DeepSeek-V4) runs eager, as transformers'
    own default picks; anything asked for stays."""
    if margs.attn_impl or margs.use_flash_attn or attn != "sdpa":
        return attn
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    cls = MODEL_FOR_CAUSAL_LM_MAPPING.get(type(config), None)
    if cls is None or getattr(cls, "_supports_sdpa", True):
        return attn
    logger.info("attn_impl unset: %s has no sdpa attention, so it runs eager", cls.__name__)
    return "eager"


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
    if HUB_KERNEL.match(name):
        check_hub_kernel(name, field)
        return name
    if name == "flex_attention" and not torch.cuda.is_available():
        raise ConfigError(
            "attn_impl: flex_attention has no backward pass on CPU in this torch version; use sdpa or eager"
        )
    return name


def check_hub_kernel(name: str, field: str = "attn_impl") -> None:
    """Refuse a hub attention kernel that transformers could not run here, before anything loads: it needs the
    `kernels` package and a local copy of the repo (tunesmith never downloads) with a build for this device."""
    owner, repo = HUB_KERNEL.match(name).groups()  # type: ignore[union-attr]
    repo_id = f"{owner}/{repo}"
    needs = f"{field}: {name} is a Hugging Face hub kernel, run by the kernels package from a local copy"
    instead = "use attn_impl: sdpa (runs everywhere)"
    if owner != TRUSTED_KERNEL_OWNER:
        raise ConfigError(
            f"{needs}; transformers loads only {TRUSTED_KERNEL_OWNER}/ repos by default; {instead}"
        )
    if not _installed("kernels"):
        raise ConfigError(f"{needs}; the kernels package is not installed (pip install kernels); {instead}")
    cache = kernel_cache()
    builds = local_kernel_builds(repo_id, cache)
    if not builds:
        raise ConfigError(
            f"{needs}; {cache} holds no copy of {repo_id} (fetch it once where the hub is reachable, e.g. "
            f"`kernels download` or `hf download {repo_id}`, then run with HF_HUB_OFFLINE=1); {instead}"
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not any(_runs_on(build, device) for build in builds):
        raise ConfigError(
            f"{needs}; the local copy of {repo_id} has builds for {', '.join(sorted(builds))}, none for this "
            f"machine ({device}); {instead}"
        )


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def kernel_cache() -> Path:
    """Where the kernels package looks for downloaded kernels: KERNELS_CACHE, else the Hugging Face hub cache."""
    from huggingface_hub import constants

    return Path(os.environ.get("KERNELS_CACHE") or constants.HF_HUB_CACHE)


def local_kernel_builds(repo_id: str, cache: Path) -> set[str]:
    """The build variants (folders under `build/`, e.g. torch29-cxx11-cu128-x86_64-linux) of every cached
    snapshot of `repo_id` (cached as a kernel repo, or as a model repo by older huggingface_hub versions)."""
    owner, repo = repo_id.split("/")
    builds: set[str] = set()
    for kind in ("kernels", "models"):
        for build in (cache / f"{kind}--{owner}--{repo}" / "snapshots").glob("*/build/*"):
            if build.is_dir():
                builds.add(build.name)
    return builds


def _runs_on(build: str, device: str) -> bool:
    """Whether a build variant's name says it runs on `device` ("cuda" or "cpu"); universal builds run anywhere."""
    parts = build.split("-")
    if "universal" in parts:
        return True
    if device == "cuda":
        return "cuda" in parts or any(re.fullmatch(r"cu\d+", p) for p in parts)
    return "cpu" in parts


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
