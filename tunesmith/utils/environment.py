"""What this machine offers: library versions, devices and optional backends (for `tunesmith env`)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform

LIBRARIES = (
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "datasets",
    "accelerate",
    "safetensors",
    "deepspeed",
    "bitsandbytes",
    "tensorboard",
    "wandb",
    "swanlab",
    "mlflow-skinny",
    "liger-kernel",
    "flash-attn",
)


def package_version(name: str) -> str | None:
    """The installed version of distribution `name`, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_report() -> dict[str, str]:
    """Python, platform, CPU count, accelerators and library versions."""
    import torch

    from tunesmith import __version__

    report = {
        "tunesmith": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": str(os.cpu_count()),
        "cuda": f"{torch.cuda.device_count()} device(s)" if torch.cuda.is_available() else "not available",
        "bf16_on_cpu": "supported" if torch.backends.mkldnn.is_available() else "slow (no oneDNN)",
        **gpu_report(),
        **kernel_report(),
    }
    for name in LIBRARIES:
        report[name] = package_version(name) or "not installed"
    return report


def gpu_report() -> dict[str, str]:
    """One line per CUDA device: name, compute capability, memory and bf16 support; the CUDA/NCCL versions."""
    import torch

    if not torch.cuda.is_available():
        return {}
    report = {"cuda_version": str(torch.version.cuda), "nccl": _nccl_version()}
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        bf16 = "bf16" if props.major >= 8 else "no bf16 (fp16 only)"
        report[f"gpu{index}"] = (
            f"{props.name}, capability {props.major}.{props.minor}, {props.total_memory / 2**30:.1f} GiB, {bf16}"
        )
    return report


def _nccl_version() -> str:
    import torch

    try:
        return ".".join(str(v) for v in torch.cuda.nccl.version())
    except (AttributeError, RuntimeError):
        return "not available"


def kernel_report() -> dict[str, str]:
    """Which optional kernels a run can use here (attn_impl, use_liger_kernel, torch_compile)."""
    import torch

    cuda = torch.cuda.is_available()
    ampere = cuda and torch.cuda.get_device_capability(0)[0] >= 8

    def usable(package: str | None, needs: bool, why: str) -> str:
        if package is not None and importlib.util.find_spec(package) is None:
            return f"not installed ({package})"
        return "usable" if needs else f"not usable: {why}"

    return {
        "kernel sdpa": "usable",
        "kernel flash_attention_2": usable("flash_attn", ampere, "needs an Ampere or newer NVIDIA GPU"),
        "kernel flash_attention_3": usable("flash_attn_interface", ampere, "needs a Hopper NVIDIA GPU"),
        "kernel flex_attention": usable(None, cuda, "no backward pass on CPU"),
        "kernel liger": usable(
            "liger_kernel",
            cuda and importlib.util.find_spec("triton") is not None,
            "Triton has no CPU backend",
        ),  # fmt: skip
        "kernel torch_compile": usable(None, True, ""),
    }
