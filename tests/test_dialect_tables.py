"""The dialect tables: consistent with tunesmith's fields, names decided by the dialect, peer command lines."""

from __future__ import annotations

import json

import pytest

from tunesmith.cli import main
from tunesmith.config import load_config
from tunesmith.config.dialects import DIALECTS
from tunesmith.config.schema import alias_table
from tunesmith.utils.errors import ConfigError

BASE = ["--model", "builtin:tiny", "--dataset", "demo", "--dataset_dir", "builtin:demo", "report_to=none"]


def test_every_alias_target_is_a_tunesmith_name_and_no_entry_is_shadowed():
    known = alias_table()
    for dialect in DIALECTS.values():
        for name, entry in dialect.names.items():
            if entry.kind == "alias":
                assert entry.target in known, f"{dialect.name}: {name} -> {entry.target}"
            assert name not in known or name in dialect.overrides, (
                f"{dialect.name}: {name} is a tunesmith name"
            )
        for name in dialect.defaults:
            assert name in known, f"{dialect.name} default {name}"


def test_a_name_with_two_meanings_needs_the_dialect():
    # ms-swift's and TRL's `loss_type` take different value sets: without a dialect it is not guessed
    with pytest.raises(
        ConfigError, match=r"'loss_type'.*different things.*in TRL.*in ms-swift.*dialect: <trl|swift>"
    ):
        load_config(None, [*BASE, "--stage", "dpo", "--loss_type", "hinge"])
    cfg = load_config(None, [*BASE, "--stage", "dpo", "--loss_type", "hinge", "--dialect", "trl"])
    assert cfg.dialect.name == "trl" and "stated" in cfg.dialect.reason
    assert cfg.preference.pref_loss == "hinge"
    swift = load_config(None, [*BASE, "--tuner_type", "lora", "--stage", "dpo", "--loss_type", "hinge"])
    assert swift.dialect.name == "swift" and swift.preference.pref_loss == "hinge"


def test_refusal_names_key_system_reason_and_alternative():
    with pytest.raises(ConfigError) as err:
        load_config(None, [*BASE, "--tuner_type", "lora", "--num_generations", "8"])
    message = str(err.value)
    assert message.startswith("'num_generations' (command line): ms-swift's num_generations needs online")
    assert "stage dpo, kto or rm" in message
    # written at a value that asks for nothing, the same name is accepted
    assert load_config(None, [*BASE, "--tuner_type", "lora", "--use_vllm", "false"]).dialect.name == "swift"


def test_conversions():
    cfg = load_config(
        None,
        [
            *BASE,
            "--tuner_type",
            "lora",
            "--quant_method",
            "bnb",
            "--quant_bits",
            "4",
            "--split_dataset_ratio",
            "0.1",
            "--padding_free",
            "true",
        ],
    )
    assert cfg.model.quantization_bit == 4 and cfg.data.val_size == 0.1
    assert cfg.train.batching_strategy == "padding_free"
    with pytest.raises(ConfigError, match="'quant_method'.*GPTQ/AWQ"):
        load_config(None, [*BASE, "--tuner_type", "lora", "--quant_method", "awq"])
    v1 = load_config(
        None,
        [
            *BASE,
            "--peft_config",
            '{"name": "lora", "r": 4, "lora_alpha": 8}',
            "--init_config",
            '{"name": "init_on_meta"}',
        ],
    )
    assert (v1.model.finetuning_type, v1.model.lora_rank, v1.model.lora_alpha) == ("lora", 4, 8)
    assert v1.model.init_model_with_meta_device and v1.dialect.name == "lf_v1"


def test_swift_home_defaults(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = load_config(None, [*BASE, "--tuner_type", "full"])
    train = cfg.train
    assert (train.per_device_train_batch_size, train.gradient_accumulation_steps) == (
        1,
        8,
    )  # ceil(16 / (1 x 2))
    assert (train.learning_rate, train.lr_scheduler_type, train.weight_decay) == (1e-5, "cosine", 0.1)
    assert train.gradient_checkpointing and cfg.dialect.defaults["learning_rate"]["system"] == "ms-swift"
    explicit = load_config(None, [*BASE, "--tuner_type", "lora", "--per_device_train_batch_size", "4"])
    assert explicit.train.gradient_accumulation_steps == 2 and explicit.train.learning_rate == 1e-4
    assert train.eval_strategy == "no"  # no eval set: ms-swift does not evaluate
    split = load_config(None, [*BASE, "--split_dataset_ratio", "0.1", "--save_steps", "7"]).train
    assert (split.eval_strategy, split.eval_steps) == ("steps", 7)  # at save_strategy, every save_steps
    assert (
        not train.bf16
        and load_config(None, [*BASE, "--tuner_type", "lora", "--torch_dtype", "bfloat16"]).train.bf16
    )


def test_command_line_as_the_peers_write_it():
    cfg = load_config(
        None,
        [
            "--model",
            "builtin:tiny",
            "--dataset",
            "a.json#5",
            "b.json",
            "--dataset_dir",
            "builtin:demo",
            "--target_modules",
            "q_proj",
            "v_proj",
            "--model.trust_remote_code",
            "false",
            "--parallel.fsdp_size",
            "1",
            "report_to=none",
        ],
        validate=False,
    )
    assert cfg.data.dataset == ["a.json#5", "b.json"]
    assert cfg.model.target_modules == ["q_proj", "v_proj"]
    assert cfg.parallel.fsdp_size == 1


def test_deepspeed_presets_by_name():
    cfg = load_config(None, [*BASE, "--deepspeed", "zero3_offload"])
    ds = cfg.train.dist_config.params.config
    assert (
        ds["zero_optimization"]["stage"] == 3 and ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    )


def test_help_and_suggestions(capsys):
    assert main(["sft", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: tunesmith sft")
    assert main(["plan", "--lerning_rate", "1e-4", *BASE]) == 2
    assert "did you mean 'learning_rate'?" in capsys.readouterr().err
    assert main(["plan", "--totally_unrelated", "1", *BASE]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_args_json_gives_every_peer_name_a_status(capsys):
    assert main(["args", "--json"]) == 0
    entries = {(e["name"], e["section"]): e for e in json.loads(capsys.readouterr().out)}
    assert entries[("learning_rate", "train")]["status"] == "canonical"
    plot = entries[("plot_loss", "dialect:lf")]
    assert plot["status"] == "fixed" and plot["systems"] == ["LLaMA-Factory v0"]
    assert entries[("use_vllm", "dialect:swift")]["status"] == "refused"
    assert entries[("peft_config", "dialect:lf_v1")]["status"] == "converted"
    assert entries[("activation_checkpointing", "dialect:hf")]["target"] == "gradient_checkpointing"


def test_bitsandbytes_options_reach_the_quantisation_config():
    import torch

    from tunesmith.model.loader import quantization_config

    swift = load_config(
        None,
        [
            *BASE,
            "--tuner_type",
            "lora",
            "--quant_method",
            "bnb",
            "--quant_bits",
            "4",
            "--bnb_4bit_quant_type",
            "fp4",
            "--bnb_4bit_use_double_quant",
            "false",
        ],
    )
    bnb = quantization_config(swift.model, torch.float32)
    assert (bnb.load_in_4bit, bnb.bnb_4bit_quant_type, bnb.bnb_4bit_use_double_quant) == (True, "fp4", False)
    lf = load_config(None, [*BASE, "--finetuning_type", "lora", "--quantization_bit", "4"])
    default = quantization_config(lf.model, torch.float32)
    assert (default.bnb_4bit_quant_type, default.bnb_4bit_use_double_quant) == ("nf4", True)


def test_peer_command_names(capsys):
    from tunesmith.cli import COMMANDS

    assert COMMANDS["deploy"] is COMMANDS["serve"] and COMMANDS["web-ui"] is COMMANDS["board"]
    assert main(["infer", "--help"]) == 0 and "usage: tunesmith infer" in capsys.readouterr().out


def test_method_conversions():
    swift = load_config(
        None,
        [
            *BASE,
            "--tuner_type",
            "lora",
            "--init_weights",
            "pissa_niter_4",
            "--loss_scale",
            "last_round",
            "--lora_dtype",
            "AUTO",
        ],
    )
    assert swift.methods.init_lora_weights == "pissa_niter_4" and swift.data.mask_history
    assert swift.methods.lora_dtype is None
    weighted = load_config(
        None, [*BASE, "--tuner_type", "lora", "--loss_scale", "last_round+hermes+ignore_empty_think"]
    )
    assert weighted.data.mask_history and weighted.data.token_loss_weights == "hermes+ignore_empty_think"
    react = load_config(None, [*BASE, "--tuner_type", "lora", "--loss_scale", "react"])
    assert react.data.token_loss_weights == "react" and not react.data.mask_history
    pro = load_config(
        None,
        [*BASE, "--train_type", "llamapro", "--llamapro_num_new_blocks", "2", "--split_dataset_ratio", "0"],
    )
    assert pro.model.finetuning_type == "full" and pro.methods.llamapro_num_new_blocks == 2
    assert not pro.methods.use_llama_pro  # LLaMA-Factory's flag (an expanded model's spread layers) stays off
    default = load_config(None, [*BASE, "--train_type", "llamapro", "--split_dataset_ratio", "0"])
    assert default.methods.llamapro_num_new_blocks == 4  # ms-swift's default
    trl = load_config(None, [*BASE, "--use_peft", "--truncation_mode", "keep_end"])
    assert trl.data.truncation_strategy == "left" and trl.model.finetuning_type == "lora"
    clm = load_config(
        None,
        [*BASE, "--train_file", "x.txt", "--config_overrides", "hidden_size=32,rope_theta=1e4"],
        validate=False,
    )
    assert clm.methods.model_kwargs == {"hidden_size": 32, "rope_theta": 1e4} and clm.data.dataset == "x.txt"


def test_tunesmith_names_alone_keep_tunesmith_defaults():
    cfg = load_config(
        None,
        [
            *BASE,
            "--attn_impl",
            "sdpa",
            "--train_type",
            "lora",
            "--global_batch_size",
            "8",
            "--recompute",
            "true",
            "--micro_batch_size",
            "4",
        ],
    )
    assert cfg.dialect.name == "tunesmith" and cfg.dialect.defaults == {}
    assert cfg.train.learning_rate == 5e-5 and cfg.train.weight_decay == 0.0


def test_trl_label_smoothing_follows_trl():
    sigmoid = load_config(
        None, [*BASE, "--stage", "dpo", "--beta", "0.2", "--label_smoothing", "0.1", "--dialect", "trl"]
    )
    assert sigmoid.preference.dpo_label_smoothing == 0.0 and sigmoid.preference.pref_beta == 0.2
    robust = load_config(
        None,
        [*BASE, "--stage", "dpo", "--loss_type", "robust", "--label_smoothing", "0.1", "--dialect", "trl"],
    )
    assert robust.preference.dpo_label_smoothing == 0.1 and robust.preference.pref_loss == "robust"
    lf = load_config(None, [*BASE, "--stage", "dpo", "--label_smoothing", "0.1"])  # LF/tunesmith: cDPO
    assert lf.preference.dpo_label_smoothing == 0.1


def test_negated_flags_sections_and_who_says_it(tmp_path):
    cfg = load_config(None, [*BASE, "--no_remove_unused_columns", "--no_disable_tqdm"])
    assert cfg.train.remove_unused_columns is False and cfg.train.disable_tqdm is False
    with pytest.raises(ConfigError) as err:  # a TRL-style line: the refusal does not say ms-swift
        load_config(None, [*BASE, "--use_peft", "--reward_funcs", "accuracy"])
    assert "ms-swift" not in str(err.value) and "online generation" in str(err.value)
    path = tmp_path / "ms.yaml"
    path.write_text("model:\n  model_name_or_path: builtin:tiny\noptimization:\n  use_fused_rmsnorm: false\n")
    assert load_config(path, validate=False).model.use_fused_rmsnorm is False


def test_multimodal_rows_are_refused(tmp_path):
    from tunesmith.data import build_datasets
    from tunesmith.model import load_tokenizer

    rows = [
        {
            "messages": [{"role": "user", "content": "<image>hi"}, {"role": "assistant", "content": "a"}],
            "images": ["a.png"],
        }
    ]
    (tmp_path / "mm.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = load_config(
        None, ["--model", "builtin:tiny", "--dataset", str(tmp_path / "mm.jsonl"), "report_to=none"]
    )
    with pytest.raises(ConfigError, match="column 'images' holds multimodal inputs"):
        build_datasets(cfg, load_tokenizer(cfg))
