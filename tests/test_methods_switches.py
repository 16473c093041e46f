"""Model switches: RoPE scaling with LLaMA-Factory's factor (positions scaled as the method says), float32 norms
and logits, model_kwargs, checkpointing switches, the parameter status listing, the moe_aux_loss_coef alias."""

from __future__ import annotations

import logging

import pytest
import torch
from methods_helpers import setup

from tunesmith.config import load_config
from tunesmith.model import checkpointing_kwargs, checkpointing_wanted
from tunesmith.utils.errors import ConfigError


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return tiny_model_dir


def _rotary(model, positions):
    x = torch.zeros(1, positions.numel(), 64)
    return model.model.rotary_emb(x, positions[None])


def test_linear_rope_scaling_divides_positions_by_the_factor(tmp_path, tiny):
    _, _, plain = setup(tiny, tmp_path)
    cfg, _, model = setup(
        tiny, tmp_path, "rope_scaling=linear", "cutoff_len=1300"
    )  # 512 positions -> factor 3
    assert model.config.rope_parameters["factor"] == 3.0 and model.config.max_position_embeddings == 1536
    positions = torch.arange(0, 30, 3)
    cos_scaled, sin_scaled = _rotary(model, positions)
    cos_plain, sin_plain = _rotary(plain, positions // 3)
    assert torch.allclose(cos_scaled, cos_plain, atol=1e-6) and torch.allclose(
        sin_scaled, sin_plain, atol=1e-6
    )


@pytest.mark.parametrize("kind", ["dynamic", "yarn", "llama3"])
def test_other_rope_types_get_lf_parameters(tmp_path, tiny, kind):
    _, _, model = setup(tiny, tmp_path, f"rope_scaling={kind}", "cutoff_len=1024")
    params = model.config.rope_parameters
    assert params["rope_type"] == kind and params["factor"] == 2.0
    assert params["original_max_position_embeddings"] == 512
    assert model.model.rotary_emb.rope_type == kind
    if kind == "llama3":
        assert (params["low_freq_factor"], params["high_freq_factor"]) == (1.0, 4.0)


def test_rope_scaling_within_the_length_does_nothing(tmp_path, tiny):
    _, _, model = setup(tiny, tmp_path, "rope_scaling=linear", "cutoff_len=256")
    assert (
        model.config.rope_parameters["rope_type"] == "default" and model.config.max_position_embeddings == 512
    )


def test_upcast_layernorm_and_lmhead_output(tmp_path, tiny):
    _, tok, model = setup(
        tiny, tmp_path, "torch_dtype=bfloat16", "upcast_layernorm=true", "upcast_lmhead_output=true"
    )
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert all(d == torch.float32 for n, d in dtypes.items() if "norm" in n)
    assert dtypes["model.layers.0.mlp.up_proj.weight"] == torch.bfloat16
    ids = tok("hello world", return_tensors="pt")["input_ids"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(input_ids=ids).logits.dtype == torch.float32


def test_model_kwargs_set_config_values(tmp_path, tiny):
    _, _, model = setup(tiny, tmp_path, 'model_kwargs={"rms_norm_eps": 0.001}')
    assert model.config.rms_norm_eps == 0.001
    with pytest.raises(ConfigError, match="no field 'not_a_field'"):
        setup(tiny, tmp_path, 'model_kwargs={"not_a_field": 1}')


def test_checkpointing_switches(tmp_path):
    cfg = load_config(None, ["gradient_checkpointing=true", "use_reentrant_gc=true"], validate=False)
    assert checkpointing_wanted(cfg) and checkpointing_kwargs(cfg) == {"use_reentrant": True}
    cfg = load_config(
        None, ["gradient_checkpointing=true", "disable_gradient_checkpointing=true"], validate=False
    )
    assert not checkpointing_wanted(cfg)


def test_lf_checkpoints_reentrant_by_default():
    lf = ["dialect=lf", "model_name_or_path=builtin:tiny"]
    cfg = load_config(None, lf, validate=False)
    assert checkpointing_wanted(cfg) and checkpointing_kwargs(cfg) == {"use_reentrant": True}
    off = load_config(None, [*lf, "use_reentrant_gc=false"], validate=False)
    assert checkpointing_kwargs(off) == {"use_reentrant": False}
    kwargs = load_config(
        None, [*lf, 'gradient_checkpointing_kwargs={"use_reentrant": false}'], validate=False
    )
    assert checkpointing_kwargs(kwargs) == {"use_reentrant": False}
    assert checkpointing_kwargs(load_config(None, ["gradient_checkpointing=true"], validate=False)) is None


def test_print_param_status(tmp_path, tiny, caplog):
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        setup(tiny, tmp_path, "print_param_status=true", "freeze_parameters=lm_head")
    assert "name: lm_head.weight, shape: (" in caplog.text and "trainable: False" in caplog.text


def test_moe_aux_loss_coef_alias():
    cfg = load_config(None, ["moe_aux_loss_coef=0.01"], validate=False)
    assert cfg.model.router_aux_loss_coef == 0.01


@pytest.mark.parametrize(
    ("options", "needs", "fixed"),
    [
        (["galore_rank=4"], "use_galore", "use_galore=true"),
        (["finetuning_type=lora", "oft_block_size=16"], "finetuning_type: oft", "finetuning_type=oft"),
        (["finetuning_type=full", "lora_bias=all"], "finetuning_type: lora", "finetuning_type=lora"),
        (["eaft_alpha=2"], "use_eaft_loss", "use_eaft_loss=true"),
    ],
)
def test_method_options_without_their_switch_are_errors(options, needs, fixed):
    base = ["model=builtin:tiny", "dataset=demo", "dataset_dir=builtin:demo"]
    with pytest.raises(ConfigError, match=needs):
        load_config(None, [*base, *options])
    key = fixed.split("=")[0]
    load_config(None, [*base, *[o for o in options if not o.startswith(key + "=")], fixed])


def test_lisa_on_several_processes_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="lisa_activated_layers"):
        load_config(
            None,
            [
                "model=builtin:tiny",
                "dataset=demo",
                "dataset_dir=builtin:demo",
                "finetuning_type=full",
                "lisa_activated_layers=1",
            ],
        )


def test_badam_resume_needs_resume_only_model(tmp_path):
    base = [
        "model=builtin:tiny",
        "dataset=demo",
        "dataset_dir=builtin:demo",
        "finetuning_type=full",
        "use_badam=true",
    ]
    with pytest.raises(ConfigError, match="use_badam"):
        load_config(None, [*base, f"resume_from_checkpoint={tmp_path}"])
    load_config(None, [*base, f"resume_from_checkpoint={tmp_path}", "resume_only_model=true"])
