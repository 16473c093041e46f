"""Launched on 2 ranks: `parallelize(model, cfg)` from real configs vs 1 process.

fsdp2 + LoRA + activation checkpointing (through the model layer), cp_size 2 with DDP, ep_size 2 with fsdp2.
Usage: torchrun --nproc_per_node 2 run_parallelize.py WORKDIR   (writes WORKDIR/parallelize.json)
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from common import batches, max_diff, sgd, shard, tiny_model, token_loss_sum, valid_tokens, write_result

import tunesmith.dist.plugins  # noqa: F401  (registers fsdp2 / deepspeed until the config layer imports it)
from tunesmith.config import load_config
from tunesmith.dist.checkpoint_io import save_sharded
from tunesmith.dist.parallelize import parallelize
from tunesmith.dist.setup import init_distributed
from tunesmith.dist.ulysses import split_sequence
from tunesmith.model import prepare_for_training

BASE = ["model_name_or_path=builtin:tiny", "dataset=demo", "output_dir=/tmp/unused"]


def prepared(arch: str, cfg, seed: int = 0) -> torch.nn.Module:
    """The model layer's preparation; LoRA init draws from the global RNG, so seed it identically everywhere."""
    torch.manual_seed(0)
    return prepare_for_training(tiny_model(arch, seed=seed), cfg).train()


def reference(arch: str, cfg) -> list[float]:
    model = prepared(arch, cfg)
    opt = sgd([p for p in model.parameters() if p.requires_grad])
    out = []
    for b in batches():
        loss = token_loss_sum(model(input_ids=b["input_ids"], use_cache=False).logits, b["labels"])
        loss = loss / valid_tokens(b["labels"])
        loss.backward()
        opt.step()
        opt.zero_grad()
        out.append(float(loss))
    return out


def describe(model: torch.nn.Module) -> dict:
    """What parallelize did: wrapper type, FSDP units, LoRA and checkpointing present, local expert count."""
    from torch.distributed.fsdp import FSDPModule

    names = [n for n, _ in model.named_modules()]
    experts = [m.gate_up_proj.shape[0] for n, m in model.named_modules() if n.endswith("mlp.experts")]
    return {
        "wrapper": type(model).__name__,
        "fsdp_units": sum(isinstance(m, FSDPModule) for m in model.modules()),
        "lora": any("lora_A" in n for n in names),
        "checkpointed": any("forward" in vars(m) for n, m in model.named_modules() if n.endswith("layers.0")),
        "local_experts": experts[0] if experts else None,
    }


def distributed(arch: str, cfg, info: dict, seed: int = 0) -> list[float]:
    par = parallelize(prepared(arch, cfg, seed), cfg, dist.get_world_size())
    info.update(describe(par.model), loss_scale=par.loss_scale)
    opt = sgd([p for p in par.model.parameters() if p.requires_grad])
    out = []
    for b in batches():
        local = shard(b, par.dp_rank, par.sizes.dp)
        if par.sizes.cp > 1:
            local = split_sequence(local, par.cp_rank, par.sizes.cp)
            logits = par.model(input_ids=local["input_ids"], position_ids=local["position_ids"]).logits
            loss = F.cross_entropy(logits.flatten(0, 1), local["shift_labels"].flatten(), reduction="sum")
        else:
            loss = token_loss_sum(
                par.model(input_ids=local["input_ids"], use_cache=False).logits, local["labels"]
            )
        loss = loss / valid_tokens(b["labels"])
        (loss * par.loss_scale).backward()
        opt.step()
        opt.zero_grad()
        total = loss.detach().clone()
        dist.all_reduce(total)
        out.append(float(total))
    return out


CASES = {
    "fsdp2_lora_recompute": (
        "llama",
        [
            "finetuning_type=lora",
            "lora_target=all",
            "gradient_checkpointing=true",
            'dist_config={"name": "fsdp2", "reshard_after_forward": false}',
        ],
    ),
    "ddp_cp2": ("llama", ["cp_size=2", "ddp_bucket_cap_mb=1"]),
    "fsdp2_ep2": ("qwen3_moe", ["ep_size=2", 'dist_config={"name": "fsdp2"}']),
}


def main(workdir: str) -> None:
    init_distributed("gloo", 300)
    result = {}
    for name, (arch, overrides) in CASES.items():
        cfg = load_config(None, BASE + overrides)
        info: dict = {}
        result[name] = max_diff(reference(arch, cfg), distributed(arch, cfg, info))
        result[f"{name}_info"] = info
    dcp_dir = os.path.join(workdir, "dcp_init")
    save_sharded(dcp_dir, tiny_model("llama"))  # seed-0 weights as a torch distributed checkpoint
    cfg = load_config(None, [*BASE, "dist_config=" + json.dumps({"name": "fsdp2", "dcp_path": dcp_dir})])
    # other random weights (seed 5), then dcp_path loads the seed-0 weights into the shards
    result["fsdp2_dcp_path"] = max_diff(reference("llama", cfg), distributed("llama", cfg, {}, seed=5))
    write_result(os.path.join(workdir, "parallelize.json"), result)


if __name__ == "__main__":
    main(sys.argv[1])
