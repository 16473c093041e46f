"""`debug: underflow_overflow`: find the first module whose forward output holds inf or nan, as HF's
DebugUnderflowOverflow does, and stop the run with a report naming it (step, module, and the largest absolute
values of its inputs, weights and output), instead of only seeing a non-finite loss later."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from tunesmith.config.unsupported import UNDERFLOW_OVERFLOW, debug_options
from tunesmith.train.callbacks import Callback
from tunesmith.utils.errors import TunesmithError

if TYPE_CHECKING:
    from tunesmith.train.trainer import Trainer


class UnderflowOverflowDetected(TunesmithError):
    """A module produced inf/nan in its forward pass (debug: underflow_overflow)."""


class UnderflowOverflow(Callback):
    """Forward hooks on every module: the first output with inf/nan raises UnderflowOverflowDetected."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.step = 0

    def on_train_begin(self, trainer: Trainer) -> None:
        """Hook every module of the model (the first detection stops the run)."""
        model = getattr(trainer.model, "module", trainer.model)
        names = {module: name or type(model).__name__ for name, module in model.named_modules()}
        self.step = trainer.state.global_step + 1
        for module, name in names.items():
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def on_step_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """Count steps for the report."""
        self.step = trainer.state.global_step + 1

    def on_train_end(self, trainer: Trainer) -> None:
        """Remove the hooks."""
        self.remove()

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _hook(self, name: str) -> Any:
        def check(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            if all(torch.isfinite(t).all() for t in _tensors(output)):
                return
            self.remove()
            raise UnderflowOverflowDetected(
                f"debug underflow_overflow: step {self.step}: module {name!r} ({type(module).__name__}) is the "
                f"first to output inf/nan; max abs of its inputs {_max_abs(inputs)}, its own weights "
                f"{_max_abs(list(module.parameters(recurse=False)))}, its output {_max_abs(output)}"
            )

        return check


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """The floating-point tensors in a module's output (tensors, tuples, dicts, ModelOutput)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _max_abs(value: Any) -> str:
    found = [t.detach().abs().max().item() for t in _tensors(value) if t.numel()]
    return f"{max(found):.3g}" if found else "-"


def debug_callbacks(train: Any) -> list[Callback]:
    """The callbacks `debug` asks for (only underflow_overflow exists here; others are refused by the config)."""
    return [UnderflowOverflow()] if UNDERFLOW_OVERFLOW in debug_options(train.debug) else []
