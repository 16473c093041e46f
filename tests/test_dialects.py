"""One training written in four dialects resolves to the same canonical config (`tunesmith plan --json`)."""

from __future__ import annotations

import json
import shlex

import pytest

from tunesmith.cli import main

HF_YAML = """\
model_name_or_path: builtin:tiny
dataset: demo
dataset_dir: builtin:demo
output_dir: outputs/dialects
per_device_train_batch_size: 4
gradient_accumulation_steps: 2
learning_rate: 2.0e-4
num_train_epochs: 1
warmup_ratio: 0.1
lr_scheduler_type: cosine
gradient_checkpointing: true
max_grad_norm: 0.5
logging_steps: 5
save_steps: 50
save_total_limit: 2
weight_decay: 0.0
adam_beta2: 0.999
optim: adamw_torch
cutoff_len: 512
finetuning_type: lora
lora_rank: 8
lora_alpha: 32
target_modules: all-linear
report_to: none
"""

LLAMAFACTORY_V1_YAML = """\
model: builtin:tiny
dataset: demo
dataset_dir: builtin:demo
output_dir: outputs/dialects
micro_batch_size: 4
global_batch_size: 8
cutoff_len: 512
learning_rate: 2.0e-4
num_train_epochs: 1
max_steps: null
max_grad_norm: 0.5
enable_activation_checkpointing: true
batching_strategy: normal
warmup_ratio: 0.1
lr_scheduler_type: cosine
logging_steps: 5
save_steps: 50
save_total_limit: 2
finetuning_type: lora
lora_rank: 8
lora_alpha: 32
target_modules: all-linear
report_to: none
"""

MINDSPEED_YAML = """\
model:
  model_name_or_path: builtin:tiny
data:
  dataset: demo
  dataset_dir: builtin:demo
  cutoff_len: 512
training:
  output_dir: outputs/dialects
  per_device_train_batch_size: 4
  gradient_accumulation_steps: 2
  lr: 2.0e-4
  weight_decay: 0.0
  adam_beta2: 0.999
  optimizer: adamw
  num_train_epochs: 1
  warmup_ratio: 0.1
  lr_scheduler_type: cosine
  logging_steps: 5
  save_steps: 50
  save_total_limit: 2
  max_grad_norm: 0.5
  train_type: lora
  lora_rank: 8
  lora_alpha: 32
  target_modules: all-linear
  report_to: none
parallel:
  recompute: true
"""

SWIFT_LINE = (
    "--model builtin:tiny --train_type lora --dataset demo --dataset_dir builtin:demo --max_length 512 "
    "--gradient_checkpointing true --per_device_train_batch_size 4 --gradient_accumulation_steps 2 "
    "--learning_rate 2e-4 --num_train_epochs 1 --warmup_ratio 0.1 --lr_scheduler_type cosine --save_steps 50 "
    "--save_total_limit 2 --logging_steps 5 --output_dir outputs/dialects --max_grad_norm 0.5 "
    "--lora_rank 8 --lora_alpha 32 --target_modules all-linear --report_to none"
)


def plan_json(capsys, argv: list[str]) -> dict:
    assert main(["plan", *argv, "--json", "--no-data"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("dialect", ["llamafactory", "mindspeed", "swift"])
def test_dialects_resolve_to_same_config(tmp_path, capsys, dialect):
    hf = tmp_path / "hf.yaml"
    hf.write_text(HF_YAML)
    expected = plan_json(capsys, [str(hf)])
    if dialect == "swift":
        got = plan_json(capsys, ["stage=sft", *shlex.split(SWIFT_LINE)])
    else:
        other = tmp_path / f"{dialect}.yaml"
        other.write_text(LLAMAFACTORY_V1_YAML if dialect == "llamafactory" else MINDSPEED_YAML)
        got = plan_json(capsys, [str(other)])
    assert got["config"] == expected["config"]
    assert got["derived"] == expected["derived"]
    assert expected["derived"]["gradient_accumulation_steps"] == 2
    assert expected["config"]["train"]["global_batch_size"] == 8
