"""Checkpoints of GaLore/APOLLO optimizers: their per-parameter projector objects are saved as plain dicts of
their attributes (tensors and numbers, which `torch.load(weights_only=True)` reads) and rebuilt after loading."""

from __future__ import annotations

import importlib
from typing import Any

import torch

from tunesmith.utils.errors import ConfigError

PROJECTOR_CLASS = "__projector_class__"


def checkpointable_projectors(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """GaLore/APOLLO keep a projector object in each low-rank state: save it as a plain dict of its attributes
    (tensors and numbers, loadable with weights_only) and rebuild it after loading, so checkpoints resume."""

    def encode(_optimizer: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
        for key, entry in state_dict["state"].items():
            if "projector" in entry and not isinstance(entry["projector"], dict):
                projector = entry["projector"]
                cls = type(projector)
                encoded = {PROJECTOR_CLASS: f"{cls.__module__}:{cls.__qualname__}", **vars(projector)}
                state_dict["state"][key] = {**entry, "projector": encoded}
        return state_dict

    def decode(_optimizer: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
        state = dict(state_dict["state"])
        for key, entry in state.items():
            encoded = entry.get("projector")
            if isinstance(encoded, dict) and PROJECTOR_CLASS in encoded:
                state[key] = {**entry, "projector": _rebuilt(encoded)}
        return {**state_dict, "state": state}

    def to_param_devices(opt: torch.optim.Optimizer) -> None:
        for param, entry in opt.state.items():
            matrix = getattr(entry.get("projector"), "ortho_matrix", None)
            if isinstance(matrix, torch.Tensor):
                entry["projector"].ortho_matrix = matrix.to(param.device)

    optimizer.register_state_dict_post_hook(encode)
    optimizer.register_load_state_dict_pre_hook(decode)
    optimizer.register_load_state_dict_post_hook(to_param_devices)
    return optimizer


def _rebuilt(encoded: dict[str, Any]) -> Any:
    """The projector object a checkpoint saved as a dict (only galore_torch / apollo_torch classes)."""
    module, _, name = encoded[PROJECTOR_CLASS].partition(":")
    if module.split(".")[0] not in ("galore_torch", "apollo_torch"):
        raise ConfigError(f"resume: the checkpoint names an unexpected projector class {module}:{name}")
    projector = object.__new__(getattr(importlib.import_module(module), name))
    projector.__dict__.update({k: v for k, v in encoded.items() if k != PROJECTOR_CLASS})
    return projector


def _rebuilt(encoded: dict[str, Any]) -> Any:
    """The projector object a checkpoint saved as a dict (only galore_torch / apollo_torch classes)."""
    module, _, name = encoded[PROJECTOR_CLASS].partition(":")
    if module.split(".")[0] not in ("galore_torch", "apollo_torch"):
        raise ConfigError(f"resume: the checkpoint names an unexpected projector class {module}:{name}")
    projector = object.__new__(getattr(importlib.import_module(module), name))
    projector.__dict__.update({k: v for k, v in encoded.items() if k != PROJECTOR_CLASS})
    return projector
