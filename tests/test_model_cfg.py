"""Config helper for the model-layer tests, and a check that every argument the model layer reads exists."""

from __future__ import annotations

import json
from typing import Any

from tunesmith.config import TunesmithConfig, load_config


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def model_cfg(
    model: str = "builtin:tiny", *, train: dict[str, Any] | None = None, **fields: Any
) -> TunesmithConfig:
    """`load_config(None, [...])` with `model_name_or_path=model` and the given arguments (any section)."""
    values = {"model_name_or_path": model, **fields, **(train or {})}
    return load_config(None, [f"{key}={_text(value)}" for key, value in values.items()])


def test_model_layer_reads_declared_arguments():
    cfg = model_cfg(
        train_type="lora", lora_rank=4, recompute=True, seed=3, recompute_modules=["model.layers.{*}.mlp"]
    )
    assert cfg.model.finetuning_type == "lora" and cfg.train.gradient_checkpointing is True
    assert cfg.parallel.recompute_modules == ["model.layers.{*}.mlp"] and cfg.train.seed == 3
    read = {
        "model": ["model_name_or_path", "tokenizer_name_or_path", "use_fast_tokenizer", "split_special_tokens",
                  "trust_remote_code", "model_revision", "cache_dir", "torch_dtype", "attn_impl", "use_flash_attn",
                  "train_from_scratch", "init_model_with_meta_device", "add_tokens", "add_special_tokens",
                  "new_special_tokens_config", "init_special_tokens", "resize_vocab", "finetuning_type", "lora_rank",
                  "lora_alpha", "lora_dropout", "target_modules", "use_dora", "use_rslora", "modules_to_save",
                  "freeze_trainable_layers", "freeze_trainable_modules", "quantization_bit", "router_aux_loss_coef",
                  "use_liger_kernel", "liger_kernel_config", "use_fused_rmsnorm", "use_fused_rotary_pos_emb",
                  "moe_grouped_gemm", "use_triton_gdn", "gdn_chunk_size"],
        "train": ["seed", "gradient_checkpointing", "gradient_checkpointing_kwargs", "neftune_noise_alpha"],
        "parallel": ["recompute_modules"],
    }  # fmt: skip
    for section, names in read.items():
        missing = [name for name in names if not hasattr(getattr(cfg, section), name)]
        assert not missing, (section, missing)
