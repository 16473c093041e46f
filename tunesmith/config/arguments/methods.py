"""MethodArguments: Training methods beyond plain full/freeze/LoRA: adapter variants, memory-saving optimizers, extra losses, selective training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.config.fields import arg

GALORE_PROJ = ("std", "reverse_std", "right", "left", "full")
ROPE_TYPES = ("linear", "dynamic", "yarn", "llama3")


@dataclass
class MethodArguments:
    """Training methods beyond plain full/freeze/LoRA: adapter variants, memory-saving optimizers, extra losses, selective training."""

    # --- LoRA+ ----------------------------------------------------------------------------------------------------
    loraplus_lr_ratio: float | None = arg(
        None,
        "LoRA+: learning rate of the LoRA B matrices = learning_rate x this ratio (unset: LoRA+ off).",
        aliases=("lorap_lr_ratio",),
        minimum=0,
        exclusive_minimum=True,
    )
    loraplus_lr_embedding: float = arg(1e-6, "LoRA+: learning rate of LoRA embedding B matrices.", minimum=0)

    # --- adapter variants (finetuning_type lora/qlora, oft, boft, vera) -------------------------------------------
    init_lora_weights: bool | str = arg(
        True,
        "LoRA initialisation (peft): true (B = 0), false, gaussian, pissa (exact SVD), pissa_niter_<n> (fast "
        "SVD), olora, orthogonal.",
    )
    pissa_init: bool = arg(False, "PiSSA: start A, B from the principal singular vectors of each weight.")
    pissa_iter: int = arg(16, "PiSSA: fast-SVD iterations; -1 computes the exact SVD.", minimum=-1)
    pissa_convert: bool = arg(
        False,
        "PiSSA: also save the trained adapter as a plain LoRA of the original weights (output_dir/pissa_converted).",
    )
    lora_bias: str = arg(
        "none",
        "Which biases train with the adapter: none, all, or lora_only (peft bias).",
        choices=("none", "all", "lora_only"),
    )
    lora_dtype: str | None = arg(
        None,
        "Dtype of the trainable adapter weights; unset keeps the model's.",
        choices=("float16", "bfloat16", "float32"),
        value_aliases={"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"},
    )
    target_regex: str | None = arg(
        None, "Adapter targets as one regular expression over module names (replaces target_modules)."
    )
    target_parameters: list[str] | None = arg(
        None,
        "LoRA on parameters by name instead of modules (e.g. MoE expert weights; peft target_parameters).",
    )
    oft_rank: int = arg(0, "OFT: number of blocks r (0: derive it from oft_block_size).", minimum=0)
    oft_block_size: int = arg(32, "OFT: block size (used when oft_rank is 0).", minimum=0)
    oft_target: str | list[str] = arg("all", "OFT: target modules; all uses target_modules.")
    module_dropout: float = arg(
        0.0, "OFT: probability of dropping a whole block (multiplicative dropout).", minimum=0, maximum=1
    )
    boft_block_size: int = arg(4, "BOFT: block size.", minimum=0)
    boft_block_num: int = arg(0, "BOFT: number of blocks (0: from boft_block_size).", minimum=0)
    boft_n_butterfly_factor: int = arg(1, "BOFT: butterfly factor.", minimum=1)
    boft_dropout: float = arg(0.0, "BOFT: multiplicative dropout probability.", minimum=0, maximum=1)
    vera_rank: int = arg(256, "VeRA: rank of the shared random projections.", minimum=1)
    vera_projection_prng_key: int = arg(0, "VeRA: seed of the shared random projections.")
    vera_dropout: float = arg(0.0, "VeRA: dropout on the input.", minimum=0, maximum=1)
    vera_d_initial: float = arg(0.1, "VeRA: initial value of the trainable d vector.")

    create_new_adapter: bool = arg(
        False,
        "With adapter_name_or_path: merge every given adapter into the base and train a new LoRA on top "
        "(default: the last one keeps training).",
    )
    resume_only_model: bool = arg(
        False,
        "resume_from_checkpoint loads only the model weights: optimizer, schedule, RNG and step count start fresh.",
    )

    adalora_init_r: int = arg(12, "AdaLoRA: initial rank of every adapter.", minimum=1)
    adalora_target_r: int = arg(8, "AdaLoRA: average rank the budget shrinks to.", minimum=1)
    adalora_tinit: int = arg(0, "AdaLoRA: warm-up steps before ranks are pruned.", minimum=0)
    adalora_tfinal: int = arg(0, "AdaLoRA: final steps with the ranks fixed.", minimum=0)
    adalora_deltaT: int = arg(1, "AdaLoRA: steps between two budget allocations.", minimum=1)
    adalora_beta1: float = arg(
        0.85, "AdaLoRA: EMA factor of the importance sensitivity.", minimum=0, maximum=1
    )
    adalora_beta2: float = arg(
        0.85, "AdaLoRA: EMA factor of the importance uncertainty.", minimum=0, maximum=1
    )
    adalora_orth_reg_weight: float = arg(
        0.5, "AdaLoRA: weight of the orthogonality regulariser of A and B.", minimum=0
    )

    # --- selective training (ms-swift full tuning, LLaMA-Factory freeze tuning) -----------------------------------
    freeze_parameters: list[str] | None = arg(
        None,
        "Freeze the parameters whose names start with one of these prefixes (comma-separated or a list).",
    )
    freeze_parameters_regex: str | None = arg(
        None, "Freeze the parameters whose names match this regular expression (re.search)."
    )
    freeze_parameters_ratio: float = arg(
        0.0,
        "Freeze this share of all parameter elements, in model order from the bottom (embeddings) upwards.",
        minimum=0.0,
        maximum=1.0,
    )
    trainable_parameters: list[str] | None = arg(
        None,
        "Make the parameters whose names start with one of these prefixes trainable (wins over freeze_*).",
    )
    trainable_parameters_regex: str | None = arg(
        None, "Make the parameters whose names match this regular expression trainable (wins over freeze_*)."
    )
    freeze_extra_modules: list[str] | None = arg(
        None,
        "freeze tuning: modules outside the decoder layers that train too (e.g. embed_tokens,lm_head).",
    )
    use_llama_pro: bool = arg(
        False,
        "LLaMA-Pro on an expanded model (freeze tuning): train freeze_trainable_layers blocks, the last of each "
        "equal group of layers.",
    )
    llamapro_num_new_blocks: int | None = arg(
        None,
        "LLaMA-Pro expansion: insert this many identity-initialised copies of decoder blocks and train only "
        "them (unset: no expansion).",
        minimum=1,
    )
    llamapro_num_groups: int | None = arg(
        None,
        "LLaMA-Pro expansion: split the layers into this many groups, each followed by its new blocks "
        "(default: one group per new block).",
        minimum=1,
    )
    lisa_activated_layers: int = arg(
        0,
        "LISA: train only this many randomly drawn decoder layers at a time (0: off); full tuning only.",
        minimum=0,
    )
    lisa_step_interval: int = arg(20, "LISA: draw new layers every this many optimizer steps.", minimum=1)

    # --- SFT losses -----------------------------------------------------------------------------------------------
    use_dft_loss: bool = arg(
        False, "DFT (dynamic fine-tuning): each token's CE weighted by its detached probability p(y)."
    )
    use_eaft_loss: bool = arg(
        False,
        "EAFT: each token's CE weighted by (top-20 entropy / 3) ** eaft_alpha of the detached prediction.",
    )
    eaft_alpha: float = arg(1.0, "EAFT: power of the entropy weight.", minimum=0)
    use_asft_loss: bool = arg(
        False,
        "ASFT: the DFT loss plus asft_alpha x KL(reference || model) per token; the reference is the "
        "starting model (frozen copy).",
    )
    asft_alpha: float = arg(0.1, "ASFT: weight of the KL term.", minimum=0)

    # --- memory-saving optimizers ---------------------------------------------------------------------------------
    use_galore: bool = arg(
        False, "GaLore: Adam states of the target matrices kept in a low-rank projection (galore-torch)."
    )
    galore_target: str | list[str] = arg(
        "all", "GaLore: linear modules it applies to: all, or module-name substrings (comma-separated)."
    )
    galore_rank: int = arg(16, "GaLore: rank of the gradient projection.", minimum=1)
    galore_update_interval: int = arg(200, "GaLore: steps between projection updates.", minimum=1)
    galore_scale: float = arg(2.0, "GaLore: scale of the projected update.", minimum=0)
    galore_proj_type: str = arg("std", "GaLore: projection side.", choices=GALORE_PROJ)
    galore_layerwise: bool = arg(
        False, "GaLore: one optimizer per parameter, stepped inside backward (accumulation 1, one process)."
    )
    use_apollo: bool = arg(
        False,
        "APOLLO: AdamW with channel/tensor-wise scaling from a low-rank auxiliary state (apollo-torch).",
    )
    apollo_target: str | list[str] = arg(
        "all", "APOLLO: linear modules it applies to: all, or module-name substrings (comma-separated)."
    )
    apollo_rank: int = arg(16, "APOLLO: rank of the auxiliary space.", minimum=1)
    apollo_update_interval: int = arg(200, "APOLLO: steps between projection updates.", minimum=1)
    apollo_scale: float = arg(32.0, "APOLLO: scale of the update.", minimum=0)
    apollo_proj: str = arg("random", "APOLLO: projection kind.", choices=("svd", "random"))
    apollo_proj_type: str = arg("std", "APOLLO: projection side.", choices=("std", "right", "left"))
    apollo_scale_type: str = arg("channel", "APOLLO: scaling granularity.", choices=("channel", "tensor"))
    apollo_scale_front: bool = arg(False, "APOLLO: apply the norm-growth limiter before scaling.")
    apollo_layerwise: bool = arg(
        False, "APOLLO: one optimizer per parameter, stepped inside backward (accumulation 1, one process)."
    )
    use_badam: bool = arg(False, "BAdam: update one block of parameters at a time (badam).")
    badam_mode: str = arg(
        "layer",
        "BAdam: layer (one decoder layer per block at a time); ratio (sparse updates) is refused here.",
        choices=("layer", "ratio"),
    )
    badam_start_block: int | None = arg(
        None, "BAdam layer mode: block to start with (default from the mode)."
    )
    badam_switch_mode: str = arg(
        "ascending", "BAdam layer mode: block order.", choices=("ascending", "descending", "random", "fixed")
    )
    badam_switch_interval: int = arg(50, "BAdam layer mode: optimizer steps per block.", minimum=1)
    badam_update_ratio: float = arg(0.05, "BAdam ratio mode: share of each matrix updated (refused here).")
    badam_mask_mode: str = arg(
        "adjacent", "BAdam ratio mode: mask layout (refused here).", choices=("adjacent", "scatter")
    )
    badam_verbose: int = arg(0, "BAdam: verbosity (0, 1, 2).", choices=(0, 1, 2))
    use_adam_mini: bool = arg(False, "Adam-mini: one second-moment value per parameter block (adam-mini).")

    # --- model switches (LLaMA-Factory) ---------------------------------------------------------------------------
    rope_scaling: str | None = arg(
        None,
        "Scale RoPE for a longer context: linear, dynamic, yarn or llama3, by ceil(cutoff_len / the model's "
        "positions) as LLaMA-Factory computes it.",
        choices=ROPE_TYPES,
    )
    upcast_layernorm: bool = arg(
        False, "Keep the normalisation weights in float32 (for half-precision models)."
    )
    upcast_lmhead_output: bool = arg(False, "Compute the loss from float32 logits of the LM head.")
    disable_gradient_checkpointing: bool = arg(
        False,
        "Keep activation checkpointing off even when gradient_checkpointing is on (LLaMA-Factory turns it on "
        "by default).",
    )
    use_reentrant_gc: bool = arg(
        False,
        "Activation checkpointing with the re-entrant torch implementation (gradient_checkpointing_kwargs "
        "use_reentrant).",
        default_note="LLaMA-Factory defaults to true; transformers and tunesmith to the non-re-entrant one.",
    )
    low_cpu_mem_usage: bool = arg(
        True,
        "Load weights without a second copy in memory.",
        obsolete="transformers 5 always loads that way (weights go straight into the model)",
    )
    model_kwargs: dict[str, Any] | None = arg(
        None, "Extra model config values set before the model is built, e.g. {sliding_window: 4096}."
    )
    print_param_status: bool = arg(
        False, "Log every parameter's name, shape, dtype, device and whether it trains, before training."
    )
