"""Methods through the whole recipe (validated config, data, trainer, checkpoints, saving) on the built-in model:
LoRA+ with DFT and PiSSA conversion under ms-swift/LLaMA-Factory names; LISA with GaLore and a checkpoint;
the LLaMA-Pro expansion; each output loads in transformers / peft."""

from __future__ import annotations

import json

import pytest
from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM

from tunesmith.config import load_config
from tunesmith.model.adapter_variants import PISSA_CONVERTED_DIR
from tunesmith.recipes import run_recipe

CASES = {
    "loraplus_dft_pissa": [
        "finetuning_type=lora",
        "lorap_lr_ratio=8",
        "use_dft_loss=true",
        "pissa_init=true",
        "pissa_iter=4",
        "pissa_convert=true",
    ],
    "lisa_galore": [
        "finetuning_type=full",
        "lisa_activated_layers=1",
        "lisa_step_interval=1",
        "use_galore=true",
        "galore_rank=4",
        "save_steps=2",
    ],
    "llama_pro": ["finetuning_type=full", "llamapro_num_new_blocks=2"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_method_trains_through_the_recipe(tmp_path, monkeypatch, case):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    cfg = load_config(
        None,
        [
            "model_name_or_path=builtin:tiny",
            "dataset=demo",
            "dataset_dir=builtin:demo",
            "stage=sft",
            "cutoff_len=64",
            "per_device_train_batch_size=4",
            "max_steps=3",
            "learning_rate=3e-3",
            "logging_steps=1",
            "disable_tqdm=true",
            "report_to=none",
            f"output_dir={out}",
            *CASES[case],
        ],
    )
    run_recipe(cfg)
    losses = [json.loads(line)["loss"] for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert len([x for x in losses if x is not None]) == 3
    if case == "loraplus_dft_pissa":
        AutoPeftModelForCausalLM.from_pretrained(out)
        assert (out / PISSA_CONVERTED_DIR / "adapter_config.json").is_file()
    elif case == "lisa_galore":
        assert (out / "checkpoint-2").is_dir()
        AutoModelForCausalLM.from_pretrained(out)
    else:
        layers = AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers
        assert layers == cfg_layers(out) and layers > 2


def cfg_layers(out) -> int:
    return json.loads((out / "config.json").read_text())["num_hidden_layers"]
