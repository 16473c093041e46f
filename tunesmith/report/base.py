"""What every reporting backend shares: the Backend protocol, scalar selection, metric names, optional imports."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any, Protocol

from tunesmith.utils.errors import ConfigError

# backend name -> (module to import, pip requirement known to work with tunesmith)
PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard==2.21.0"),
    "wandb": ("wandb", "wandb==0.31.0"),
    "swanlab": ("swanlab", "swanlab==0.10.3"),
    "mlflow": ("mlflow", "mlflow-skinny==3.17.2"),
}


class Backend(Protocol):
    """A reporting backend: receives logged metrics and the run's (secret-free) hyper-parameters."""

    def log(self, metrics: dict[str, Any], step: int) -> None: ...

    def log_hparams(self, params: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def installed(name: str) -> bool:
    """Whether backend `name`'s package can be imported."""
    return importlib.util.find_spec(PACKAGES[name][0]) is not None


def require(name: str) -> ModuleType:
    """Import backend `name`'s package or raise a ConfigError telling how to install it."""
    module, pin = PACKAGES[name]
    if not installed(name):
        raise ConfigError(
            f"report_to: {name} is not installed; run `pip install {pin}` or remove it from report_to"
        )
    return importlib.import_module(module)


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric (non-bool) metrics as floats."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def split_name(key: str) -> tuple[str, str]:
    """`eval_loss` -> ("eval", "loss"), `loss` -> ("train", "loss"): the HF grouping of metric names."""
    for prefix in ("eval", "test", "predict"):
        if key.startswith(prefix + "_"):
            return prefix, key[len(prefix) + 1 :]
    return "train", key
