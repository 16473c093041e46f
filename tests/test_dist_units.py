"""Single-process checks of the dist building blocks: sizes vs world, module patterns, DeepSpeed "auto" filling,
the dist_config plugins, and clear errors for unsupported choices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import tiny_model

from tunesmith.config.plugins import DIST
from tunesmith.dist import plugins  # noqa: F401  (registers fsdp2 and deepspeed)
from tunesmith.dist.deepspeed import (
    _check_one_dtype,
    fill_auto,
    load_ds_config,
    offloads_optimizer,
    zero_stage,
)
from tunesmith.dist.expert_parallel import check_fsdp_modules
from tunesmith.dist.fsdp2 import load_placement_fn, mixed_precision_policy
from tunesmith.dist.mesh import parallel_sizes
from tunesmith.dist.patterns import match_modules, pattern_regex
from tunesmith.dist.plugins import DeepSpeedParams, Fsdp2Params
from tunesmith.dist.setup import init_distributed
from tunesmith.dist.tensor_parallel import check_heads, tensor_parallel_plan
from tunesmith.utils.errors import ConfigError

FILL = dict(
    micro_batch_size=2,
    gradient_accumulation_steps=4,
    data_parallel_size=8,
    learning_rate=3e-4,
    max_grad_norm=1.0,
    bf16=True,
    fp16=False,
    hidden_size=64,
)


def test_sizes_tile_the_world():
    s = parallel_sizes(8, tp_size=2, cp_size=2, sharded=True)
    assert (s.dp_replicate, s.dp_shard, s.cp, s.tp) == (1, 2, 2, 2)
    hsdp = parallel_sizes(8, fsdp_size=2, sharded=True)
    assert (hsdp.dp_replicate, hsdp.dp_shard) == (4, 2)
    assert parallel_sizes(4).dp_replicate == 4  # DDP: every rank a replica


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tp_size": 3}, "does not divide the world size 4"),
        ({"tp_size": 2, "cp_size": 4}, "tp_size \\(2\\) x cp_size \\(4\\)"),
        ({"fsdp_size": 3, "sharded": True}, "fsdp_size: 3 does not divide"),
        ({"fsdp_size": 2}, "needs the fsdp2 engine"),
        ({"ep_size": 3}, "ep_size: 3"),
    ],
)
def test_sizes_that_do_not_fit(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        parallel_sizes(4, **kwargs)


def test_patterns():
    assert pattern_regex("model.layers.{}").match("model.layers.12")
    assert not pattern_regex("model.layers.{}").match("model.layers.1.mlp")
    assert pattern_regex("model.layers.{*}.mlp.experts").match("model.layers.3.mlp.experts")
    assert pattern_regex("*.q_proj").match("model.layers.0.self_attn.q_proj")
    model = tiny_model("llama")
    names = [n for n, _ in match_modules(model, ["model.layers.{}", "lm_head"], "fsdp_modules")]
    assert names == ["model.layers.0", "model.layers.1", "lm_head"]
    with pytest.raises(ConfigError, match="fsdp_modules: pattern 'model.blocks.{}' matches no module"):
        match_modules(model, ["model.blocks.{}"], "fsdp_modules")


def test_tensor_parallel_plan_and_head_check():
    model = tiny_model("qwen2")
    plan = tensor_parallel_plan(model)
    assert type(plan["model.layers.0.self_attn.q_proj"]).__name__ == "ColwiseParallel"
    assert type(plan["model.layers.1.mlp.down_proj"]).__name__ == "RowwiseParallel"
    assert len(plan) == 2 * 7
    with pytest.raises(
        ConfigError, match="tp_size: 4 does not divide the model's num_key_value_heads \\(2\\)"
    ):
        check_heads(model.config, 4)
    with pytest.raises(ConfigError, match="tp_colwise: pattern"):
        tensor_parallel_plan(tiny_model("qwen3_moe"))  # MoE layers have no gate_proj/up_proj: say so


def test_fill_auto_from_our_config(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(
        json.dumps(
            {
                "train_micro_batch_size_per_gpu": "auto",
                "train_batch_size": "auto",
                "gradient_clipping": "auto",
                "optimizer": {
                    "type": "AdamW",
                    "params": {"lr": "auto", "betas": "auto", "weight_decay": "auto"},
                },
                "zero_optimization": {
                    "stage": 3,
                    "reduce_bucket_size": "auto",
                    "offload_optimizer": {"device": "cpu"},
                },
            }
        )
    )
    ds = fill_auto(load_ds_config(path), **FILL)
    assert ds["train_micro_batch_size_per_gpu"] == 2 and ds["gradient_accumulation_steps"] == 4
    assert ds["train_batch_size"] == 64 and ds["gradient_clipping"] == 1.0
    assert ds["optimizer"]["params"] == {"lr": 3e-4, "betas": [0.9, 0.999], "weight_decay": 0.0}
    assert ds["bf16"] == {"enabled": True}  # our bf16 reaches DeepSpeed even when the JSON has no bf16 block
    assert ds["zero_optimization"]["reduce_bucket_size"] == 64 * 64
    assert zero_stage(ds) == 3 and offloads_optimizer(ds)


def test_fill_auto_rejects_disagreement_and_leftovers(tmp_path):
    with pytest.raises(
        ConfigError, match="train_micro_batch_size_per_gpu is 4 but the tunesmith config implies 2"
    ):
        fill_auto({"train_micro_batch_size_per_gpu": 4}, **FILL)
    with pytest.raises(ConfigError, match='zero_optimization.sub_group_size is "auto"'):
        fill_auto({"zero_optimization": {"sub_group_size": "auto"}}, **FILL)
    bad = tmp_path / "bad.json"
    bad.write_text('{"zero_optimization": {"stage": 2,}}')
    with pytest.raises(ConfigError, match="bad.json line 1: invalid JSON"):
        load_ds_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_ds_config(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "name", ["ds_z1.json", "ds_z2.json", "ds_z2_offload.json", "ds_z3.json", "ds_z3_offload.json"]
)
def test_shipped_examples_fill_completely(name):
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples" / "deepspeed" / name
    ds = fill_auto(load_ds_config(path), **FILL)
    assert "auto" not in json.dumps(ds)
    assert zero_stage(ds) == int(name[4])


def test_dist_plugins_parse():
    spec = DIST.parse(
        {"name": "fsdp2", "offload_params": True, "reshard_after_forward": False}, "dist_config"
    )
    assert spec.params == Fsdp2Params(offload_params=True, reshard_after_forward=False)
    with pytest.raises(
        ConfigError, match="unknown parameter 'offload' \\(did you mean 'offload_params'\\?\\)"
    ):
        DIST.parse({"name": "fsdp2", "offload": True}, "dist_config")
    with pytest.raises(ConfigError, match="mixed_precision: 'int8' is not one of bf16, fp16, fp32"):
        DIST.parse({"name": "fsdp2", "mixed_precision": "int8"}, "dist_config")
    ds_json = str(Path(__file__).parents[1] / "examples" / "deepspeed" / "ds_z2.json")
    assert DIST.parse({"name": "deepspeed", "config_file": ds_json}, "dist_config").params == DeepSpeedParams(
        ds_json
    )
    with pytest.raises(ConfigError, match="DeepSpeed config file z.json does not exist"):
        DIST.parse({"name": "deepspeed", "config_file": "z.json"}, "dist_config")
    with pytest.raises(ConfigError, match="exactly one of config_file"):
        DIST.parse({"name": "deepspeed"}, "dist_config")


def test_fsdp_options():
    import torch

    policy = mixed_precision_policy("bf16", "fp32")
    assert policy.param_dtype == torch.bfloat16 and policy.reduce_dtype == torch.float32
    with pytest.raises(ConfigError, match="param_dtype: unknown dtype 'int4'"):
        mixed_precision_policy("int4")
    assert load_placement_fn("json:dumps") is json.dumps
    with pytest.raises(ConfigError, match="shard_placement_fn: expected 'package.module:function'"):
        load_placement_fn("json.dumps")


def test_backend_errors(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ConfigError, match="ddp_backend: nccl needs CUDA GPUs; on CPU use ddp_backend: gloo"):
        init_distributed("nccl")
    with pytest.raises(ConfigError, match="ddp_backend: unknown backend 'tcp'"):
        init_distributed("tcp")


def test_hf_fsdp_arguments_map_to_fsdp2():
    from tunesmith.config.hf_fsdp import hf_fsdp_spec

    assert hf_fsdp_spec("full_shard offload auto_wrap", None) == {"name": "fsdp2", "offload_params": True}
    assert hf_fsdp_spec(["shard_grad_op"], {})["reshard_after_forward"] is False
    assert (
        hf_fsdp_spec(True, {"fsdp_reshard_after_forward": "SHARD_GRAD_OP"})["reshard_after_forward"] is False
    )
    assert hf_fsdp_spec(True, {"version": 2, "offload_params": True})["offload_params"] is True
    assert DIST.parse(hf_fsdp_spec("full_shard offload", None), "fsdp").params.offload_params
    with pytest.raises(ConfigError, match="fsdp: unknown option 'ful_shard'"):
        hf_fsdp_spec("ful_shard", None)
    with pytest.raises(ConfigError, match="transformer_layer_cls_to_wrap: use fsdp_modules patterns"):
        hf_fsdp_spec(True, {"transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]})


def test_split_sequence_shifts_labels_and_refuses_packed_rows():
    import torch

    from tunesmith.dist.ulysses import split_sequence
    from tunesmith.utils.errors import DataError

    ids = torch.arange(8).reshape(1, 8)
    part = split_sequence({"input_ids": ids, "labels": ids.clone()}, rank=1, cp=2)
    assert part["input_ids"].tolist() == [[4, 5, 6, 7]]
    assert part["position_ids"].tolist() == [[4, 5, 6, 7]]
    assert part["shift_labels"].tolist() == [[5, 6, 7, -100]]  # next tokens; the last one has none
    packed = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    with pytest.raises(DataError, match="does not support packed rows"):
        split_sequence({"input_ids": ids, "labels": ids, "position_ids": packed}, rank=0, cp=2)
    with pytest.raises(DataError, match="sequence length 8 is not a multiple of cp_size 3"):
        split_sequence({"input_ids": ids, "labels": ids}, rank=0, cp=3)


def test_ep_fsdp_modules_must_name_the_experts() -> None:
    model = tiny_model("qwen3_moe")
    experts = ["model.layers.{*}.mlp.experts"]
    check_fsdp_modules(model, experts, experts)
    with pytest.raises(ConfigError, match="ep_fsdp_modules: .* must name the same experts modules"):
        check_fsdp_modules(model, ["model.layers.{*}.mlp"], experts)


def test_deepspeed_scheduler_block_is_refused() -> None:
    from tunesmith.config import load_config

    block = '{"zero_optimization": {"stage": 2}, "scheduler": {"type": "WarmupLR", "params": {}}}'
    cfg = load_config(None, ["model_name_or_path=builtin:tiny", "dataset=demo", f"deepspeed={block}"])
    spec = cfg.train.dist_config
    with pytest.raises(ConfigError, match="scheduler: tunesmith runs the learning-rate schedule itself"):
        DIST.get("deepspeed").factory(tiny_model("llama"), cfg, 2, spec.params)


def test_deepspeed_refuses_what_its_loop_cannot_honour() -> None:
    from tunesmith.config import load_config
    from tunesmith.dist.deepspeed import _cpu_adam

    block = '{"zero_optimization": {"stage": 2}, "managed_gradient_accumulation": true}'
    cfg = load_config(None, ["model_name_or_path=builtin:tiny", "dataset=demo", f"deepspeed={block}"])
    with pytest.raises(ConfigError, match="managed_gradient_accumulation must be false"):
        DIST.get("deepspeed").factory(tiny_model("llama"), cfg, 2, cfg.train.dist_config.params)
    sgd = torch.optim.SGD(tiny_model("llama").parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="optim: SGD cannot run with DeepSpeed offload_optimizer"):
        _cpu_adam(sgd)


def test_deepspeed_fp32_refuses_trainable_weights_of_two_dtypes() -> None:
    """A LoRA run under torch_dtype bfloat16 trains float32 adapters beside a bfloat16 modules_to_save copy:
    DeepSpeed without bf16 would flatten both to float32 and the copy's forward would fail on bfloat16 inputs."""
    model = tiny_model("llama").to(torch.bfloat16)
    for p in model.parameters():
        p.requires_grad_(False)
    model.lm_head.weight.requires_grad_(True)
    model.model.layers[0].mlp.up_proj.float().weight.requires_grad_(True)
    with pytest.raises(
        ConfigError, match="deepspeed: runs in float32.*float32 and bfloat16 .*set bf16: true"
    ):
        _check_one_dtype(model, {"zero_optimization": {"stage": 2}})
    _check_one_dtype(model, {"bf16": {"enabled": True}})  # mixed precision: DeepSpeed casts them alike
    _check_one_dtype(model, {"bfloat16": {"enabled": True}})  # DeepSpeed's other spelling
    model.lm_head.float()
    _check_one_dtype(model, {})  # one dtype: nothing to refuse
