"""ModelArguments: what model and tokenizer to load, how to adapt it (full, freeze, LoRA) and which kernels to use."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tunesmith.config.fields import arg

DTYPES = ("bfloat16", "float16", "float32", "auto")
DTYPE_ALIASES = {
    "bf16": "bfloat16",
    "fp16": "float16",
    "fp32": "float32",
    "half": "float16",
    "float": "float32",
}
ATTENTION = ("eager", "sdpa", "flash_attn", "flash_attention_2", "flash_attention_3", "flex_attention")
# or a transformers hub kernel: owner/repo, optionally @revision and :function (checked in model/fused_ops.py)
HUB_KERNEL = re.compile(r"^([^/:@\s]+)/([^/:@\s]+)(?:@[^/:\s]+)?(?::[^/:\s]+)?$")


@dataclass
class ModelArguments:
    """Model and tokenizer loading, fine-tuning method and kernel options."""

    # --- loading --------------------------------------------------------------------------------------------------
    model_name_or_path: str | None = arg(
        None,
        "Model to train: a local directory, a Hugging Face hub id, or builtin:tiny (the built-in tiny model).",
        aliases=("model", "load"),
        sources="003,004",
        default_note="Required for training (MindSpeed: required; ms-swift --model, Megatron --load).",
    )
    model_id: str | None = arg(
        None,
        "MindSpeed-LLM model id: the model's architecture (minimax_m27 = minimax_m2, glm52 = glm_moe_dsa); the model "
        "must be of it.",
        choices=("gpt_oss", "qwen3", "qwen3_moe", "qwen3_next", "minimax_m27", "glm52", "deepseek_v4"),
        sources="003",
    )
    tokenizer_name_or_path: str | None = arg(
        None, "Tokenizer path or hub id, when it differs from model_name_or_path.", sources="003"
    )
    cache_dir: str | None = arg(
        None, "Directory where models downloaded from a hub are cached.", sources="003"
    )
    model_revision: str = arg("main", "Model version to load: a branch, tag or commit id.", sources="003")
    trust_remote_code: bool = arg(
        False, "Allow running modelling code shipped with the model on the hub.", sources="003"
    )
    train_from_scratch: bool = arg(
        False, "Initialise the weights randomly from the model config instead of loading them.", sources="003"
    )
    init_model_with_meta_device: bool = arg(
        False,
        "Build the model on the meta device first and materialise weights later, to save memory.",
        sources="003",
    )
    torch_dtype: str | None = arg(
        None,
        "Dtype the weights are loaded in; unset means float32 (the safe choice on CPU), auto uses the checkpoint's.",
        aliases=("dtype",),
        choices=DTYPES,
        value_aliases=DTYPE_ALIASES,
        sources="004",
        default_note="transformers loads float32 unless told; ms-swift picks the checkpoint dtype. We keep float32.",
    )
    attn_impl: str | None = arg(
        None,
        "Attention implementation (unset: sdpa; flash_attn = flash_attention_2), or a hub kernel "
        "kernels-community/<repo> from a local copy.",
        aliases=("attn_implementation",),
        sources="004",
    )

    # --- tokenizer ------------------------------------------------------------------------------------------------
    use_fast_tokenizer: bool = arg(
        True, "Use the fast (Rust tokenizers) tokenizer implementation.", sources="003"
    )
    split_special_tokens: bool = arg(
        False,
        "Let the tokenizer split special tokens into pieces instead of keeping them whole.",
        sources="003",
    )
    eos_token: str | None = arg(
        None, "Use this existing token as the tokenizer's end-of-sequence token (TRL's eos_token)."
    )
    pad_token: str | None = arg(None, "Use this existing token as the tokenizer's padding token.")
    chat_template_path: str | None = arg(
        None,
        "Chat template to use instead of the tokenizer's: a Jinja file, or a tokenizer folder whose template is "
        "taken.",
    )
    custom_chat_template: str | None = arg(
        None, "Chat template (a Jinja string) to use instead of the tokenizer's (LLaMA-Factory v1)."
    )
    add_tokens: list[str] | None = arg(
        None, "Ordinary tokens to add to the tokenizer (comma-separated or a list).", sources="003"
    )
    add_special_tokens: list[str] | None = arg(
        None, "Special tokens to add to the tokenizer (comma-separated or a list).", sources="003"
    )
    new_special_tokens_config: str | None = arg(
        None,
        "YAML file mapping new special tokens to descriptions used to initialise them; wins over add_special_tokens.",
        sources="003",
    )
    init_special_tokens: str = arg(
        "noise_init",
        "How new token embeddings start: mean plus noise, from their description, or description plus noise.",
        choices=("noise_init", "desc_init", "desc_init_w_noise"),
        sources="003",
    )
    resize_vocab: bool = arg(
        False,
        "Resize the embeddings and lm_head to the tokenizer's vocabulary (after adding tokens).",
        sources="003",
    )

    # --- hub credentials ------------------------------------------------------------------------------------------
    hf_hub_token: str | None = arg(None, "Hugging Face hub token for downloads.", secret=True, sources="003")
    ms_hub_token: str | None = arg(None, "ModelScope hub token for downloads.", secret=True, sources="003")
    om_hub_token: str | None = arg(None, "Modelers hub token for downloads.", secret=True, sources="003")

    # --- fine-tuning method ---------------------------------------------------------------------------------------
    finetuning_type: str = arg(
        "full",
        "Which weights train: full (all), freeze (the last layers only), lora, qlora (LoRA on a 4-bit base), or "
        "the peft adapters oft, boft, vera, adalora.",
        aliases=("train_type",),
        choices=("full", "freeze", "lora", "qlora", "oft", "boft", "vera", "adalora"),
        sources="004",
        default_note="HF Trainer, MindSpeed and LLaMA-Factory v1 train all weights; ms-swift defaults to lora.",
    )
    lora_rank: int = arg(8, "LoRA rank r.", minimum=1, sources="004")
    lora_alpha: int = arg(
        32,
        "LoRA scaling alpha (the update is scaled by alpha / rank).",
        minimum=0,
        exclusive_minimum=True,
        sources="004",
        default_note="ms-swift's default; LLaMA-Factory uses 2 x lora_rank.",
    )
    lora_dropout: float = arg(0.0, "Dropout on the LoRA input.", minimum=0.0, maximum=1.0)
    target_modules: str | list[str] = arg(
        "all-linear",
        "Modules that get LoRA adapters: all-linear, or module names (comma-separated or a list).",
        aliases=("lora_target",),
        value_aliases={"all": "all-linear"},
        sources="004",
        default_note="ms-swift's default; LLaMA-Factory's lora_target 'all' means the same.",
    )
    adapter_name_or_path: list[str] | None = arg(
        None,
        "Saved LoRA adapter folder(s) to load onto the base (comma-separated or a list): all but the last are merged "
        "in order, the last stays the active adapter.",
        aliases=("adapters",),
    )
    use_dora: bool = arg(False, "Use weight-decomposed LoRA (DoRA).")
    use_rslora: bool = arg(False, "Use rank-stabilised LoRA scaling (alpha / sqrt(rank)).")
    modules_to_save: list[str] | None = arg(
        None,
        "Extra modules trained fully and saved with the adapter (e.g. embed_tokens,lm_head).",
        aliases=("additional_target",),
    )
    freeze_trainable_layers: int = arg(
        2,
        "freeze tuning: number of last layers to train (negative: the first layers).",
        default_note="LLaMA-Factory.",
    )
    freeze_trainable_modules: str | list[str] = arg(
        "all", "freeze tuning: modules inside the trainable layers to train; all means every module."
    )
    quantization_bit: int | None = arg(
        None,
        "Quantise the frozen base weights to 4 or 8 bits (bitsandbytes); qlora implies 4.",
        choices=(4, 8),
    )
    quantization_type: str = arg(
        "nf4",
        "4-bit data type of the quantised base weights (bitsandbytes): nf4 or fp4.",
        aliases=("bnb_4bit_quant_type",),
        choices=("nf4", "fp4"),
    )
    double_quantization: bool = arg(
        True,
        "Quantise the 4-bit quantisation constants too (bitsandbytes double quantisation).",
        aliases=("bnb_4bit_use_double_quant", "use_bnb_nested_quant"),
    )

    # --- MindSpeed low-precision recipes --------------------------------------------------------------------------
    quant_recipe: str | None = arg(None, "Low-precision training recipe.", choices=("mxfp8",), sources="003")
    quant_format: str | None = arg(
        None, "Number format of the quantised tensors.", choices=("E4M3", "E5M2", "HIF8"), sources="003"
    )
    quant_block_size: int = arg(32, "Block size of block-wise quantisation.", minimum=1, sources="003")
    quant_apply_modules: list[str] = arg(
        help="Module patterns to quantise.", factory=lambda: ["model.layers.{*}"], sources="003"
    )
    quant_ignored_modules: list[str] = arg(
        help="Module patterns never quantised.", factory=lambda: ["lm_head"], sources="003"
    )
    converters: list[str] = arg(
        help="Quantisation converters to apply.", factory=lambda: ["quantize.linear.mx"], sources="003"
    )

    # --- model behaviour and kernels ------------------------------------------------------------------------------
    router_aux_loss_coef: float | None = arg(
        None,
        "MoE router load-balancing loss weight; unset keeps the model config's value.",
        aliases=("moe_aux_loss_coef",),
        minimum=0,
        sources="004",
    )
    use_flash_attn: bool = arg(
        False,
        "MindSpeed: use the fused flash-attention operator (GPU/NPU only; see attn_impl).",
        sources="003",
    )
    use_fused_rmsnorm: bool = arg(False, "MindSpeed: use the fused RMSNorm operator.", sources="003")
    use_fused_rotary_pos_emb: bool = arg(
        False, "MindSpeed: use the fused rotary embedding operator.", sources="003"
    )
    moe_grouped_gemm: bool = arg(
        False, "MindSpeed: compute MoE experts with a fused grouped GEMM.", sources="003"
    )
    use_triton_gdn: bool = arg(
        False, "MindSpeed: use Triton kernels for Gated DeltaNet layers.", sources="003"
    )
    gdn_chunk_size: int = arg(64, "Chunk size of the Gated DeltaNet computation.", minimum=1, sources="003")
    use_liger_kernel: bool = arg(
        False, "Patch the model with Liger kernels (needs a GPU with Triton; refused on CPU).", sources="001"
    )
    liger_kernel_config: dict[str, Any] | None = arg(
        None, "Which Liger kernels to apply, e.g. {rope: true, cross_entropy: false}.", sources="001"
    )
