"""Layer-wise optimizers (transformers' `optim: *_layerwise`, LLaMA-Factory's galore_layerwise / apollo_layerwise).

Every trainable parameter gets its own optimizer, stepped in the parameter's post-accumulate-grad hook as soon as
backward has produced its gradient; the gradient is freed right there, so the whole set of gradients never exists
at once. As in transformers and LLaMA-Factory: one backward per update (gradient_accumulation_steps 1, one
process), and the gradients are not clipped. The per-parameter optimizers' groups are this optimizer's
`param_groups`, so the trainer's learning-rate schedule reaches each of them; the gradient norm is measured in the
hooks, before each update.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from tunesmith.utils.errors import ConfigError


class LayerwiseOptimizer(torch.optim.Optimizer):
    """One optimizer per parameter, stepped inside backward; `step` and `zero_grad` have nothing left to do."""

    def __init__(self, per_param: list[tuple[torch.nn.Parameter, torch.optim.Optimizer]]) -> None:
        if not per_param:
            raise ConfigError("the model has no trainable parameters; check finetuning_type and its options")
        self.per_param = per_param
        self._by_id = {id(p): opt for p, opt in per_param}
        super().__init__([torch.zeros(1)], {"lr": 0.0})  # a placeholder: the real groups are the inner ones
        self.param_groups = self._inner_groups()
        self._squares: torch.Tensor | None = None
        for param, _ in per_param:  # the hooks live as long as the parameters: one such optimizer per model
            param.register_post_accumulate_grad_hook(self._update)

    def _inner_groups(self) -> list[dict[str, Any]]:
        return [group for _, opt in self.per_param for group in opt.param_groups]

    def _update(self, param: torch.nn.Parameter) -> None:
        if param.grad is None:
            return
        square = param.grad.detach().float().pow(2).sum()
        self._squares = square if self._squares is None else self._squares + square.to(self._squares.device)
        self._by_id[id(param)].step()
        param.grad = None

    def optimizer_of(self, param: torch.nn.Parameter) -> torch.optim.Optimizer:
        """The optimizer that updates `param`."""
        return self._by_id[id(param)]

    def take_grad_norm(self) -> float:
        """The norm of the gradients the hooks applied since the last call (0 when none)."""
        squares, self._squares = self._squares, None
        return math.sqrt(float(squares)) if squares is not None else 0.0

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:
        """Nothing: each parameter was updated by its hook during backward."""
        return None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop any gradient a hook has not consumed (e.g. after an interrupted backward)."""
        for param, _ in self.per_param:
            param.grad = None

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizers' states, in parameter order."""
        return {"layerwise": [opt.state_dict() for _, opt in self.per_param]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` saved (the same trainable parameters in the same order)."""
        saved = state_dict.get("layerwise")
        if saved is None or len(saved) != len(self.per_param):
            raise ConfigError(
                "resume_from_checkpoint: the checkpoint's optimizer is not the layer-wise optimizer of this model's "
                f"{len(self.per_param)} trainable parameters; resume with the run's own optim settings"
            )
        for (_, opt), state in zip(self.per_param, saved, strict=True):
            opt.load_state_dict(state)
        self.param_groups = self._inner_groups()  # loading replaced the inner group dicts


def layerwise(
    groups: list[dict[str, Any]], build: Callable[[list[dict[str, Any]]], torch.optim.Optimizer]
) -> LayerwiseOptimizer:
    """A layer-wise optimizer over `groups`: each parameter gets `build([its group's options, params=[p]])`."""
    per_param = []
    for group in groups:
        options = {k: v for k, v in group.items() if k not in ("params", "names")}
        per_param += [(p, build([{**options, "params": [p]}])) for p in group["params"]]
    return LayerwiseOptimizer(per_param)
