"""Built-in `optim_config` plugins: Muon (MomentUm Orthogonalized by Newton-Schulz, Jordan et al. 2024).

Adding your own optimizer: write a module with a parameter dataclass and a factory, and list the module under
`plugin_modules` in the config::

    # my_pkg/my_optim.py
    import dataclasses, torch
    from tunesmith.config.plugins import OPTIM

    @dataclasses.dataclass
    class MySGDParams:
        momentum: float = 0.9

    @OPTIM.register("my_sgd", params=MySGDParams)
    def build_my_sgd(param_groups, lr, params: MySGDParams):
        return torch.optim.SGD(param_groups, lr=lr, momentum=params.momentum)

    # config.yaml
    plugin_modules: [my_pkg.my_optim]
    optim_config: {name: my_sgd, momentum: 0.95}

`param_groups` are the trainable parameters split into a weight-decayed and a non-decayed group; each group has
`params`, `names` (parameter names) and `weight_decay`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from tunesmith.config.plugins import OPTIM

# Parameters that Muon leaves to AdamW even when they are matrices: embeddings and the output head.
_ADAMW_ONLY = ("embed", "lm_head", "wte", "wpe", "output.weight")


@dataclasses.dataclass
class MuonParams:
    """Parameters of the Muon plugin."""

    momentum: float = 0.95
    nesterov: bool = True
    ns_steps: int = 5
    adamw_lr: float | None = None  # learning rate of the AdamW part; defaults to learning_rate
    adamw_beta1: float = 0.9
    adamw_beta2: float = 0.95
    adamw_eps: float = 1e-8
    # weight_decay on every parameter, biases and norms too (LLaMA-Factory's and Moonlight's Muon, which ms-swift
    # runs); false: the usual decayed / not-decayed groups
    decay_all: bool = False


def newton_schulz(grad: torch.Tensor, steps: int) -> torch.Tensor:
    """Approximately orthogonalise a matrix (its nearest semi-orthogonal matrix) by a quintic Newton-Schulz map."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = grad.float() / (grad.norm() + 1e-7)
    transposed = x.size(0) > x.size(1)
    if transposed:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if transposed else x).to(grad.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for 2-D hidden weight matrices, AdamW for the rest (groups with `use_muon=False`)."""

    def __init__(self, groups: list[dict[str, Any]], lr: float, params: MuonParams) -> None:
        defaults = {"lr": lr, "weight_decay": 0.0, "use_muon": True}
        super().__init__(groups, defaults)
        self.hp = params

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One update of every parameter that has a gradient."""
        loss = torch.enable_grad()(closure)() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                if group["use_muon"]:
                    self._muon(p, group["lr"])
                else:
                    self._adamw(p, group["lr"] if self.hp.adamw_lr is None else self.hp.adamw_lr)
        return loss

    def _muon(self, p: torch.Tensor, lr: float) -> None:
        buf = self.state[p].setdefault("momentum", torch.zeros_like(p.grad))
        buf.mul_(self.hp.momentum).add_(p.grad)
        update = p.grad.add(buf, alpha=self.hp.momentum) if self.hp.nesterov else buf
        scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
        p.add_(newton_schulz(update, self.hp.ns_steps), alpha=-lr * scale)

    def _adamw(self, p: torch.Tensor, lr: float) -> None:
        state = self.state[p]
        if not state:
            state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
        b1, b2 = self.hp.adamw_beta1, self.hp.adamw_beta2
        state["step"] += 1
        state["m"].lerp_(p.grad, 1 - b1)
        state["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
        m_hat = state["m"] / (1 - b1 ** state["step"])
        v_hat = state["v"] / (1 - b2 ** state["step"])
        p.addcdiv_(m_hat, v_hat.sqrt().add_(self.hp.adamw_eps), value=-lr)


def split_for_muon(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each group split into its Muon part (2-D hidden matrices) and its AdamW part."""
    out = []
    for group in groups:
        for use_muon in (True, False):
            pairs = [
                (n, p)
                for n, p in zip(group["names"], group["params"], strict=True)
                if (p.ndim == 2 and not any(k in n for k in _ADAMW_ONLY)) == use_muon
            ]
            if pairs:
                names, params = zip(*pairs, strict=True)
                out.append({**group, "params": list(params), "names": list(names), "use_muon": use_muon})
    return out


@OPTIM.register("muon", params=MuonParams)
def build_muon(param_groups: list[dict[str, Any]], lr: float, params: MuonParams) -> Muon:
    """Muon (orthogonalised momentum) on hidden weight matrices, AdamW on embeddings, head, norms and biases."""
    if params.decay_all:
        decay = max(g["weight_decay"] for g in param_groups)
        merged = {key: [x for g in param_groups for x in g[key]] for key in ("params", "names")}
        param_groups = [{**param_groups[0], **merged, "weight_decay": decay}]
    return Muon(split_for_muon(param_groups), lr, params)
