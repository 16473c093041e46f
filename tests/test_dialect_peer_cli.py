"""TRL/transformers and ms-swift command lines as their users write them: accelerate launcher settings, TRL's
`--accelerate_config` / `--num_processes`, and the ms-swift names that map onto tunesmith's own."""

from __future__ import annotations

import pytest

from tunesmith.config import load_config
from tunesmith.utils import dist_env
from tunesmith.utils.errors import ConfigError

BASE = ["--model", "builtin:tiny", "--dataset", "demo", "--dataset_dir", "builtin:demo", "report_to=none"]
FSDP_OFFLOAD = """\
distributed_type: FSDP
fsdp_config:
  fsdp_offload_params: true
  fsdp_reshard_after_forward: false
  fsdp_activation_checkpointing: true
  fsdp_version: 2
mixed_precision: fp16
num_machines: 1
num_processes: 2
parallelism_config:
  parallelism_config_dp_shard_size: 1
  parallelism_config_cp_size: 2
"""


@pytest.fixture
def no_layout(monkeypatch):
    """No process layout in the environment (restored after the test, whatever the config asked for)."""
    for name in ("NPROC_PER_NODE", "WORLD_SIZE"):
        monkeypatch.setenv(name, "1")
        monkeypatch.delenv(name)


def test_trl_accelerate_config_name_is_the_shipped_deepspeed_config(no_layout):
    pytest.importorskip("trl")
    cfg = load_config(None, [*BASE, "--accelerate_config", "zero3"])
    spec = cfg.train.dist_config.to_dict()
    zero = spec["config"]["zero_optimization"]
    assert spec["name"] == "deepspeed" and zero["stage"] == 3
    assert "offload_param" not in zero and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert cfg.train.bf16 is True  # the file's mixed_precision: bf16
    assert dist_env.world_size() == 8  # its num_processes, started by tunesmith's launcher


def test_command_line_num_processes_beats_the_file_and_the_environment_beats_both(no_layout, monkeypatch):
    pytest.importorskip("trl")
    load_config(None, [*BASE, "--accelerate_config", "zero2", "--num_processes", "3"])
    assert dist_env.world_size() == 3
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    cfg = load_config(
        None, [*BASE, "--accelerate_config", "zero2", "--num_processes", "4", "--bf16", "false"]
    )
    assert dist_env.world_size() == 2 and cfg.train.bf16 is False  # the config's own precision wins


def test_accelerate_fsdp_file_by_path(tmp_path, no_layout):
    path = tmp_path / "fsdp.yaml"
    path.write_text(FSDP_OFFLOAD)
    cfg = load_config(None, [*BASE, "--accelerate_config", str(path)])
    spec = cfg.train.dist_config.to_dict()
    assert spec["name"] == "fsdp2" and spec["offload_params"] is True
    assert spec["reshard_after_forward"] is False
    assert cfg.train.gradient_checkpointing is True and cfg.train.fp16 is True
    assert cfg.parallel.cp_size == 2 and dist_env.world_size() == 2


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("distributed_type: TPU\n", "distributed_type TPU is not run here"),
        ("distributed_type: FSDP\nfsdp_config: {fsdp_bogus: 1}\n", "fsdp_bogus is not run here"),
        ("distributed_type: MULTI_GPU\nnum_machines: 2\n", "NNODES"),
        ("distributed_type: NO\nmixed_precision: fp8\n", "fp8"),
        ("distributed_type: NO\nunheard_of: 1\n", "keys not run here: unheard_of"),
    ],
)
def test_accelerate_config_it_cannot_run_is_refused_by_key(tmp_path, no_layout, text, match):
    path = tmp_path / "acc.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(None, [*BASE, "--accelerate_config", str(path)])


def test_missing_accelerate_config_names_the_key(no_layout):
    with pytest.raises(ConfigError, match=r"'accelerate_config' \(command line\).*no such file"):
        load_config(None, [*BASE, "--accelerate_config", "nowhere/acc.yaml"])


SWIFT = [*BASE, "--tuner_type", "lora"]


def test_swift_named_optimizers():
    cfg = load_config(None, [*SWIFT, "--optimizer", "muon", "--adam_beta2", "0.98"])
    muon = cfg.train.optim_config.to_dict()
    assert muon["name"] == "muon" and (muon["adamw_beta1"], muon["adamw_beta2"]) == (0.9, 0.98)
    assert load_config(None, [*SWIFT, "--optimizer", "galore"]).methods.use_galore is True
    with pytest.raises(ConfigError, match="'optimizer'.*'muonclip'.*not implemented"):
        load_config(None, [*SWIFT, "--optimizer", "muonclip"])
    with pytest.raises(ConfigError, match="lorap_lr_ratio"):
        load_config(None, [*SWIFT, "--optimizer", "lorap"])


def test_swift_qlora_compute_dtype_is_the_load_dtype():
    cfg = load_config(None, [*SWIFT, "--quant_bits", "4", "--bnb_4bit_compute_dtype", "bfloat16"])
    assert cfg.model.torch_dtype == "bfloat16"
    same = [*SWIFT, "--torch_dtype", "bfloat16", "--bnb_4bit_compute_dtype", "bfloat16"]
    assert load_config(None, same).model.torch_dtype == "bfloat16"
    with pytest.raises(ConfigError, match="'bnb_4bit_compute_dtype'.*torch_dtype float16"):
        load_config(None, [*SWIFT, "--torch_dtype", "float16", "--bnb_4bit_compute_dtype", "bfloat16"])


def test_swift_agent_template_and_experts_impl():
    cfg = load_config(None, [*SWIFT, "--agent_template", "hermes", "--experts_impl", "grouped_mm"])
    assert cfg.data.tool_format == "qwen" and cfg.model.moe_grouped_gemm is True
    with pytest.raises(ConfigError, match="'agent_template'.*'react_en'.*set tool_format"):
        load_config(None, [*SWIFT, "--agent_template", "react_en"])


def test_trl_offline_max_completion_length_and_reward_lora_task_type():
    trl = [*BASE, "--dialect", "trl"]
    assert load_config(None, [*trl, "--stage", "dpo", "--max_completion_length", "64"]).train.stage == "dpo"
    with pytest.raises(ConfigError, match="'max_completion_length'.*online generation"):
        load_config(None, [*trl, "--max_completion_length", "64", "--num_generations", "4"])
    cfg = load_config(None, [*trl, "--stage", "rm", "--use_peft", "--lora_task_type", "SEQ_CLS"])
    assert cfg.model.finetuning_type == "lora"
    with pytest.raises(ConfigError, match="'lora_task_type'.*stage rm here"):
        load_config(None, [*trl, "--use_peft", "--lora_task_type", "SEQ_CLS"])


def test_swift_lazy_tokenize_is_taken_as_tokenizing_ahead():
    cfg = load_config(None, [*SWIFT, "--lazy_tokenize", "true"])
    taken = {t["key"]: t["how"] for t in cfg.dialect.taken}
    assert cfg.data.lazy_tokenize is False and "tokenized ahead" in taken["lazy_tokenize"]


def test_swift_thinking_switches_keep_training_rows_as_swift_trains_them():
    """ms-swift's enable_thinking acts on inference prompts only; preserve_thinking false would strip thoughts."""
    off = load_config(None, [*SWIFT, "--enable_thinking", "false"]).data.enable_thinking
    assert off == load_config(None, SWIFT).data.enable_thinking  # training rows as without it
    load_config(None, [*SWIFT, "--preserve_thinking", "true"])
    with pytest.raises(
        ConfigError, match="'preserve_thinking'.*strips earlier answers' thoughts.*last_round"
    ):
        load_config(None, [*SWIFT, "--preserve_thinking", "false"])


def test_swift_loss_type_list_is_a_weighted_pref_loss_list():
    args = [
        "--rlhf_type",
        "dpo",
        "--loss_type",
        "sigmoid",
        "bco_pair",
        "sft",
        "--loss_weights",
        "0.8",
        "0.2",
        "1.0",
    ]
    pref = load_config(None, [*SWIFT, *args]).preference
    assert pref.pref_loss == ["sigmoid", "bco_pair", "sft"] and pref.loss_weights == [0.8, 0.2, 1.0]
