"""Model loading: built-in and local sources, seeds, random init, meta device, dtype, attention, quantisation,
and the clear refusals (remote code, offline hub ids, GPU-only kernels)."""

from __future__ import annotations

import json

import pytest
import torch
from test_model_cfg import model_cfg
from transformers import AutoModelForCausalLM

from tunesmith.model import load_model, load_tokenizer
from tunesmith.utils.errors import ConfigError

PROBE = torch.tensor([[5, 17, 99, 3, 250, 41, 8, 1000]])


def _load(model: str = "builtin:tiny", train: dict | None = None, **fields):
    cfg = model_cfg(model, train=train, **fields)
    return load_model(cfg, load_tokenizer(cfg))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_builtin_is_random_init_with_the_run_seed():
    first, again, other = _load(train={"seed": 1}), _load(train={"seed": 1}), _load(train={"seed": 2})
    assert _same_weights(first, again)
    assert not _same_weights(first, other)
    assert first.config._attn_implementation == "sdpa" and first.config.use_cache is False
    assert first.dtype == torch.float32


def test_local_dir_loads_saved_weights_and_train_from_scratch_does_not(tiny_model_dir):
    saved = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    loaded = _load(str(tiny_model_dir))
    scratch = _load(str(tiny_model_dir), train_from_scratch=True)
    assert _same_weights(loaded, saved)
    assert not _same_weights(scratch, saved)
    assert {k: v.shape for k, v in scratch.state_dict().items()} == {
        k: v.shape for k, v in saved.state_dict().items()
    }


def test_meta_device_init_is_materialised_and_usable():
    model = _load(init_model_with_meta_device=True)
    reference = _load()
    assert not any(p.is_meta for p in model.parameters())
    for (name, buf), (_, ref) in zip(model.named_buffers(), reference.named_buffers(), strict=True):
        torch.testing.assert_close(buf, ref, msg=name)  # rotary frequencies recomputed, not left empty
    norms = [p for n, p in model.named_parameters() if n.endswith("norm.weight")]
    assert norms and all(torch.equal(p, torch.ones_like(p)) for p in norms)
    std = model.get_input_embeddings().weight.std().item()
    assert abs(std - model.config.initializer_range) < 0.2 * model.config.initializer_range
    assert torch.isfinite(model(input_ids=PROBE).logits).all()


def test_dtype_and_attention_choices(tiny_model_dir):
    bf16 = _load(str(tiny_model_dir), torch_dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    eager = _load(str(tiny_model_dir), attn_impl="eager").eval()
    sdpa = _load(str(tiny_model_dir), attn_impl="sdpa").eval()
    assert eager.config._attn_implementation == "eager"
    with torch.no_grad():
        torch.testing.assert_close(
            eager(input_ids=PROBE).logits, sdpa(input_ids=PROBE).logits, rtol=1e-4, atol=1e-5
        )


def test_qlora_base_is_4bit():
    model = _load(finetuning_type="qlora")
    kinds = {type(m).__name__ for m in model.modules()}
    assert "Linear4bit" in kinds
    assert getattr(model, "is_quantized", False)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"attn_impl": "flash_attn"}, "attn_impl: flash_attn needs a CUDA GPU and the flash-attn"),
        ({"attn_impl": "flash_attention_3"}, "flash-attn-3"),
        ({"use_flash_attn": True}, "use_flash_attn: flash_attention_2 needs a CUDA GPU"),
        ({"attn_impl": "flex_attention"}, "no backward pass on CPU"),
        ({"use_liger_kernel": True}, "use_liger_kernel: needs a CUDA GPU (Liger kernels run on Triton"),
        ({"use_triton_gdn": True}, "use_triton_gdn: needs a CUDA GPU"),
        ({"gdn_chunk_size": 32}, "gdn_chunk_size"),
        ({"router_aux_loss_coef": 0.01}, "router_aux_loss_coef: model type 'qwen2' has no MoE router"),
        ({"moe_grouped_gemm": True}, "moe_grouped_gemm: the model has no mixture-of-experts layers"),
        (
            {"finetuning_type": "full", "quantization_bit": 4},
            "quantization_bit: quantised weights cannot be trained",
        ),
    ],
)
def test_clear_refusals(fields, needle, tiny_model_dir):
    with pytest.raises(ConfigError, match=None) as info:
        _load(str(tiny_model_dir), **fields)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_speed_switches_without_a_kernel_warn_and_defaults_pass(caplog):
    with caplog.at_level("WARNING", logger="tunesmith"):
        _load(use_fused_rotary_pos_emb=True, gdn_chunk_size=64)  # MindSpeed configs carry both
    assert (
        "use_fused_rotary_pos_emb: MindSpeed's fused rotary embedding is an NPU kernel missing here"
        in caplog.text
    )


def test_router_aux_loss_coef_reaches_moe_config(tmp_path):
    from helpers import save_tiny_model

    path = save_tiny_model(tmp_path / "moe", arch="qwen3_moe")
    model = _load(str(path), router_aux_loss_coef=0.25)
    assert model.config.router_aux_loss_coef == 0.25 and model.config.output_router_logits is True
    out = model(input_ids=PROBE, labels=PROBE)
    assert out.aux_loss is not None and torch.isfinite(out.aux_loss)


def test_remote_code_is_refused_unless_trusted(tiny_model_dir, tmp_path):
    custom = tmp_path / "custom"
    custom.mkdir()
    config = json.loads((tiny_model_dir / "config.json").read_text())
    config.update(model_type="my_custom_lm", auto_map={"AutoConfig": "modeling_custom.MyConfig"})
    (custom / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (custom / name).write_text((tiny_model_dir / name).read_text())
    with pytest.raises(ConfigError, match="ships its own modelling code.*trust_remote_code: true"):
        _load(str(custom))


def test_hub_id_offline_is_a_clear_error():
    with pytest.raises(
        ConfigError, match="model_name_or_path: 'nobody/no-such-model' is not a local directory"
    ):
        _load("nobody/no-such-model")
    with pytest.raises(ConfigError, match="model_name_or_path: unknown built-in 'builtin:nope'"):
        _load("builtin:nope")
