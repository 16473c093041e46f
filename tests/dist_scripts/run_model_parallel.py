"""Launched on 4 ranks: TP=2, Ulysses CP=2 (with and without dp), dp2 x tp2 (FSDP2 + TP) vs 1 process.

Usage: torchrun --nproc_per_node 4 run_model_parallel.py WORKDIR   (writes WORKDIR/model_parallel.json)
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from common import (
    LR,
    VOCAB,
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

from tunesmith.dist.ddp import wrap_ddp
from tunesmith.dist.expert_parallel import apply_expert_parallel
from tunesmith.dist.fsdp2 import apply_fsdp2
from tunesmith.dist.mesh import build_mesh, expert_mesh, fsdp_mesh, parallel_sizes
from tunesmith.dist.setup import init_distributed
from tunesmith.dist.tensor_parallel import apply_tensor_parallel
from tunesmith.dist.ulysses import apply_ulysses, split_sequence


def reference_logits(arch: str) -> torch.Tensor:
    with torch.no_grad():
        return tiny_model(arch)(input_ids=batches(1)[0]["input_ids"]).logits


def tp_only(arch: str, ref: list[float], mesh) -> dict:
    """TP over the tp dim; both tp groups run the whole global batch."""
    model = apply_tensor_parallel(tiny_model(arch), mesh["tp"])
    with torch.no_grad():
        logits = model(input_ids=batches(1)[0]["input_ids"]).logits
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    losses = [train_step(model, opt, b, valid_tokens(b["labels"])) for b in batches()]
    return {
        f"tp2_{arch}_logits": (logits - reference_logits(arch)).abs().max().item(),
        f"tp2_{arch}_loss": max_diff(ref, losses),
    }


def dp_tp(ref: list[float], mesh) -> float:
    """dp2 x tp2: TP inside each dp rank, FSDP2 over the dp ranks (2D mesh)."""
    model = apply_tensor_parallel(tiny_model(), mesh["tp"])
    apply_fsdp2(model, mesh["dp_shard"])
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    dp_rank, dp = mesh["dp_shard"].get_local_rank(), mesh["dp_shard"].size()
    losses = [
        train_step(
            model,
            opt,
            shard(b, dp_rank, dp),
            valid_tokens(b["labels"]),
            dp_scale=dp,
            group=mesh["dp_shard"].get_group(),
        )
        for b in batches()
    ]
    return max_diff(ref, losses)


def cp_run(ref: list[float], cp_mesh, dp_mesh, ddp_mesh) -> dict:
    """Ulysses over cp_mesh; rows split over dp_mesh (None: every cp group runs the whole batch)."""
    cp_rank, cp = cp_mesh.get_local_rank(), cp_mesh.size()
    dp_rank, dp = (dp_mesh.get_local_rank(), dp_mesh.size()) if dp_mesh is not None else (0, 1)
    model = apply_ulysses(tiny_model(), cp_mesh.get_group())
    full = reference_logits("llama")
    first = split_sequence(batches(1)[0], cp_rank, cp)
    with torch.no_grad():
        logits = model(input_ids=first["input_ids"], position_ids=first["position_ids"]).logits
    seq = full.shape[1] // cp
    logit_diff = (logits - full[:, cp_rank * seq : (cp_rank + 1) * seq]).abs().max().item()
    model = wrap_ddp(model, mesh=ddp_mesh)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    losses = []
    for b in batches():
        local = split_sequence(shard(b, dp_rank, dp), cp_rank, cp)
        out = model(input_ids=local["input_ids"], position_ids=local["position_ids"], use_cache=False).logits
        loss = F.cross_entropy(out.flatten(0, 1), local["shift_labels"].flatten(), reduction="sum")
        loss = loss / valid_tokens(b["labels"])
        (loss * ddp_mesh.size()).backward()
        opt.step()
        opt.zero_grad()
        total = loss.detach().clone()
        dist.all_reduce(total, group=ddp_mesh.get_group())
        losses.append(float(total))
    return {"logits": logit_diff, "loss": max_diff(ref, losses)}


def cp_eager_sinks(cp_mesh) -> float:
    """Ulysses around eager attention (causal only through its mask) with gpt-oss's per-head sinks and a sliding
    window shorter than the sequence: logits equal one process's."""
    from transformers import GptOssConfig, GptOssForCausalLM

    config = GptOssConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        num_local_experts=2,
        num_experts_per_tok=1,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention"],
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    model = GptOssForCausalLM(config).eval()
    ids = batches(1)[0]["input_ids"]
    with torch.no_grad():
        model.model.layers[0].self_attn.sinks.normal_()  # non-zero sinks: a wrong head slice shows
        full = model(input_ids=ids).logits
        cp_rank, cp = cp_mesh.get_local_rank(), cp_mesh.size()
        local = split_sequence({"input_ids": ids, "labels": ids}, cp_rank, cp)
        model = apply_ulysses(model, cp_mesh.get_group())
        logits = model(input_ids=local["input_ids"], position_ids=local["position_ids"]).logits
    seq = ids.shape[1] // cp
    return (logits - full[:, cp_rank * seq : (cp_rank + 1) * seq]).abs().max().item()


def data_parallel(model, ref: list[float], make_optimizer) -> float:
    """Each of the 4 ranks takes one row; gradients averaged by the wrapper (loss x 4)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad])
    losses = [
        train_step(model, opt, shard(b, rank, world), valid_tokens(b["labels"]), dp_scale=world)
        for b in batches()
    ]
    return max_diff(ref, losses)


def hsdp(ref: list[float]) -> float:
    """fsdp_size 2 on 4 ranks: shard within pairs, replicate across them (2D mesh)."""
    sizes = parallel_sizes(4, fsdp_size=2, sharded=True)
    model = apply_fsdp2(tiny_model(), fsdp_mesh(build_mesh(sizes), sizes))
    return data_parallel(model, ref, adamw)


def ep_replicated() -> float:
    """ep_size 2 on 4 ranks: two copies of each expert half, their gradients averaged across the copies."""
    sizes = parallel_sizes(4, ep_size=2)
    ep = expert_mesh(sizes)
    model = tiny_model("qwen3_moe")
    names = apply_expert_parallel(model, ep["ep"].get_group(), replicate_group=ep["ep_replicate"].get_group())
    return data_parallel(
        wrap_ddp(model, ignore_parameters=names), reference_losses("qwen3_moe", make_optimizer=sgd), sgd
    )


def main(workdir: str) -> None:
    init_distributed("gloo", 300)
    ref = reference_losses()
    result: dict = {}
    tp_mesh = build_mesh(parallel_sizes(4, tp_size=2, sharded=True))
    result.update(tp_only("llama", ref, tp_mesh))
    result.update(tp_only("qwen2", reference_losses("qwen2"), tp_mesh))
    result["dp2_tp2_loss"] = dp_tp(ref, tp_mesh)
    cp_mesh = build_mesh(parallel_sizes(4, cp_size=2))
    cp_only = cp_run(ref, cp_mesh["cp"], None, cp_mesh["cp"])
    result["cp2_logits"], result["cp2_loss"] = cp_only["logits"], cp_only["loss"]
    result["cp2_eager_sinks_window_logits"] = cp_eager_sinks(cp_mesh["cp"])
    flat = cp_mesh["dp", "cp"]._flatten("dp_cp")
    dp_cp = cp_run(ref, cp_mesh["cp"], cp_mesh["dp"], flat)
    result["dp2_cp2_logits"], result["dp2_cp2_loss"] = dp_cp["logits"], dp_cp["loss"]
    result["hsdp_2x2_loss"] = hsdp(ref)
    result["ep2_replicated_loss"] = ep_replicated()
    write_result(os.path.join(workdir, "model_parallel.json"), result)


if __name__ == "__main__":
    main(sys.argv[1])
