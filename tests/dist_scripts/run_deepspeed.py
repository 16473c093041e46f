"""Launched on 2 ranks: DeepSpeed ZeRO-2 and ZeRO-3 (the shipped example JSONs, "auto" filled) vs 1 process;
ZeRO-3 checkpoint -> resume; its partitions gathered into one model in one process (export).

Usage: torchrun --nproc_per_node 2 run_deepspeed.py WORKDIR [offload]   (writes WORKDIR/deepspeed.json)
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from common import (
    GLOBAL_BATCH,
    LR,
    batches,
    max_diff,
    reference_losses,
    shard,
    tiny_model,
    token_loss_sum,
    valid_tokens,
    write_result,
)

from tunesmith.dist.deepspeed import (
    build_engine,
    fill_auto,
    init_deepspeed_distributed,
    load_ds_config,
    load_zero_model,
)

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "deepspeed")


def engine_for(name: str, bf16: bool = False):
    world = dist.get_world_size()
    ds = fill_auto(
        load_ds_config(os.path.join(EXAMPLES, name)),
        micro_batch_size=GLOBAL_BATCH // world,
        gradient_accumulation_steps=1,
        data_parallel_size=world,
        learning_rate=LR,
        max_grad_norm=0.0,
        bf16=bf16,
        fp16=False,
        hidden_size=32,
        source=name,
    )
    ds["steps_per_print"] = 10**6
    return build_engine(tiny_model(), ds, learning_rate=LR, weight_decay=0.01)  # torch AdamW default


def engine_from_config():
    """The `deepspeed` plugin from a real config (HF `deepspeed: file.json`), as the trainer will build it."""
    import tunesmith.dist.plugins  # noqa: F401  (registers the plugins until the config layer imports it)
    from tunesmith.config import load_config
    from tunesmith.config.plugins import DIST

    world = dist.get_world_size()
    cfg = load_config(
        None,
        [
            "model_name_or_path=builtin:tiny",
            "dataset=demo",
            "output_dir=/tmp/unused",
            f"learning_rate={LR}",
            f"per_device_train_batch_size={GLOBAL_BATCH // world}",
            "max_grad_norm=0",
            "weight_decay=0.01",
            f"deepspeed={os.path.join(EXAMPLES, 'ds_z2.json')}",
        ],
    )
    spec = cfg.train.dist_config
    return DIST.get(spec.name).factory(tiny_model(), cfg, world, spec.params)


def run(engine, steps: int = 3, start: int = 0) -> list[float]:
    rank, world = dist.get_rank(), dist.get_world_size()
    losses = []
    for b in batches(start + steps)[start:]:
        local = shard(b, rank, world)
        logits = engine(input_ids=local["input_ids"], use_cache=False).logits
        loss = token_loss_sum(logits, local["labels"]) / valid_tokens(b["labels"])
        engine.backward(loss * world)  # DeepSpeed averages gradients over data-parallel ranks
        engine.step()
        total = loss.detach().clone()
        dist.all_reduce(total)
        losses.append(float(total))
    return losses


def main(workdir: str, variant: str) -> None:
    init_deepspeed_distributed("gloo", 600)
    ref = reference_losses()
    result: dict = {}
    if variant == "offload":
        result["zero2_offload"] = max_diff(ref, run(engine_for("ds_z2_offload.json")))
    else:
        result["zero2"] = max_diff(ref, run(engine_for("ds_z2.json")))
        result["zero2_from_config"] = max_diff(ref, run(engine_from_config()))
        result["zero2_bf16"] = max_diff(ref, run(engine_for("ds_z2.json", bf16=True)))
        engine = engine_for("ds_z3.json")
        first = run(engine, steps=2)
        ckpt = os.path.join(workdir, "ds_ckpt")
        engine.save_checkpoint(ckpt, tag="step2")
        probe = batches(1, seed=7)[0]["input_ids"]
        with torch.no_grad():
            sharded_logits = engine(input_ids=probe, use_cache=False).logits
        result["zero3"] = max_diff(ref, first + run(engine, steps=1, start=2))
        resumed = engine_for("ds_z3.json")
        resumed.load_checkpoint(ckpt, tag="step2")
        result["zero3_resume"] = max_diff(ref[2:], run(resumed, steps=1, start=2))
        if dist.get_rank() == 0:  # both ranks' partitions, gathered in this one process (tunesmith export)
            exported = tiny_model().eval()
            load_zero_model(ckpt, exported)
            with torch.no_grad():
                result["export_logits"] = (
                    (exported(input_ids=probe).logits - sharded_logits).abs().max().item()
                )
    write_result(os.path.join(workdir, f"deepspeed_{variant}.json"), result)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "plain")
    # Known issue: with DeepSpeed on CPU a rank sometimes aborts during interpreter shutdown ("terminate called
    # without an active exception", about 1 run in 6) after all work is done; leave without running destructors.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
