"""Config loading: files, overrides, aliases, coercion, errors that name the key."""

from __future__ import annotations

import json

import pytest

from tunesmith.config import load_config
from tunesmith.config.sources import parse_overrides
from tunesmith.utils.errors import ConfigError

BASE = ["model_name_or_path=builtin:tiny"]


def load(*overrides: str, path=None):
    return load_config(path, [*BASE, *overrides])


def test_yaml_file_then_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model_name_or_path: builtin:tiny\nlearning_rate: 1.0e-4\nnum_train_epochs: 2\n")
    cfg = load_config(path, ["--learning_rate", "3e-4"])
    assert cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.train.num_train_epochs == 2.0


def test_json_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": "builtin:tiny", "micro_batch_size": 3}))
    cfg = load_config(path, [])
    assert cfg.model.model_name_or_path == "builtin:tiny"
    assert cfg.train.per_device_train_batch_size == 3


def test_sectioned_yaml_is_flattened(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "model:\n  model_name_or_path: builtin:tiny\ntraining:\n  lr: 2.0e-5\nparallel:\n  tp_size: 1\n"
    )
    cfg = load_config(path, [])
    assert cfg.train.learning_rate == pytest.approx(2e-5)


@pytest.mark.parametrize(
    "tokens",
    [
        ["learning_rate=2e-4", "per_device_train_batch_size=4"],
        ["--learning_rate", "2e-4", "--per_device_train_batch_size", "4"],
        ["--learning-rate=2e-4", "--per-device-train-batch-size", "4"],
    ],
)
def test_override_styles(tokens):
    cfg = load(*tokens)
    assert cfg.train.learning_rate == pytest.approx(2e-4)
    assert cfg.train.per_device_train_batch_size == 4


def test_bare_flag_means_true():
    assert load("--gradient_checkpointing").train.gradient_checkpointing is True
    assert load("--packing", "--bf16").data.packing is True


def test_aliases_resolve_to_canonical():
    cfg = load(
        "lr=1e-3",
        "micro_batch_size=2",
        "max_length=512",
        "recompute=true",
        "optimizer=adamw",
        "train_type=lora",
    )
    assert cfg.train.learning_rate == pytest.approx(1e-3)
    assert cfg.train.per_device_train_batch_size == 2
    assert cfg.data.cutoff_len == 512
    assert cfg.train.gradient_checkpointing is True
    assert cfg.train.optim == "adamw_torch"
    assert cfg.model.finetuning_type == "lora"


def test_conflicting_aliases_name_both_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: builtin:tiny\nlr: 1.0e-4\nlearning_rate: 2.0e-4\n")
    with pytest.raises(ConfigError, match=r"'lr'.*'learning_rate'|'learning_rate'.*'lr'") as err:
        load_config(path, [])
    assert "c.yaml line 2" in str(err.value) and "c.yaml line 3" in str(err.value)


def test_same_value_under_two_aliases_is_fine():
    cfg = load("lr=1e-4", "learning_rate=0.0001")
    assert cfg.train.learning_rate == pytest.approx(1e-4)


def test_unknown_key_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: builtin:tiny\nlerning_rate: 1.0e-4\n")
    with pytest.raises(
        ConfigError, match=r"unknown key 'lerning_rate' \(c.yaml line 2\); did you mean 'learning_rate'"
    ):
        load_config(path, [])


def test_wrong_type_names_key_and_type():
    with pytest.raises(
        ConfigError, match=r"'per_device_train_batch_size' \(command line\): expected int, got 'four'"
    ):
        load("per_device_train_batch_size=four")


def test_out_of_range_names_key():
    with pytest.raises(ConfigError, match=r"'micro_batch_size'.*out of range"):
        load("micro_batch_size=0")


def test_bad_choice_lists_allowed():
    with pytest.raises(
        ConfigError, match=r"'lr_scheduler_type'.*'sawtooth' is not allowed; choose one of: .*cosine"
    ):
        load("lr_scheduler_type=sawtooth")


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: builtin:tiny\nlr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"c.yaml line \d+: invalid YAML"):
        load_config(path, [])


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("nope.yaml", [])


def test_plugin_config_as_json_string_and_dotted_keys():
    cfg = load('--dist_config={"name": "fsdp2", "reshard_after_forward": false}')
    assert cfg.train.dist_config.name == "fsdp2"
    assert cfg.train.dist_config.params.reshard_after_forward is False
    cfg = load("--dist_config.name", "fsdp2", "--dist_config.offload_params", "true")
    assert cfg.train.dist_config.params.offload_params is True


def test_list_and_union_coercion():
    cfg = load("target_modules=q_proj,v_proj", "save_steps=0.25", "logging_steps=10", "report_to=none")
    assert cfg.model.target_modules == ["q_proj", "v_proj"]
    assert cfg.train.save_steps == pytest.approx(0.25)
    assert cfg.train.logging_steps == 10 and isinstance(cfg.train.logging_steps, int)


def test_none_words_for_optional_fields():
    cfg = load("max_samples=null")
    assert cfg.data.max_samples is None


def test_parse_overrides_rejects_bare_words():
    with pytest.raises(ConfigError, match="cannot read 'oops'"):
        parse_overrides(["oops"])


def test_bool_or_str_field_reads_true_as_bool():
    assert load("include_num_input_tokens_seen=true").train.include_num_input_tokens_seen is True
    assert (
        load("include_num_input_tokens_seen=non_padding").train.include_num_input_tokens_seen == "non_padding"
    )
    assert load("fsdp=false").train.fsdp is False
