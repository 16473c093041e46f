"""A tiny random model of the architecture a MindSpeed `model_id` names (gpt_oss, qwen3_next, minimax_m27 ...),
written into the run's folder: `builtin:tiny` is a Qwen2, which such a config rightly refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.config.unsupported import MODEL_ID_TYPES
from tunesmith.utils.builtin import resolve_builtin

FOLDER = "model"
# Small sizes for every config field of that name the architecture has (attention, MoE, MLA, linear attention).
SIZES: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "moe_intermediate_size": 32,
    "num_experts": 4,
    "num_local_experts": 4,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "n_shared_experts": 1,
    "n_group": 1,
    "topk_group": 1,
    "first_k_dense_replace": 0,
    "max_position_embeddings": 512,
    "sliding_window": 64,
    "q_lora_rank": 32,
    "kv_lora_rank": 16,
    "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 8,
    "v_head_dim": 16,
    "index_n_heads": 2,
    "index_head_dim": 16,
    "linear_num_value_heads": 2,
    "linear_num_key_heads": 2,
    "linear_key_head_dim": 16,
    "linear_value_head_dim": 16,
}
PER_TYPE: dict[str, dict[str, Any]] = {
    "qwen3_next": {"num_hidden_layers": 4},  # its fourth layer is the first full-attention one
    "glm_moe_dsa": {"num_key_value_heads": 4, "qk_head_dim": 16, "head_dim": 8, "index_topk": 16},
}


def model_for_id(model_id: str, root: Path) -> str | None:
    """The folder of a tiny model of `model_id`'s type under `root`; None for an id tunesmith does not map (the
    run refuses it itself) or one builtin:tiny already is."""
    model_type = MODEL_ID_TYPES.get(str(model_id).strip().lower())
    if model_type is None or model_type == "qwen2":
        return None
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_builtin("builtin:tiny")))
    base = AutoConfig.for_model(model_type)
    sizes = {k: v for k, v in {**SIZES, **PER_TYPE.get(model_type, {})}.items() if hasattr(base, k)}
    config = AutoConfig.for_model(
        model_type,
        **sizes,
        vocab_size=-(-len(tokenizer) // 64) * 64,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if getattr(base, "layer_types", None):
        config.layer_types = list(base.layer_types[: config.num_hidden_layers])
    torch.manual_seed(0)
    folder = root / FOLDER
    AutoModelForCausalLM.from_config(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return str(folder)


def write_adapter(folder: Path) -> None:
    """A tiny random LoRA adapter (all linear layers, rank 8) for builtin:tiny at `folder`: the adapter a merge,
    chat or predict example reads from an earlier run."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(resolve_builtin("builtin:tiny"))))
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(str(folder))
