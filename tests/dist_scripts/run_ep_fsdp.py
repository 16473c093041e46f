"""Launched on 4 ranks: ep_size 2 with ep_fsdp_size 2 (each expert block sharded over the 2 ranks holding it) and
FSDP2 for the rest, on a tiny Qwen3-MoE, against 1 process; and a sharded checkpoint of it (save, train, load,
train again; plus the full state at the save for a 1-process load).

Usage: torchrun --nproc_per_node 4 run_ep_fsdp.py WORKDIR   (writes WORKDIR/ep_fsdp.json, WORKDIR/dcp, full.pt)
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from common import (
    adamw,
    batches,
    max_diff,
    reference_losses,
    sgd,
    shard,
    tiny_model,
    token_loss_sum,
    train_step,
    valid_tokens,
    write_result,
)
from torch.distributed.tensor import DTensor

from tunesmith.dist.checkpoint_io import full_model_state, is_sharded, load_sharded, save_sharded
from tunesmith.dist.ddp import wrap_ddp
from tunesmith.dist.expert_parallel import apply_expert_parallel
from tunesmith.dist.fsdp2 import apply_fsdp2
from tunesmith.dist.mesh import build_mesh, expert_mesh, fsdp_mesh, parallel_sizes
from tunesmith.dist.setup import init_distributed
from tunesmith.train.grad_clip import clip_grad_norm, mark_sharded


def ep_fsdp_model() -> torch.nn.Module:
    sizes = parallel_sizes(4, ep_size=2, ep_fsdp_size=2, sharded=True)
    ep = expert_mesh(sizes)
    model = tiny_model("qwen3_moe")
    names = apply_expert_parallel(model, ep["ep"].get_group(), mesh=ep)
    skip = {p for n, p in model.named_parameters() if n in set(names)}
    return apply_fsdp2(model, fsdp_mesh(build_mesh(sizes), sizes), skip_params=skip)


def steps(model, opt, chunk: list[dict]) -> list[float]:
    rank, world = dist.get_rank(), dist.get_world_size()
    return [
        train_step(model, opt, shard(b, rank, world), valid_tokens(b["labels"]), dp_scale=world)
        for b in chunk
    ]


def ddp_ep_model() -> torch.nn.Module:
    """ep_size 2 without ep_fsdp under DDP: each expert block replicated on 2 ranks, no DTensor parameters."""
    ep = expert_mesh(parallel_sizes(4, ep_size=2))
    model = tiny_model("qwen3_moe")
    replicate = ep["ep_replicate"].get_group()
    names = apply_expert_parallel(model, ep["ep"].get_group(), replicate_group=replicate, mesh=ep)
    return wrap_ddp(model, ignore_parameters=names)


def resume_diff(model: torch.nn.Module, path: str) -> float:
    """Train 2 steps, save, train 2, load, train the same 2 again: the largest loss difference of the repeat."""
    opt, data = adamw(model.parameters()), batches(4)
    steps(model, opt, data[:2])
    save_sharded(path, model, opt)
    after = steps(model, opt, data[2:])
    load_sharded(path, model, opt)
    return max_diff(after, steps(model, opt, data[2:]))


def grad_norm_diff() -> float:
    """The clipped-gradient norm (expert shares marked as `tunesmith.recipes.distributed.wrap` does) vs 1 process."""
    batch, world = batches(1)[0], dist.get_world_size()
    tokens = valid_tokens(batch["labels"])
    ref = tiny_model("qwen3_moe")
    (
        token_loss_sum(ref(input_ids=batch["input_ids"], use_cache=False).logits, batch["labels"]) / tokens
    ).backward()
    expected = clip_grad_norm(list(ref.parameters()), 1e9)
    model = ep_fsdp_model()
    for module in model.modules():
        for param in module.parameters(recurse=False) if hasattr(module, "ep_group") else ():
            mark_sharded(param, module.ep_group)
    part = shard(batch, dist.get_rank(), world)
    logits = model(input_ids=part["input_ids"], use_cache=False).logits
    (token_loss_sum(logits, part["labels"]) / tokens * world).backward()
    return abs(clip_grad_norm(list(model.parameters()), 1e9) - expected)


def main(workdir: str) -> None:
    init_distributed("gloo", 300)
    model = ep_fsdp_model()
    experts = model.model.layers[0].mlp.experts.gate_up_proj
    result = {
        "expert_local_shape": list(experts.to_local().shape),
        "expert_is_dtensor": isinstance(experts, DTensor),
    }
    result["sgd_loss"] = max_diff(
        reference_losses("qwen3_moe", make_optimizer=sgd), steps(model, sgd(model.parameters()), batches())
    )
    ddp = ddp_ep_model()
    result["ddp_is_sharded"] = is_sharded(ddp)
    result["ddp_resume_loss"] = resume_diff(ddp, os.path.join(workdir, "dcp_ddp"))
    model = ep_fsdp_model()
    opt = adamw(model.parameters())
    data = batches(6)
    first = steps(model, opt, data[:2])
    save_sharded(os.path.join(workdir, "dcp"), model, opt)
    full = full_model_state(model)
    if dist.get_rank() == 0:
        torch.save(full, os.path.join(workdir, "full.pt"))
    after = steps(model, opt, data[2:4])
    load_sharded(os.path.join(workdir, "dcp"), model, opt)
    again = steps(model, opt, data[2:4])
    result["adamw_loss"] = max_diff(
        reference_losses("qwen3_moe", steps=4, make_optimizer=adamw), first + after
    )
    result["resume_loss"] = max_diff(after, again)
    result["grad_norm"] = grad_norm_diff()
    write_result(os.path.join(workdir, "ep_fsdp.json"), result)


if __name__ == "__main__":
    main(sys.argv[1])
