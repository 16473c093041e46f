"""TrainingArguments: stage, batch sizes, optimizer, schedule, precision, loss, data loading and engines.

Evaluation, checkpoint, logging and hub fields come from `EvalSaveLogArguments` (training_io.py); the two are
combined at the end of this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.config.arguments.training_io import EvalSaveLogArguments
from tunesmith.config.fields import arg

OPTIMIZERS = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_8bit",
    "paged_adamw_8bit",
    "adafactor",
    "sgd",
    "lion",
    "adagrad",
    "rmsprop",
    "adamw_bnb_8bit",
    "paged_adamw_32bit",
    "lion_32bit",
    "lion_8bit",
    "paged_lion_32bit",
    "paged_lion_8bit",
    "rmsprop_bnb",
    "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit",
    "ademamix",
    "ademamix_8bit",
    "galore_adamw",
    "galore_adamw_8bit",
    "galore_adafactor",
    "apollo_adamw",
    "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise",
    "galore_adafactor_layerwise",
    "apollo_adamw_layerwise",
)
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "cosine_with_min_lr",
    "warmup_stable_decay",
    "inverse_sqrt",
)
_REMOVED_FROM_HF = "transformers 5 removed it"


@dataclass
class TrainingLoopArguments:
    """How training runs: what to do, batch sizes, optimisation, precision, loss and the distributed engine."""

    # --- what to run ----------------------------------------------------------------------------------------------
    stage: str = arg(
        "sft",
        "Training stage: pt (pre-training), sft (fine-tuning), dpo (preference pairs, by pref_loss), kto or rm "
        "(reward model).",
        choices=("pt", "sft", "dpo", "kto", "rm"),
        sources="003",
    )
    dialect: str = arg(
        "auto",
        "System the config is written for (its names and defaults); auto detects it from keys only one system "
        "writes.",
        choices=("auto", "tunesmith", "hf", "trl", "lf", "lf_v1", "swift", "mindspeed"),
    )
    do_train: bool = arg(
        False, "Run training (read by scripts; `tunesmith train` always trains).", sources="001"
    )
    do_eval: bool | None = arg(
        None, "Run evaluation; unset means true when eval_strategy is not no.", sources="001"
    )
    do_predict: bool = arg(False, "Run prediction on the test split.", sources="001")
    output_dir: str = arg(
        "trainer_output",
        "Directory for checkpoints, logs, plots and the final model.",
        sources="000,001,002,003,004",
        default_note="HF's default; LLaMA-Factory v1 makes a random outputs/<hex> dir, MindSpeed requires it.",
    )
    plugin_modules: list[str] = arg(
        help="Python modules imported before validation, so they can register their own plugins.",
        factory=list,
    )
    seed: int = arg(42, "Random seed set at the start of training.", sources="001,002,003")
    data_seed: int | None = arg(None, "Seed of the data sampler; unset uses seed.", sources="001")
    full_determinism: bool = arg(
        False, "Use deterministic algorithms everywhere (slower) for bit-reproducible runs.", sources="001"
    )
    use_cpu: bool = arg(False, "Train on the CPU even when an accelerator is available.", sources="001")

    # --- batch size and length ------------------------------------------------------------------------------------
    per_device_train_batch_size: int = arg(
        8,
        "Examples (or packed rows) per device per forward/backward pass.",
        aliases=("micro_batch_size",),
        minimum=1,
        sources="000,001,002,003,004",
        default_note="HF and MindSpeed use 8; LLaMA-Factory v1's micro_batch_size defaults to 1.",
    )
    per_device_eval_batch_size: int = arg(
        8, "Examples per device per evaluation batch.", minimum=1, sources="001,002,004"
    )
    gradient_accumulation_steps: int = arg(
        1, "Micro-batches accumulated per optimizer step.", minimum=1, sources="001,002,003,004"
    )
    global_batch_size: int | None = arg(
        None,
        "Examples per optimizer step over all ranks; sets gradient_accumulation_steps. Unset: dp x micro x accumulation.",
        minimum=1,
        sources="000",
    )
    auto_find_batch_size: bool = arg(
        False, "On out-of-memory, halve the batch size and retry.", sources="001"
    )
    num_train_epochs: float = arg(
        3.0,
        "Epochs to train; a fraction stops part-way through the last epoch.",
        minimum=0,
        sources="000,001,002,003,004",
    )
    max_steps: int = arg(
        -1,
        "Optimizer steps to train; a positive value overrides num_train_epochs, -1 (or null) means use epochs.",
        aliases=("train_iters",),
        sources="000,001,002,003",
        default_note="HF and MindSpeed use -1; LLaMA-Factory v1 writes null, which means the same.",
    )

    # --- optimizer ------------------------------------------------------------------------------------------------
    optim: str = arg(
        "adamw_torch",
        "Optimizer; optim_config selects a plugin optimizer instead.",
        aliases=("optimizer",),
        choices=OPTIMIZERS,
        value_aliases={"adamw": "adamw_torch", "adamw_hf": "adamw_torch"},
        sources="001,002,003",
        default_note="HF's default; MindSpeed's adamw and the old adamw_hf mean the same.",
    )
    optim_args: str | dict[str, Any] | None = arg(
        None, "Extra optimizer options: a dict, or HF's 'key=value,key=value' string.", sources="001,002"
    )
    optim_target_modules: str | list[str] | None = arg(
        None, "Modules the optimizer applies to (GaLore/APOLLO-style optimizers).", sources="001"
    )
    optim_config: dict[str, Any] | None = arg(
        None, "Optimizer plugin: {name: ..., <its parameters>}; replaces optim.", sources="000"
    )
    learning_rate: float = arg(
        5e-5,
        "Peak learning rate.",
        aliases=("lr",),
        minimum=0,
        sources="000,001,002,003,004",
        default_note="HF's default; LLaMA-Factory v1 uses 1e-4, MindSpeed 1e-5.",
    )
    weight_decay: float = arg(
        0.0,
        "Decoupled weight decay (not applied to biases and norm weights).",
        minimum=0,
        sources="001,003",
        default_note="HF's default; MindSpeed uses 0.01.",
    )
    adam_beta1: float = arg(0.9, "Adam beta1.", minimum=0, maximum=1, sources="001,003")
    adam_beta2: float = arg(
        0.999,
        "Adam beta2.",
        minimum=0,
        maximum=1,
        sources="001,003",
        default_note="HF/torch default; MindSpeed uses 0.95.",
    )
    adam_epsilon: float = arg(1e-8, "Adam epsilon.", minimum=0, sources="001,003")
    max_grad_norm: float = arg(
        1.0,
        "Clip the global gradient norm to this; 0 disables clipping.",
        minimum=0,
        sources="000,001,003,004",
    )

    # --- learning-rate schedule -----------------------------------------------------------------------------------
    lr_scheduler_type: str = arg(
        "linear",
        "Learning-rate schedule after warmup.",
        aliases=("lr_decay_style",),
        choices=SCHEDULERS,
        value_aliases={"inverse-square-root": "inverse_sqrt", "WSD": "warmup_stable_decay"},  # Megatron names
        sources="001,002,003",
        default_note="HF's default; MindSpeed uses cosine.",
    )
    lr_scheduler_kwargs: dict[str, Any] = arg(
        help="Extra schedule options, e.g. {num_cycles: 2} for cosine_with_restarts.",
        factory=dict,
        sources="001",
    )
    lr_scheduler_config: dict[str, Any] | None = arg(
        None, "Schedule plugin: {name: ..., <its parameters>}; replaces lr_scheduler_type.", sources="000"
    )
    warmup_ratio: float = arg(
        0.0,
        "Fraction of the total steps spent warming up linearly from 0.",
        aliases=("lr_warmup_fraction",),
        minimum=0,
        maximum=1,
        sources="001,002,003,004",
        default_note="HF's default; MindSpeed uses 0.03.",
    )
    warmup_steps: int | float = arg(
        0,
        "Warmup steps; wins over warmup_ratio. A value below 1 is a fraction of the total steps (transformers 5).",
        minimum=0,
        sources="001,002",
    )
    learning_rate_end: float | None = arg(
        None,
        "Final learning rate of cosine/polynomial schedules; unset means 0 for cosine and 1e-7 for polynomial.",
        aliases=("min_lr",),
        minimum=0,
        sources="002,003",
        default_note="HF's behaviour; MindSpeed's min_lr defaults to 1e-6.",
    )
    power: float = arg(
        1.0, "Exponent of the polynomial schedule.", minimum=0, exclusive_minimum=True, sources="002"
    )

    # --- precision and speed --------------------------------------------------------------------------------------
    bf16: bool = arg(
        False, "Train with bfloat16 autocast (weights and optimizer stay float32).", sources="000,001,002,003"
    )
    fp16: bool = arg(False, "Train with float16 autocast and loss scaling.", sources="001,002")
    bf16_full_eval: bool = arg(False, "Evaluate with the whole model cast to bfloat16.", sources="001")
    fp16_full_eval: bool = arg(False, "Evaluate with the whole model cast to float16.", sources="001,002")
    half_precision_backend: str = arg(
        "auto",
        "Mixed-precision backend; apex is not supported (use auto).",
        choices=("auto", "apex", "cpu_amp"),
        sources="001",
    )
    tf32: bool | None = arg(
        None, "Allow TF32 matmuls on NVIDIA Ampere or newer; no effect on CPU.", sources="001,002"
    )
    fp16_opt_level: str = arg(
        "O1",
        "Apex AMP level.",
        sources="001",
        obsolete="Apex AMP is not supported; fp16 uses torch autocast.",
    )
    gradient_checkpointing: bool = arg(
        False,
        "Recompute activations in backward: less memory, somewhat slower steps.",
        aliases=("enable_activation_checkpointing", "recompute"),
        sources="000,001,002,003,004",
        default_note="HF and MindSpeed default to false; LLaMA-Factory (v0 and v1), ms-swift and TRL to true.",
    )
    gradient_checkpointing_kwargs: dict[str, Any] | None = arg(
        None, "Options of activation checkpointing, e.g. {use_reentrant: false}.", sources="001,002"
    )
    torch_compile: bool = arg(False, "Compile the model with torch.compile.", sources="001")
    torch_compile_backend: str | None = arg(
        None,
        "torch.compile backend (e.g. inductor); setting it turns torch_compile on, as in HF.",
        aliases=("torchdynamo",),
        sources="001",
    )
    torch_compile_mode: str | None = arg(
        None,
        "torch.compile mode; setting it turns torch_compile on, as in HF.",
        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
        sources="001",
    )
    torch_empty_cache_steps: int | None = arg(
        None, "Empty the accelerator memory cache every this many steps.", minimum=1, sources="001"
    )

    # --- loss -----------------------------------------------------------------------------------------------------
    average_tokens_across_devices: bool = arg(
        True,
        "Normalise the loss by the label tokens of all data-parallel ranks, not this rank's.",
        sources="001",
    )
    calculate_per_token_loss: bool = arg(
        False,
        "MindSpeed: scale the loss by the non-padding tokens of the global batch.",
        sources="003",
        default_note="effective default: per-token loss (tunesmith's normalisation); only an explicit false "
        "switches to MindSpeed's per-micro-batch mean.",
    )
    chunk_loss_size: int | None = arg(
        None, "Compute the loss over sequence chunks of this length to save memory.", minimum=1, sources="003"
    )
    label_smoothing_factor: float = arg(
        0.0, "Label smoothing; 0 disables it.", minimum=0, maximum=1, sources="001"
    )
    neftune_noise_alpha: float | None = arg(
        None, "NEFTune: add noise of this scale to input embeddings while training.", minimum=0, sources="001"
    )

    # --- batching and data loading --------------------------------------------------------------------------------
    batching_strategy: str = arg(
        "normal",
        "How micro-batches are built: normal (padded), padding_free, dynamic_batching, dynamic_padding_free, or a "
        "strategy registered by a plugin module.",
        sources="000",
    )
    batching_workers: int = arg(16, "Worker threads that build batches.", minimum=0, sources="000")
    group_by_length: bool = arg(
        False, "Batch examples of similar length together to reduce padding.", sources="001"
    )
    length_column_name: str = arg(
        "length", "Column with precomputed lengths for group_by_length.", sources="001"
    )
    disable_shuffling: bool = arg(
        False, "Do not shuffle the training data.", aliases=("no_shuffle",), sources="003"
    )
    dataloader_num_workers: int = arg(
        0,
        "Threads building batches (sets batching_workers); 0 builds them in the training thread.",
        minimum=0,
        sources="001,003,004",
    )
    dataloader_prefetch_factor: int | None = arg(
        None, "Batches each batch-building thread prepares ahead (unset: 2).", minimum=1, sources="001,003"
    )
    dataloader_pin_memory: bool = arg(
        True, "Pin batch memory for faster host-to-GPU copies (on CUDA machines).", sources="001,003"
    )
    dataloader_persistent_workers: bool = arg(
        False, "Keep the batch-building threads alive between epochs.", sources="001,003"
    )
    dataloader_drop_last: bool = arg(False, "Drop the last incomplete batch.", sources="001,003")
    remove_unused_columns: bool = arg(
        True, "Drop dataset columns the model's forward does not take.", sources="001"
    )
    label_names: list[str] | None = arg(
        None, "Batch keys that hold labels; unset means labels.", sources="001"
    )

    # --- distributed engine ---------------------------------------------------------------------------------------
    dist_config: dict[str, Any] | None = arg(
        None, "Distributed engine plugin: {name: fsdp2 | deepspeed, <its parameters>}.", sources="000"
    )
    deepspeed: str | dict[str, Any] | None = arg(
        None, "DeepSpeed config (JSON file or dict); selects the DeepSpeed engine.", sources="001"
    )
    fsdp: bool | str | list[str] = arg(
        help="HF FSDP options (e.g. full_shard auto_wrap, or true); enabling it selects FSDP2.",
        factory=list,
        sources="001",
    )
    fsdp_config: str | dict[str, Any] | None = arg(None, "HF FSDP config (JSON file or dict).", sources="001")

    # --- transformers fields that no longer apply -----------------------------------------------------------------
    use_mps_device: bool = arg(
        False,
        "Train on Apple MPS.",
        sources="001",
        obsolete=f"{_REMOVED_FROM_HF}; the device is chosen automatically (use_cpu forces the CPU).",
    )
    tpu_num_cores: int | None = arg(None, "TPU cores.", sources="001", obsolete="TPUs are not supported.")
    jit_mode_eval: bool = arg(
        False,
        "Trace the model with torch.jit for inference.",
        sources="001",
        obsolete=f"{_REMOVED_FROM_HF}; use torch_compile.",
    )
    ray_scope: str = arg(
        "last",
        "Ray Tune hyperparameter-search scope.",
        sources="001",
        obsolete="hyperparameter search with Ray is not supported.",
    )
    past_index: int = arg(
        -1,
        "Output index of past hidden states (TransformerXL, XLNet).",
        sources="001",
        obsolete=f"{_REMOVED_FROM_HF}; causal LMs do not use it.",
    )
    debug: str | list[str] = arg(
        "", "Debug options: underflow_overflow (detect inf/nan in activations).", sources="001"
    )


@dataclass
class TrainingArguments(EvalSaveLogArguments, TrainingLoopArguments):
    """All training options: the loop fields first, then evaluation, checkpoint, logging and hub fields."""
