"""One training written in each peer's own dialect (LLaMA-Factory v0 and v1, ms-swift 4, TRL, transformers,
MindSpeed) resolves to the same canonical run (`tunesmith plan --json`); the only differences the dialects need
are their home systems' defaults, which plan lists with their reasons."""

from __future__ import annotations

import json
import shlex

import pytest

from tunesmith.cli import main

COMMON = """\
do_train: true
output_dir: outputs/dialects
per_device_train_batch_size: 4
gradient_accumulation_steps: 2
learning_rate: 2.0e-4
num_train_epochs: 1
warmup_ratio: 0.1
lr_scheduler_type: cosine
max_grad_norm: 0.5
logging_steps: 5
save_steps: 50
save_total_limit: 2
report_to: none
"""

HF_YAML = (
    COMMON
    + """\
model_name_or_path: builtin:tiny
dataset: demo
dataset_dir: builtin:demo
cutoff_len: 512
activation_checkpointing: true
finetuning_type: lora
lora_rank: 8
lora_alpha: 16
target_modules: all-linear
"""
)

LF_V0_YAML = (
    COMMON
    + """\
### model
model_name_or_path: builtin:tiny
flash_attn: auto
### method
stage: sft
finetuning_type: lora
lora_rank: 8
lora_target: all
use_reentrant_gc: false  # its home default is true; the HF run checkpoints non-re-entrantly
### dataset
dataset: demo
dataset_dir: builtin:demo
cutoff_len: 512
plot_loss: true
"""
)

LF_V1_YAML = """\
do_train: true
model: builtin:tiny
model_class: llm
peft_config:
  name: lora
  r: 8
  lora_alpha: 16
  target_modules: all-linear
kernel_config:
  name: auto
train_dataset: DATASETS
output_dir: outputs/dialects
micro_batch_size: 4
global_batch_size: 8
cutoff_len: 512
learning_rate: 2.0e-4
num_train_epochs: 1
max_grad_norm: 0.5
bf16: false
warmup_ratio: 0.1
lr_scheduler_type: cosine
logging_steps: 5
save_steps: 50
save_total_limit: 2
report_to: none
"""

V1_DATASETS = """\
demo:
  path: DEMO
  source: local
  converter: alpaca
"""

TRL_YAML = (
    COMMON
    + """\
model_name_or_path: builtin:tiny
dataset_name: demo
dataset_dir: builtin:demo
max_length: 512
use_peft: true
lora_r: 8
lora_alpha: 16
lora_target_modules: all-linear
assistant_only_loss: true
gradient_checkpointing: true
"""
)

MINDSPEED_YAML = """\
model:
  model_name_or_path: builtin:tiny
data:
  dataset: demo
  dataset_dir: builtin:demo
  cutoff_len: 512
training:
  do_train: true
  output_dir: outputs/dialects
  per_device_train_batch_size: 4
  gradient_accumulation_steps: 2
  lr: 2.0e-4
  min_lr: null
  weight_decay: 0.0
  adam_beta2: 0.999
  num_train_epochs: 1
  warmup_ratio: 0.1
  lr_decay_style: cosine
  max_grad_norm: 0.5
  logging_steps: 5
  save_steps: 50
  save_total_limit: 2
  report_to: none
  recompute: true
  finetuning_type: lora
  lora_rank: 8
  lora_alpha: 16
  target_modules: all-linear
"""

SWIFT_LINE = (
    "--model builtin:tiny --tuner_type lora --dataset demo --dataset_dir builtin:demo --max_length 512 "
    "--per_device_train_batch_size 4 --per_device_eval_batch_size 8 --gradient_accumulation_steps 2 "
    "--learning_rate 2e-4 --num_train_epochs 1 --warmup_ratio 0.1 --weight_decay 0 --save_steps 50 "
    "--save_total_limit 2 --logging_steps 5 --logging_first_step false --output_dir outputs/dialects "
    "--max_grad_norm 0.5 --lora_rank 8 --lora_alpha 16 --lora_dropout 0 --target_modules all-linear "
    "--report_to none --do_train true"
)


def plan_json(capsys, argv: list[str]) -> dict:
    assert main(["plan", *argv, "--json", "--no-data"]) == 0
    return json.loads(capsys.readouterr().out)


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def dialect_argv(tmp_path, dialect: str) -> list[str]:
    if dialect == "swift":
        return ["stage=sft", *shlex.split(SWIFT_LINE)]
    if dialect == "lf_v1":
        from tunesmith.utils.builtin import resolve_builtin

        demo = resolve_builtin("builtin:demo", field="dataset_dir") / "demo.json"
        datasets = write(tmp_path, "v1_datasets.yaml", V1_DATASETS.replace("DEMO", str(demo)))
        return [write(tmp_path, "lf_v1.yaml", LF_V1_YAML.replace("DATASETS", datasets))]
    text = {"lf": LF_V0_YAML, "trl": TRL_YAML, "mindspeed": MINDSPEED_YAML}[dialect]
    return [write(tmp_path, f"{dialect}.yaml", text)]


@pytest.mark.parametrize("dialect", ["lf", "lf_v1", "swift", "trl", "mindspeed"])
def test_dialects_resolve_to_same_run(tmp_path, capsys, dialect):
    expected = plan_json(capsys, [write(tmp_path, "hf.yaml", HF_YAML)])
    got = plan_json(capsys, dialect_argv(tmp_path, dialect))
    assert expected["dialect"]["name"] == "hf" and got["dialect"]["name"] == dialect
    for plan in (expected, got):
        plan["config"]["train"].pop("dialect")
        if dialect == "lf_v1":  # v1 names its data in a dataset file: an inline spec of the same file
            plan["config"]["data"].pop("dataset")
            plan["config"]["data"].pop("dataset_dir")
    assert got["config"] == expected["config"]
    assert got["derived"] == expected["derived"]
    assert expected["derived"]["gradient_accumulation_steps"] == 2
    assert expected["config"]["train"]["global_batch_size"] == 8
    assert expected["config"]["model"]["lora_alpha"] == 16


def test_plan_lists_each_home_default_with_its_system(tmp_path, capsys):
    plan = plan_json(capsys, dialect_argv(tmp_path, "lf"))
    defaults = plan["dialect"]["defaults"]
    assert defaults["lora_alpha"]["value"] == 16 and "2 x lora_rank" in defaults["lora_alpha"]["why"]
    assert defaults["gradient_checkpointing"] == {
        "value": True,
        "system": "LLaMA-Factory v0",
        "why": defaults["gradient_checkpointing"]["why"],
    }
    taken = {t["key"]: t["how"] for t in plan["dialect"]["taken"]}
    assert taken["flash_attn"].startswith("converted") and taken["plot_loss"].startswith("always True")
    assert "lora_target" in plan["dialect"]["reason"]


def test_plan_text_names_the_dialect(tmp_path, capsys):
    assert main(["plan", *dialect_argv(tmp_path, "swift"), "--no-data"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dialect: swift (detected from ms-swift-only keys: tuner_type)")
    assert "default learning_rate" not in out  # set on the line: no default taken
    assert "default lr_scheduler_type = 'cosine': ms-swift" in out
    assert "default gradient_checkpointing = True: ms-swift" in out


@pytest.mark.parametrize("dialect", ["lf", "lf_v1", "swift", "trl", "mindspeed"])
def test_saved_config_reads_back_as_the_same_run(tmp_path, monkeypatch, dialect):
    from tunesmith.config import load_config
    from tunesmith.config.serialize import config_to_dict, save_config

    monkeypatch.chdir(tmp_path)
    argv = dialect_argv(tmp_path, dialect)
    path, rest = (argv[0], argv[1:]) if argv[0].endswith(".yaml") else (None, argv)
    cfg = load_config(path, [*rest, "--dataloader_num_workers", "2"])
    back = load_config(save_config(cfg, tmp_path / "tunesmith_config.yaml"))
    assert config_to_dict(back) == config_to_dict(cfg)
    assert back.train.dialect == dialect
