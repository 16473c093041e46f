"""LLaMA-Factory v0/v1 and MindSpeed-LLM names taken as the peer takes them (fallbacks, plugin dicts, model ids),
and the corpus runner's stand-ins (a tokenizer with the template's tokens, a tiny model of a model_id's type)."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoConfig, AutoTokenizer

from compat.models import model_for_id
from compat.tokenizer import tokenizer_for
from tunesmith.config import load_config
from tunesmith.data.megatron_indexed import reads_megatron
from tunesmith.model.fused_ops import attn_for_model
from tunesmith.utils.errors import ConfigError

BASE = ["--model", "builtin:tiny", "--dataset", "demo", "--dataset_dir", "builtin:demo", "report_to=none"]


def load(dialect: str, *args: str, validate: bool = True):
    return load_config(None, [*BASE, "--dialect", dialect, *args], validate=validate)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback is for machines without FlashAttention")
def test_lf_v0_flash_attn_falls_back_to_sdpa_with_a_warning_v1_does_not(caplog):
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        cfg = load("lf", "--flash_attn", "fa2")
    assert cfg.model.attn_impl == "sdpa"
    assert "flash_attn: fa2: no CUDA GPU, so attention runs as sdpa" in caplog.text
    assert load("lf", "--flash_attn", "disabled").model.attn_impl == "eager"
    # LLaMA-Factory v1 hands the name to transformers, which raises: tunesmith refuses it before loading
    assert load("lf_v1", "--flash_attn", "flash_attention_2").model.attn_impl == "flash_attention_2"


def test_lf_v0_use_v1_kernels_is_inert_off_npus():
    assert load("lf", "--use_v1_kernels", "true").dialect.taken[-1]["how"].startswith("converted: no effect")


def test_lf_v0_predict_without_do_train_predicts_only():
    cfg = load("lf", "--do_predict", "true", "--predict_with_generate", "true")
    assert cfg.train.do_predict is True and cfg.train.do_train is False and cfg.is_set("do_train")
    assert load("lf", "--do_predict", "true", "--do_train", "true").train.do_train is True


def test_lf_v1_plugin_dicts():
    freeze = {"name": "freeze", "freeze_trainable_layers": 2, "freeze_extra_modules": ["embed_tokens"]}
    cfg = load("lf_v1", "--peft_config", json.dumps(freeze))
    assert cfg.get("finetuning_type") == "freeze" and cfg.get("freeze_extra_modules") == ["embed_tokens"]
    muon = {"name": "muon", "wd": 0.05, "momentum": 0.9, "adamw_betas": [0.8, 0.99], "adamw_eps": 1e-6}
    cfg = load("lf_v1", "--optim_config", json.dumps(muon))
    assert cfg.train.weight_decay == 0.05
    assert cfg.train.optim_config.name == "muon"
    assert (cfg.train.optim_config.params.adamw_beta1, cfg.train.optim_config.params.adamw_beta2) == (
        0.8,
        0.99,
    )
    assert cfg.train.optim_config.params.momentum == 0.9 and cfg.train.optim_config.params.adamw_eps == 1e-6
    assert load("lf_v1", "--optim_config", '{"name": "muon"}').train.weight_decay == 0.1  # v1's default wd
    assert cfg.train.optim_config.params.decay_all is True  # v1 decays every parameter
    v0 = load("lf", "--use_muon", "true", "--adam_beta2", "0.98").train.optim_config.params
    assert (v0.adamw_beta1, v0.adamw_beta2, v0.adamw_eps, v0.decay_all) == (0.9, 0.98, 1e-8, True)
    with pytest.raises(ConfigError, match="optim_config.*unknown key 'beta'"):
        load("lf_v1", "--optim_config", '{"name": "muon", "beta": 1}')
    cfg = load("lf_v1", "--kernel_config", '{"name": "auto, liger_kernel"}', validate=False)
    assert cfg.model.use_liger_kernel is True
    with pytest.raises(ConfigError, match="kernel_config.*flash-linear-attention needs a CUDA or NPU device"):
        load("lf_v1", "--kernel_config", '{"name": "auto, flash-linear-attention"}')


def test_mindspeed_model_ids_and_hook_modules():
    assert load("mindspeed", "--model_id", "minimax_m27").model.model_id == "minimax_m27"
    with pytest.raises(ConfigError, match="'model_id'.*'mamba3' is Mamba-3.*only MindSpeed-LLM's own"):
        load("mindspeed", "--model_id", "mamba3")
    modules = ["model.layers.{*}", "lm_head"]
    load("mindspeed", "--fsdp_modules", *modules, "--hook_modules", "model.layers.{*}")
    with pytest.raises(ConfigError, match="'hook_modules'.*other modules than fsdp_modules"):
        load("mindspeed", "--fsdp_modules", *modules, "--hook_modules", "mtp.layers.{*}")


def test_mg_reads_raw_files_with_the_pt_pipeline():
    def data(dataset):
        return SimpleNamespace(data_manager_type="mg", dataset=dataset)

    assert reads_megatron(data("corpus/wiki_text_document"))
    assert not reads_megatron(data({"file_name": "raw.parquet"}))
    assert not reads_megatron(data("raw.jsonl"))
    assert not reads_megatron(SimpleNamespace(data_manager_type="lf", dataset="a"))


def test_unset_attention_is_eager_for_models_without_sdpa():
    unset = SimpleNamespace(attn_impl=None, use_flash_attn=False)
    assert attn_for_model(unset, AutoConfig.for_model("gpt_oss"), "sdpa") == "eager"
    assert attn_for_model(unset, AutoConfig.for_model("qwen2"), "sdpa") == "sdpa"
    asked = SimpleNamespace(attn_impl="sdpa", use_flash_attn=False)
    assert attn_for_model(asked, AutoConfig.for_model("gpt_oss"), "sdpa") == "sdpa"


def test_runner_stand_ins(tmp_path):
    folder, tokens = tokenizer_for("llama3", tmp_path)
    assert tokens == ["<|eot_id|>"] and "<|eot_id|>" in AutoTokenizer.from_pretrained(folder).get_vocab()
    assert tokenizer_for("qwen", tmp_path) is None  # the tiny tokenizer has ChatML's tokens
    model = model_for_id("minimax_m27", tmp_path)
    assert json.loads((tmp_path / "model" / "config.json").read_text())["model_type"] == "minimax_m2"
    assert model is not None and model_for_id("mamba3", tmp_path) is None


def test_lf_v1_pair_dataset_is_two_conversations(tmp_path):
    from tunesmith.config.dialects.lf_v1 import NAMES

    path = tmp_path / "datasets.yaml"
    path.write_text("pairs:\n  path: pairs.jsonl\n  source: local\n  converter: pair\n")
    (spec,) = NAMES["train_dataset"].fn(str(path))["dataset"]
    assert spec["formatting"] == "openai" and spec["ranking"] is True
    assert spec["columns"] == {"messages": "chosen", "rejected_messages": "rejected"}
