"""What this machine offers: library versions, devices and optional backends (for `tunesmith env`)."""

from __future__ import annotations

import importlib.metadata
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
    }
    for name in LIBRARIES:
        report[name] = package_version(name) or "not installed"
    return report
