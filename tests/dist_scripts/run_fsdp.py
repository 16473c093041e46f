"""Launched on 2 ranks: DDP and FSDP2 variants vs the 1-process run; DCP save/resume; HF export.

Usage: torchrun --nproc_per_node 2 run_fsdp.py WORKDIR   (writes WORKDIR/fsdp.json)
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from common import (
    LR,
    adamw,
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

from tunesmith.dist.checkpoint_io import export_hf, load_sharded, save_sharded
from tunesmith.dist.ddp import wrap_ddp
from tunesmith.dist.fsdp2 import apply_fsdp2, load_full_state_from_rank0
from tunesmith.dist.mesh import build_mesh, fsdp_mesh, parallel_sizes
from tunesmith.dist.setup import init_distributed


def run(model, steps: int = 3, start: int = 0, optimizer=None, make_optimizer=adamw):
    rank, world = dist.get_rank(), dist.get_world_size()
    opt = optimizer or make_optimizer(model.parameters())
    losses = []
    for b in batches(start + steps)[start:]:
        losses.append(
            train_step(model, opt, shard(b, rank, world), valid_tokens(b["labels"]), dp_scale=world)
        )
    return losses, opt


def fsdp_model(mesh, **kwargs):
    return apply_fsdp2(tiny_model(), mesh, **kwargs)


def main(workdir: str) -> None:
    init_distributed("gloo", 300)
    sizes = parallel_sizes(dist.get_world_size(), sharded=True)
    mesh = fsdp_mesh(build_mesh(sizes), sizes)
    ref = reference_losses()
    result: dict = {"reference": ref}
    result["ddp"] = max_diff(ref, run(wrap_ddp(tiny_model(), bucket_cap_mb=1, broadcast_buffers=True))[0])
    result["fsdp2_reshard"] = max_diff(ref, run(fsdp_model(mesh, reshard_after_forward=True))[0])
    result["fsdp2_no_reshard"] = max_diff(ref, run(fsdp_model(mesh, reshard_after_forward=False))[0])
    result["fsdp2_offload"] = max_diff(ref, run(fsdp_model(mesh, offload_params=True, pin_memory=True))[0])
    result["fsdp2_prefetch2"] = max_diff(
        ref, run(fsdp_model(mesh, num_to_forward_prefetch=2, num_to_backward_prefetch=2))[0]
    )
    placed = fsdp_model(mesh, shard_placement_fn="common:shard_last_dim")
    result["fsdp2_placement_dim"] = placed.lm_head.weight.placements[0].dim
    result["fsdp2_placement"] = max_diff(ref, run(placed)[0])
    result["fsdp2_bf16"] = max_diff(ref, run(fsdp_model(mesh, param_dtype="bf16", reduce_dtype="fp32"))[0])
    ref_sgd = reference_losses(make_optimizer=sgd)
    result["reference_sgd"] = ref_sgd
    result["ddp_sgd"] = max_diff(ref_sgd, run(wrap_ddp(tiny_model()), make_optimizer=sgd)[0])
    ignored = fsdp_model(mesh, ignored_modules=["lm_head"])
    result["fsdp2_ignored_sgd"] = max_diff(ref_sgd, run(ignored, make_optimizer=sgd)[0])
    result["fsdp2_meta_init"] = max_diff(ref, run(meta_init_model(mesh))[0])
    result.update(checkpoint_checks(mesh, ref, workdir))
    write_result(os.path.join(workdir, "fsdp.json"), result)


def meta_init_model(mesh):
    """init_model_with_meta_device: only rank 0 builds real weights (from a different seed on other ranks)."""
    if dist.get_rank() == 0:
        model = tiny_model()
        full = model.state_dict()
    else:
        with torch.device("meta"):
            model = tiny_model(seed=123)
        full = None
    apply_fsdp2(model, mesh)
    load_full_state_from_rank0(model, full)
    return model


def checkpoint_checks(mesh, ref: list[float], workdir: str) -> dict:
    """Train 2 steps, save sharded; resume here and compare step 3; resume the 1-process checkpoint; export HF."""
    model = fsdp_model(mesh)
    first, opt = run(model, steps=2)
    save_sharded(os.path.join(workdir, "ckpt_2p"), model, opt)
    resumed = fsdp_model(mesh)
    opt2 = torch.optim.AdamW(resumed.parameters(), lr=LR)
    load_sharded(os.path.join(workdir, "ckpt_2p"), resumed, opt2)
    out = {"resume_2p_to_2p": max_diff(ref, first + run(resumed, steps=1, start=2, optimizer=opt2)[0])}
    from_1p = fsdp_model(mesh)
    opt3 = torch.optim.AdamW(from_1p.parameters(), lr=LR)
    load_sharded(os.path.join(workdir, "ckpt_1p"), from_1p, opt3)
    out["resume_1p_to_2p"] = max_diff(ref[2:], run(from_1p, steps=1, start=2, optimizer=opt3)[0])
    export_hf(resumed, os.path.join(workdir, "hf_export"))
    probe = batches(1, seed=7)[0]["input_ids"]
    with torch.no_grad():
        logits = resumed(input_ids=probe, use_cache=False).logits
    if dist.get_rank() == 0:
        torch.save(logits, os.path.join(workdir, "sharded_logits.pt"))
    return out


if __name__ == "__main__":
    main(sys.argv[1])
