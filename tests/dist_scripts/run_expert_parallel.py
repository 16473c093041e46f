"""Launched on 2 ranks: EP=2 on a tiny Qwen3-MoE (4 experts) vs 1 process: logits, and losses over 3 steps.

Usage: torchrun --nproc_per_node 2 run_expert_parallel.py WORKDIR   (writes WORKDIR/expert_parallel.json)
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from common import (
    batches,
    max_diff,
    reference_losses,
    sgd,
    shard,
    tiny_model,
    train_step,
    valid_tokens,
    write_result,
)

from tunesmith.dist.ddp import wrap_ddp
from tunesmith.dist.expert_parallel import apply_expert_parallel
from tunesmith.dist.setup import init_distributed


def main(workdir: str) -> None:
    init_distributed("gloo", 300)
    rank, world = dist.get_rank(), dist.get_world_size()
    ref = reference_losses("qwen3_moe", make_optimizer=sgd)
    probe = batches(1)[0]
    with torch.no_grad():
        ref_logits = shard(
            {"logits": tiny_model("qwen3_moe")(input_ids=probe["input_ids"]).logits}, rank, world
        )
    model = tiny_model("qwen3_moe")
    names = apply_expert_parallel(model, dist.group.WORLD)
    local_experts = model.model.layers[0].mlp.experts.gate_up_proj.shape[0]
    with torch.no_grad():
        logits = model(input_ids=shard(probe, rank, world)["input_ids"]).logits
    ddp = wrap_ddp(model, ignore_parameters=names)
    opt = sgd(ddp.parameters())
    losses = [
        train_step(ddp, opt, shard(b, rank, world), valid_tokens(b["labels"]), dp_scale=world)
        for b in batches()
    ]
    write_result(
        os.path.join(workdir, "expert_parallel.json"),
        {
            "local_experts": local_experts,
            "ep2_logits": (logits - ref_logits["logits"]).abs().max().item(),
            "ep2_loss": max_diff(ref, losses),
            "reference": ref,
        },
    )


if __name__ == "__main__":
    main(sys.argv[1])
