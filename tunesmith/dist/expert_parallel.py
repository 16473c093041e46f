"""Expert parallel for MoE models (Qwen3-MoE style 3D expert weights): each of `ep_size` ranks keeps
num_experts / ep_size experts; tokens travel to their experts' rank and back with an eager all-to-all."""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._functional_collectives import all_to_all_single_autograd, wait_tensor
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard

from tunesmith.dist.patterns import match_modules
from tunesmith.utils.errors import ConfigError

DISPATCHERS = ("eager", "fused", "mc2")


def apply_expert_parallel(
    model: nn.Module,
    ep_group: dist.ProcessGroup,
    modules: Sequence[str] = ("model.layers.{*}.mlp.experts",),
    dispatcher: str = "eager",
    replicate_group: dist.ProcessGroup | None = None,
    mesh: DeviceMesh | None = None,
) -> list[str]:
    """Keep this rank's slice of every matched experts module and route tokens over `ep_group`.

    Gradients follow the data-parallel convention (loss multiplied by the data-parallel size, gradients averaged):
    expert gradients are scaled by 1/ep_size in backward and averaged over `replicate_group` (ranks holding the
    same experts).
    `mesh` is the (ep_replicate, ep, ep_fsdp) mesh of `expert_mesh`; with it, checkpoints and exports see the
    experts as DTensors (`global_expert`), and with ep_fsdp > 1 each experts module is sharded with FSDP2 over
    the ranks holding the same experts instead. Returns the expert parameter names, which DDP/FSDP must ignore."""
    if dispatcher not in DISPATCHERS:
        raise ConfigError(f"ep_dispatcher: unknown {dispatcher!r}; allowed: {', '.join(DISPATCHERS)}")
    if dispatcher != "eager":
        raise ConfigError(f"ep_dispatcher: {dispatcher!r} needs Ascend NPU kernels; use ep_dispatcher: eager")
    names: list[str] = []
    fsdp = mesh is not None and mesh["ep_fsdp"].size() > 1
    for prefix, experts in match_modules(model, modules, "ep_modules"):
        sharded = _shard_experts(experts, ep_group)
        names.extend(f"{prefix}.{pname}" for pname in sharded)
        experts.forward = types.MethodType(_expert_parallel_forward, experts)
        if mesh is not None:
            experts.ep_mesh, experts.ep_placements = mesh, (Replicate(), Shard(0), Shard(0))
        if fsdp:
            _fsdp_experts(experts, mesh)
        elif replicate_group is not None:
            for pname in sharded:
                _average_grad(getattr(experts, pname), replicate_group)
    return names


def check_fsdp_modules(model: nn.Module, fsdp_modules: Sequence[str], ep_modules: Sequence[str]) -> None:
    """`ep_fsdp_modules` must name the experts modules `ep_modules` names: FSDP inside the expert-parallel group
    shards each rank's block of experts (nothing else is split by ep_size)."""
    want = [name for name, _ in match_modules(model, ep_modules, "ep_modules")]
    got = [name for name, _ in match_modules(model, fsdp_modules, "ep_fsdp_modules")]
    if got != want:
        raise ConfigError(
            f"ep_fsdp_modules: matches {got[:2]}... but ep_modules matches {want[:2]}...; with ep_fsdp_size > 1 they "
            "must name the same experts modules (set ep_fsdp_modules to ep_modules)"
        )


def _fsdp_experts(experts: nn.Module, mesh: DeviceMesh) -> None:
    """ep_fsdp_size: FSDP2 over the `ep_fsdp` ranks holding the same experts (HSDP with `ep_replicate`), which
    averages the gradients over them as `_average_grad` does without it."""
    shard_mesh = mesh["ep_replicate", "ep_fsdp"] if mesh["ep_replicate"].size() > 1 else mesh["ep_fsdp"]
    fully_shard(experts, mesh=shard_mesh)


def expert_modules(model: nn.Module) -> dict[str, nn.Module]:
    """State-dict name -> experts module, for every expert-parallel parameter of `model` (DDP's `module.` prefix
    dropped, as `torch.distributed.checkpoint.state_dict` names them)."""
    root = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return {
        f"{name}.{pname}" if name else pname: module
        for name, module in root.named_modules()
        if hasattr(module, "ep_mesh")
        for pname, _ in module.named_parameters(recurse=False)
    }


def global_expert(tensor: torch.Tensor, experts: nn.Module) -> DTensor:
    """This rank's block of an expert parameter (or of its optimizer state) as a DTensor over the expert mesh,
    whose global shape has all `num_experts` (no copy, no communication)."""
    local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
    shape = torch.Size((experts.num_experts, *tensor.shape[1:]))
    stride = torch.empty(shape, device="meta").stride()
    return DTensor.from_local(
        local, experts.ep_mesh, experts.ep_placements, run_check=False, shape=shape, stride=stride
    )


def full_experts(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every expert parameter with all experts, on every rank; a collective over the expert mesh."""
    return {
        name: global_expert(getattr(experts, name.rsplit(".", 1)[-1]).detach(), experts).full_tensor()
        for name, experts in expert_modules(model).items()
    }


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


def _average_grad(param: nn.Parameter, replicate_group: dist.ProcessGroup) -> None:
    replicas = dist.get_world_size(replicate_group)

    def hook(p: torch.Tensor) -> None:
        dist.all_reduce(p.grad, group=replicate_group)
        p.grad.div_(replicas)

    param.register_post_accumulate_grad_hook(hook)


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by `scale` in backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def _exchange(x: torch.Tensor, send: list[int], recv: list[int], group: dist.ProcessGroup) -> torch.Tensor:
    return wait_tensor(all_to_all_single_autograd(x.contiguous(), recv, send, group))


def _expert_parallel_forward(
    self: nn.Module, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """Same result as the dense experts forward, with experts spread over `self.ep_group`."""
    ep, local, group = self.ep_size, self.num_local_experts, self.ep_group
    # the data-parallel convention averages gradients over all ranks, but each expert's only come from one in ep
    gate_up, down = (_ScaleGrad.apply(w, 1.0 / ep) for w in (self.gate_up_proj, self.down_proj))
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
            outputs = outputs.index_add(0, rows, _run_expert(self, gate_up[e], down[e], inputs[rows]))
    back = _exchange(outputs, recv, send, group)
    weighted = back * top_k_weights.reshape(-1)[order, None].to(back.dtype)
    return torch.zeros_like(hidden_states).index_add(0, token, weighted.to(hidden_states.dtype))


def _run_expert(self: nn.Module, gate_up: torch.Tensor, down: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    gate, up = nn.functional.linear(x, gate_up).chunk(2, dim=-1)
    return nn.functional.linear(self.act_fn(gate) * up, down)
