"""Cross-argument rules: each error names the offending keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.config.validate import check_parallel_sizes
from tunesmith.utils.errors import ConfigError

BASE = ["model_name_or_path=builtin:tiny"]


def load(*overrides: str):
    return load_config(None, [*BASE, *overrides])


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["fp16=true", "bf16=true"], r"'fp16'.*'bf16'.*cannot be used together"),
        (["streaming=true", "max_samples=10", "max_steps=5"], r"'streaming'.*'max_samples'"),
        (["streaming=true"], r"'streaming'.*needs max_steps"),
        (["streaming=true", "max_steps=5", "val_size=0.1"], r"'val_size'.*whole number"),
        (["eval_dataset=demo", "val_size=0.1"], r"'eval_dataset'.*'val_size'"),
        (["train_on_prompt=true", "mask_history=true"], r"'train_on_prompt'.*'mask_history'"),
        (["load_best_model_at_end=true"], r"'load_best_model_at_end'.*eval_strategy"),
        (
            ["load_best_model_at_end=true", "eval_strategy=steps", "save_strategy=epoch"],
            r"'load_best_model_at_end'.*save_strategy \('epoch'\) must match eval_strategy \('steps'\)",
        ),
        (
            ["load_best_model_at_end=true", "eval_strategy=steps", "eval_steps=30", "save_steps=50"],
            r"save_steps \(50\) must be a multiple of eval_steps \(30\)",
        ),
        (["fsdp_modules=[]"], r"'fsdp_modules'.*at least one"),
        (["interleave_probs=0.5,0.5"], r"'interleave_probs'.*only used with mix_strategy"),
        (["mix_strategy=interleave_under", "interleave_probs=0.5,0.6"], r"'interleave_probs'.*sum to 1"),
        (["split=90,10"], r"'split'.*three non-negative weights"),
        (["dist_config={}"], r"'dist_config'.*'name' is required"),
        (['dist_config={"name": "fsdp3"}'], r"unknown plugin 'fsdp3' \(did you mean 'fsdp2'\?\)"),
        (
            ['dist_config={"name": "fsdp2", "reshard": true}'],
            r"dist_config.*fsdp2: unknown parameter 'reshard'",
        ),
        (['dist_config={"name": "fsdp2", "offload_params": "maybe"}'], r"offload_params: expected bool"),
        (['dist_config={"name": "deepspeed"}'], r"give exactly one of config_file \(a JSON path\) or config"),
        (["deepspeed=ds.json", 'dist_config={"name": "fsdp2"}'], r"'deepspeed'.*'dist_config'.*different"),
        (["deepspeed=ds.json", "fsdp=full_shard"], r"'deepspeed'.*'fsdp'.*different"),
        (
            ["batching_strategy=zigzag"],
            r"batching_strategy: unknown plugin 'zigzag'; known: dynamic_batching",
        ),
        (["model_name_or_path="], r"model_name_or_path \(or model\) is required"),
    ],
)
def test_rule_names_key(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load(*overrides)


def test_global_batch_size_derives_accumulation():
    cfg = load("global_batch_size=32", "micro_batch_size=4")
    assert cfg.train.gradient_accumulation_steps == 8


def test_global_batch_size_must_divide(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(
        ConfigError, match=r"'global_batch_size'.*30 is not divisible by data-parallel size \(2\)"
    ):
        load("global_batch_size=30", "micro_batch_size=4")
    cfg = load("global_batch_size=32", "micro_batch_size=4")
    assert cfg.train.gradient_accumulation_steps == 4


def test_global_batch_size_against_explicit_accumulation():
    with pytest.raises(
        ConfigError, match=r"implies gradient_accumulation_steps=8.*'gradient_accumulation_steps'"
    ):
        load("global_batch_size=32", "micro_batch_size=4", "gradient_accumulation_steps=2")


def test_parallel_sizes_must_tile_world(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    cfg = load("tp_size=2", "cp_size=2")
    with pytest.raises(ConfigError, match=r"'tp_size'.*\(2\) x 'cp_size'.*does not divide the world size 6"):
        check_parallel_sizes(cfg, world_size=6)


def test_hf_deepspeed_and_fsdp_become_dist_config(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    ds_json = str(Path(__file__).parents[1] / "examples" / "deepspeed" / "ds_z2.json")  # it must exist
    assert load(f"deepspeed={ds_json}").train.dist_config.params.config_file == ds_json
    assert load("fsdp=full_shard auto_wrap").train.dist_config.name == "fsdp2"
    assert load("fsdp_size=2").train.dist_config.name == "fsdp2"


def test_neat_packing_implies_packing():
    assert load("neat_packing=true").data.packing is True


def test_eval_strategy_sets_do_eval_and_eval_steps():
    cfg = load("eval_strategy=steps", "logging_steps=7")
    assert cfg.train.do_eval is True and cfg.train.eval_steps == 7


def test_best_model_defaults_metric():
    cfg = load("load_best_model_at_end=true", "eval_strategy=epoch", "save_strategy=epoch")
    assert cfg.train.metric_for_best_model == "loss" and cfg.train.greater_is_better is False


def test_optim_config_conflicts_with_explicit_optim():
    with pytest.raises(ConfigError, match=r"'optim'.*'optim_config'"):
        load("optim=sgd", 'optim_config={"name": "muon"}')


def test_user_plugin_module(tmp_path, monkeypatch):
    (tmp_path / "my_plugins.py").write_text(
        "from dataclasses import dataclass\n"
        "from tunesmith.config.plugins import OPTIM\n"
        "@dataclass\nclass P:\n    momentum: float = 0.9\n"
        "@OPTIM.register('my_sgd', params=P)\n"
        "def build(params, lr, cfg):\n    import torch\n    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load("plugin_modules=my_plugins", 'optim_config={"name": "my_sgd", "momentum": 0.5}')
    assert cfg.train.optim_config.params.momentum == 0.5
    with pytest.raises(ConfigError, match=r"cannot import 'no_such_module'"):
        load("plugin_modules=no_such_module")


def test_compile_backend_turns_compile_on():
    assert load("torch_compile_backend=inductor").train.torch_compile is True
    assert load("torchdynamo=eager").train.torch_compile is True
    assert load().train.torch_compile is False


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("push_to_hub=true", r"'push_to_hub'.*not implemented.*hf upload"),
        ("hub_model_id=me/model", r"'hub_model_id'.*only used with push_to_hub"),
        ("ms_hub_token=secret", r"'ms_hub_token'.*ModelScope"),
        ('accelerator_config={"split_batches": true}', r"'accelerator_config'.*dist_config"),
        ("trackio_space_id=me/space", r"'trackio_space_id'.*Trackio"),
        ("quant_recipe=mxfp8", r"'quant_recipe'.*FP8 kernels"),
        ("quant_block_size=16", r"'quant_block_size'.*only used with quant_recipe"),
        ("label_names=target", r"'label_names'.*'labels'"),
        ("data_manager_type=mg", r"'data_manager_type'.*stage: pt"),
    ],
)
def test_arguments_that_cannot_take_effect_are_refused(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load(override)


def test_refused_arguments_at_their_default_are_fine():
    cfg = load("push_to_hub=false", "remove_unused_columns=true", "label_names=labels", "quant_block_size=32")
    assert cfg.train.push_to_hub is False


def test_model_id_checked_against_model_type(tiny_model_dir):
    with pytest.raises(ConfigError, match=r"'model_id'.*'qwen3' does not match the model's type 'qwen2'"):
        load_config(None, [f"model={tiny_model_dir}", "model_id=qwen3"])


def test_hf_fsdp_options_and_config_file_reach_fsdp2(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = load("fsdp=full_shard offload auto_wrap")
    assert cfg.train.dist_config.params.offload_params is True
    path = tmp_path / "fsdp.json"
    path.write_text('{"fsdp_reshard_after_forward": false}')
    cfg = load("fsdp=full_shard", f"fsdp_config={path}")
    assert cfg.train.dist_config.params.reshard_after_forward is False
    with pytest.raises(ConfigError, match=r"fsdp_config: file 'nope.json' does not exist"):
        load("fsdp=full_shard", "fsdp_config=nope.json")


def test_dataloader_workers_set_the_batch_builder():
    assert load().train.batching_workers == 16  # LLaMA-Factory v1's default when no HF loader option is given
    assert load("dataloader_num_workers=0").train.batching_workers == 0
    assert (
        load("dataloader_num_workers=4").train.batching_workers == 4
    )  # threads; prefetch factor is per thread
    with pytest.raises(
        ConfigError, match=r"'dataloader_prefetch_factor'.*only used with dataloader_num_workers"
    ):
        load("dataloader_num_workers=0", "dataloader_prefetch_factor=2")
    with pytest.raises(ConfigError, match=r"'dataloader_num_workers'.*'batching_workers'"):
        load("dataloader_num_workers=2", "batching_workers=4")
