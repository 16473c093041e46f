"""Expert parallel for MoE models (Qwen3-MoE style 3D expert weights): each of `ep_size` ranks keeps
num_experts / ep_size experts; tokens travel to their experts' rank and back with an eager all-to-all."""

from __future__ import annotations

import types
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._functional_collectives import all_to_all_single_autograd, wait_tensor

from tunesmith.dist.patterns import match_modules
from tunesmith.utils.errors import ConfigError

DISPATCHERS = ("eager", "fused", "mc2")


def apply_expert_parallel(
    model: nn.Module,
    ep_group: dist.ProcessGroup,
    modules: Sequence[str] = ("model.layers.{*}.mlp.experts",),
    dispatcher: str = "eager",
    replicate_group: dist.ProcessGroup | None = None,
) -> list[str]:
    """Keep this rank's slice of every matched experts module and route tokens over `ep_group`.

    Gradients follow the data-parallel convention (loss multiplied by the data-parallel size, gradients averaged):
    expert gradients are divided by ep_size and averaged over `replicate_group` (ranks holding the same experts).
    Returns the expert parameter names, which DDP/FSDP must ignore."""
    if dispatcher not in DISPATCHERS:
        raise ConfigError(f"ep_dispatcher: unknown {dispatcher!r}; allowed: {', '.join(DISPATCHERS)}")
    if dispatcher != "eager":
        raise ConfigError(f"ep_dispatcher: {dispatcher!r} needs Ascend NPU kernels; use ep_dispatcher: eager")
    names: list[str] = []
    for prefix, experts in match_modules(model, modules, "ep_modules"):
        for pname in _shard_experts(experts, ep_group):
            names.append(f"{prefix}.{pname}")
            _scale_grad(getattr(experts, pname), dist.get_world_size(ep_group), replicate_group)
        experts.forward = types.MethodType(_expert_parallel_forward, experts)
    return names


def _shard_experts(experts: nn.Module, group: dist.ProcessGroup) -> list[str]:
    """Replace every (num_experts, ...) parameter by this rank's contiguous block of experts."""
    total = getattr(experts, "num_experts", None)
    if total is None:
        raise ConfigError(
            f"ep_modules: {type(experts).__name__} has no num_experts; match the experts container"
        )
    ep, rank = dist.get_world_size(group), dist.get_rank(group)
    if total % ep:
        raise ConfigError(f"ep_size: {ep} does not divide the model's {total} experts")
    local = total // ep
    sharded = [n for n, p in experts.named_parameters(recurse=False) if p.dim() >= 2 and p.shape[0] == total]
    for name in sharded:
        full = getattr(experts, name)
        block = full.detach()[rank * local : (rank + 1) * local].clone()
        setattr(experts, name, nn.Parameter(block, requires_grad=full.requires_grad))
    experts.ep_group, experts.ep_size, experts.num_local_experts = group, ep, local
    return sharded


def _scale_grad(param: nn.Parameter, ep: int, replicate_group: dist.ProcessGroup | None) -> None:
    replicas = dist.get_world_size(replicate_group) if replicate_group is not None else 1

    def hook(p: torch.Tensor) -> None:
        if replicate_group is not None:
            dist.all_reduce(p.grad, group=replicate_group)
        p.grad.div_(ep * replicas)

    param.register_post_accumulate_grad_hook(hook)


def _exchange(x: torch.Tensor, send: list[int], recv: list[int], group: dist.ProcessGroup) -> torch.Tensor:
    return wait_tensor(all_to_all_single_autograd(x.contiguous(), recv, send, group))


def _expert_parallel_forward(
    self: nn.Module, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """Same result as the dense experts forward, with experts spread over `self.ep_group`."""
    ep, local, group = self.ep_size, self.num_local_experts, self.ep_group
    top_k = top_k_index.shape[1]
    flat = top_k_index.reshape(-1)
    order = torch.argsort(flat, stable=True)
    token = order // top_k
    counts = torch.bincount(flat, minlength=ep * local).view(ep, local)
    recv_counts = torch.empty_like(counts)
    dist.all_to_all_single(recv_counts, counts, group=group)
    send, recv = counts.sum(1).tolist(), recv_counts.sum(1).tolist()
    inputs = _exchange(hidden_states[token], send, recv, group)
    expert_of = torch.repeat_interleave(torch.arange(local).repeat(ep), recv_counts.reshape(-1))
    outputs = torch.zeros_like(inputs)
    for e in range(local):
        rows = (expert_of == e).nonzero().squeeze(1)
        if rows.numel():
            outputs = outputs.index_add(0, rows, _run_expert(self, e, inputs[rows]))
    back = _exchange(outputs, recv, send, group)
    weighted = back * top_k_weights.reshape(-1)[order, None].to(back.dtype)
    return torch.zeros_like(hidden_states).index_add(0, token, weighted.to(hidden_states.dtype))


def _run_expert(self: nn.Module, e: int, x: torch.Tensor) -> torch.Tensor:
    gate, up = nn.functional.linear(x, self.gate_up_proj[e]).chunk(2, dim=-1)
    return nn.functional.linear(self.act_fn(gate) * up, self.down_proj[e])
