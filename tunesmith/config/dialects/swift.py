"""ms-swift 4 (`swift sft|pt|rlhf ...`, `swift/arguments/**`, `swift/trainers/arguments.py`): its names,
conversions and ms-swift's own defaults."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tunesmith.config.dialects import cpo, notes, swift_options, swift_templates
from tunesmith.config.dialects.base import (
    Dialect,
    Entry,
    HomeDefault,
    alias,
    convert,
    convert_in_context,
    fixed,
    inert,
    refuse,
    refuse_all,
    truthy,
)
from tunesmith.utils import dist_env
from tunesmith.utils.errors import ConfigError

# swift rlhf_type -> tunesmith stage and preference loss.
RLHF_TYPES = {
    "dpo": {"stage": "dpo"},
    "orpo": {"stage": "dpo", "pref_loss": "orpo"},
    "kto": {"stage": "kto"},
    "rm": {"stage": "rm"},
}
CPO_TYPES = ("cpo", "simpo")  # ms-swift runs TRL's CPOTrainer for both
SFT_LOSSES = {"cross_entropy": "nll", "dft": "dft"}


def rlhf_type(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """`--rlhf_type dpo|orpo|simpo|cpo|kto|rm` -> stage (+ pref_loss); rollout types are refused."""
    key = str(value).strip().lower()
    if key in ("ppo", "grpo", "gkd", "gspo", "dapo", "rloo", "reinforce_plus_plus"):
        raise ConfigError(f"{key!r} {notes.ROLLOUT}")
    if key in CPO_TYPES:
        return cpo.swift_rlhf(key, context)
    if key not in RLHF_TYPES:
        raise ConfigError(f"{value!r} is not allowed; choose one of: {', '.join([*RLHF_TYPES, *CPO_TYPES])}")
    return RLHF_TYPES[key]


def loss_type(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """swift `loss_type`: a preference loss (sigmoid, hinge, ipo, ...) in rlhf (CPO's under rlhf_type cpo|simpo),
    or an SFT loss (dft)."""
    if cpo.for_cpo(context, "rlhf_type", CPO_TYPES):
        return cpo.loss_type(value)
    if isinstance(value, list | tuple):  # MPO-style `--loss_type sigmoid bco_pair sft` (with --loss_weights)
        return {"pref_loss": [str(v).strip().lower() for v in value]}
    key = str(value).strip().lower()
    if key in SFT_LOSSES:
        return {"use_dft_loss": True} if SFT_LOSSES[key] == "dft" else {}
    return {"pref_loss": key}


def quant_method(value: Any) -> dict[str, Any]:
    """`--quant_method bnb` is bitsandbytes (QLoRA with quant_bits); other methods are pre-quantised formats."""
    if str(value).strip().lower() != "bnb":
        raise ConfigError(f"{value!r}: {notes.QUANT_BACKEND}")
    return {}


def padding_free(value: Any) -> dict[str, Any]:
    """`--padding_free true` -> batching_strategy padding_free (packed rows, attention kept per sequence)."""
    return {"batching_strategy": "padding_free"} if truthy(value) else {}


def packing_strategy(value: Any) -> dict[str, Any]:
    """Best-fit packing (swift binpack, TRL bfd) is how tunesmith packs; TRL's wrapped blocks are stage pt."""
    key = str(value).strip().lower()
    if key in ("binpack", "bfd", "bfd_split"):
        return {}
    raise ConfigError(
        f"{value!r}: tunesmith packs whole examples best-fit (bfd); for wrapped blocks of plain "
        "text use stage: pt"
    )


def _invert(target: str):
    def fn(value: Any) -> dict[str, Any]:
        return {target: not truthy(value)}

    return fn


def _interleave(value: Any) -> dict[str, Any]:
    return {"interleave_probs": value, "mix_strategy": "interleave_under"}


def _stopping(value: Any) -> dict[str, Any]:
    key = str(value).strip().lower()
    modes = {"first_exhausted": "interleave_under", "all_exhausted": "interleave_over"}
    if key not in modes:
        raise ConfigError(f"{value!r} is not allowed; choose one of: {', '.join(modes)}")
    return {"mix_strategy": modes[key]}


LORA_INITS = ("true", "false", "gaussian", "pissa", "olora", "orthogonal")


def init_weights(value: Any) -> dict[str, Any]:
    """`--init_weights true|false|gaussian|pissa|pissa_niter_N|olora|orthogonal` -> init_lora_weights."""
    key = str(value).strip().lower()
    if key in ("true", "false"):
        return {"init_lora_weights": key == "true"}
    if key in LORA_INITS or key.startswith("pissa_niter_"):
        return {"init_lora_weights": key}
    raise ConfigError(
        f"{value!r}: this LoRA initialisation is not implemented; choose one of: "
        f"{', '.join(LORA_INITS)}, pissa_niter_<n>"
    )


LOSS_SCALES = {"default": {}, "last_round": {"mask_history": True}, "all": {"train_on_prompt": True}}


def loss_scale(value: Any) -> dict[str, Any]:
    """`--loss_scale [default|last_round|all+]scheme[+scheme...]`: the base strategy -> the prompt/history
    masking, the weighted schemes (react, hermes, ... ; `base` weighs 1) -> token_loss_weights."""
    parts = [p.strip() for p in str(value).split("+")]
    base = parts.pop(0).lower() if parts[0].lower() in LOSS_SCALES else "default"
    schemes = [p for p in parts if p and p != "base"]
    return {**LOSS_SCALES[base], **({"token_loss_weights": "+".join(schemes)} if schemes else {})}


# ms-swift tuners without a tunesmith counterpart (swift/tuners/): what each is, for the refusal.
SWIFT_TUNERS = {
    "adapter": "ms-swift's bottleneck Adapter tuner",
    "longlora": "LongLoRA (LoRA with shifted sparse attention)",
    "bone": "Bone (block-affine adaptation)",
    "fourierft": "FourierFT",
    "reft": "ReFT (representation fine-tuning, pyreft)",
    "dummy": "a tuner registered by an ms-swift plugin (external_plugins)",
}


def tuner_type(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """`--tuner_type` (`--train_type`) -> finetuning_type; ms-swift's llamapro is LLaMA-Pro expansion on full
    tuning (llamapro_num_new_blocks, 4 by default there): only the new blocks train."""
    key = str(value).strip().lower()
    if key == "llamapro":
        blocks = {} if context.get("llamapro_num_new_blocks") is not None else {"llamapro_num_new_blocks": 4}
        return {"finetuning_type": "full", **blocks}
    if key in SWIFT_TUNERS:
        raise ConfigError(
            f"{value!r} is {SWIFT_TUNERS[key]}, which tunesmith does not have; tuners here: full, freeze, lora, "
            "qlora, oft, boft, vera, adalora, llamapro"
        )
    return {"finetuning_type": key}


def lora_dtype(value: Any) -> dict[str, Any]:
    """`--lora_dtype AUTO` keeps the model's dtype (tunesmith's unset)."""
    return {"lora_dtype": None if str(value).strip().lower() == "auto" else value}


def _task_type(value: Any) -> dict[str, Any]:
    key = str(value).strip().lower()
    if key == "causal_lm":
        return {}
    if key == "seq_cls":
        raise ConfigError(
            "'seq_cls' classification is not trained here; a reward model is stage: rm (--rlhf_type rm)"
        )
    raise ConfigError(
        f"{value!r}: tunesmith trains causal language models (causal_lm) and reward models "
        "(--rlhf_type rm); embedding/reranker/generative-reranker tasks are not implemented"
    )


MULTIMODAL = refuse_all("max_pixels norm_bbox vit_lr aligner_lr", notes.MULTIMODAL) | {
    "freeze_llm": refuse(notes.MULTIMODAL, False),
    "freeze_vit": refuse(notes.MULTIMODAL, True),
    "freeze_aligner": refuse(notes.MULTIMODAL, True),
    "vit_gradient_checkpointing": refuse(notes.MULTIMODAL),
}
TUNERS = (
    refuse_all(
        "fourier_n_frequency fourier_scaling adapter_act adapter_length reft_layer_key reft_layers reft_rank "
        "reft_intervention_type reft_args",
        "configures an ms-swift tuner tunesmith does not have (FourierFT, Adapter, ReFT); LoRA, DoRA, OFT, "
        "VeRA, AdaLoRA and the freeze options run here",
    )
    | refuse_all(
        "lora_ga_batch_size lora_ga_iters lora_ga_max_length lora_ga_direction lora_ga_scale lora_ga_stable_gamma",
        "configures LoRA-GA initialisation, which is not implemented; PiSSA initialisation runs here (pissa_init)",
    )
    | {
        "use_swift_lora": refuse("selects ms-swift's own LoRA implementation; tunesmith uses peft's", False),
        "tuner_backend": fixed("peft", "adapters are peft's"),
    }
)
SWANLAB = refuse_all(
    "swanlab_notification_method swanlab_webhook_url swanlab_secret swanlab_sender_email swanlab_receiver_email "
    "swanlab_smtp_server swanlab_smtp_port",
    notes.REMOTE_LOG,
) | {"swanlab_email_language": refuse(notes.REMOTE_LOG, "zh")}
EVAL = refuse_all(
    "eval_use_evalscope eval_dataset_args eval_limit eval_generation_config extra_eval_args",
    notes.EVAL_HARNESS,
) | {
    "eval_metric": refuse(
        "selects an embedding/reranker metric; causal LM evaluation reports eval_loss, "
        "perplexity and accuracy, and compute_metrics takes your own"
    ),
    "mrl_dims": refuse("configures Matryoshka embedding training, which is not implemented"),
}
DATA = {
    "val_dataset": alias("eval_dataset"),
    "split_dataset_ratio": alias("val_size"),
    "dataset_num_proc": alias("preprocessing_num_workers"),
    "shuffle_buffer_size": alias("buffer_size"),
    "interleave_prob": convert(_interleave, "interleave_probs with mix_strategy interleave_under"),
    "stopping_strategy": convert(
        _stopping, "mix_strategy (first_exhausted: interleave_under; all_exhausted: interleave_over)"
    ),
    "load_from_cache_file": convert(_invert("overwrite_cache"), "overwrite_cache: not load_from_cache_file"),
    "dataset_shuffle": convert(_invert("disable_shuffling"), "disable_shuffling: not dataset_shuffle"),
    "train_dataloader_shuffle": convert(_invert("disable_shuffling"), "disable_shuffling: not this"),
    "val_dataset_shuffle": fixed(False, "evaluation data is read in order"),
    "cached_dataset": refuse(
        "reads datasets pre-tokenised by `swift export`; tunesmith caches its own "
        "tokenisation (tokenized_path); pass the raw dataset"
    ),
    "cached_val_dataset": refuse("reads datasets pre-tokenised by `swift export`; pass the raw eval_dataset"),
    "columns": refuse(
        "renames dataset columns for every dataset; name them per dataset in dataset_info.json "
        "('columns': {...}) or use an inline dataset spec with 'columns'"
    ),
    "custom_dataset_info": refuse(
        "is ms-swift's own registry format; register datasets in LLaMA-Factory's "
        "dataset_info.json format in dataset_dir"
    ),
    "lazy_tokenize": inert(
        "rows are tokenized ahead (in parallel, cached) instead of in the data loader: the same rows train in "
        "the same order, only the work happens earlier"
    ),
    "strict": fixed(True, "a malformed row always stops preprocessing with its file and line"),
    "disable_auto_column_mapping": fixed(False, "columns are detected unless dataset_info.json names them"),
    **refuse_all(
        "decision_drop_instructions decision_subsample_options decision_state_as_text "
        "decision_shuffle_fields",
        "configures ms-swift's decision-dataset augmentation, which is not implemented",
        0,
    ),
    "packing_num_proc": refuse(
        "sets ms-swift's packing processes; tunesmith packs in the batch builder (batching_workers)", 1
    ),
    "packing_strategy": convert(packing_strategy, "best-fit packing (binpack/bfd) is tunesmith's packing"),
    "padding_free": convert(padding_free, "batching_strategy: padding_free"),
}
MODEL = {
    "tuner_type": convert_in_context(
        tuner_type, "finetuning_type (llamapro: full with llamapro_num_new_blocks)"
    ),
    "train_type": convert_in_context(
        tuner_type, "finetuning_type (llamapro: full with llamapro_num_new_blocks)"
    ),
    "init_weights": convert(init_weights, "init_lora_weights"),
    "lora_dtype": convert(lora_dtype, "lora_dtype (AUTO: the model's)"),
    "model_kwargs": refuse(
        "passes model-specific options to ms-swift's model code as environment variables; "
        "tunesmith's model_kwargs sets model config values: state dialect: tunesmith to use "
        "that"
    ),
    "quant_method": convert(quant_method, "bnb: bitsandbytes, with quant_bits as quantization_bit"),
    "quant_bits": alias("quantization_bit"),
    "hqq_axis": refuse(notes.QUANT_BACKEND),
    "bnb_4bit_compute_dtype": convert_in_context(
        swift_options.bnb_4bit_compute_dtype, "4-bit layers compute in torch_dtype (sets it when unset)"
    ),
    "bnb_4bit_quant_storage": refuse(
        "sets the storage dtype of 4-bit weights (for FSDP+QLoRA); it is uint8 here"
    ),
    "model_type": refuse(
        "names an ms-swift model registration; tunesmith reads the architecture from the "
        "model's config.json: drop it"
    ),
    "task_type": convert(_task_type, "causal_lm"),
    "num_labels": refuse("configures sequence classification; a reward model is stage: rm"),
    "problem_type": refuse("configures sequence classification; a reward model is stage: rm"),
    "experts_impl": convert(swift_options.experts_impl, "grouped_mm: moe_grouped_gemm; eager: the default"),
    "new_special_tokens": alias("add_special_tokens"),
    "device_map": refuse(
        "places the model across devices for single-process model parallelism; training "
        "places it on the run's device (tp_size/fsdp_size split it across processes)"
    ),
    "max_memory": refuse("caps per-device memory for a device map; training places the model on its device"),
    "local_repo_path": refuse("points at a model's GitHub code; tunesmith runs transformers' implementation"),
    "init_strategy": refuse(
        "initialises weights missing from the checkpoint; tunesmith refuses checkpoints "
        "with missing weights (train_from_scratch initialises all)"
    ),
    "enable_npu_model_patch": refuse(notes.NPU, True),
}
TRAINING = {
    "optimizer": convert_in_context(
        swift_options.optimizer, "muon: optim_config {name: muon}; galore: use_galore; lorap: lorap_lr_ratio"
    ),
    "rlhf_type": convert_in_context(
        rlhf_type,
        "stage (dpo, kto, rm) and pref_loss (orpo; cpo, simpo: cpo*, simpo's beta 2.0 unless given)",
    ),
    "loss_type": convert_in_context(
        loss_type, "pref_loss for rlhf (sigmoid, hinge, ipo ...; cpo|simpo: cpo*); dft: use_dft_loss"
    ),
    "enable_dft_loss": alias("use_dft_loss"),
    "loss_scale": convert(
        loss_scale,
        "default: responses; last_round: mask_history; all: train_on_prompt; weighted schemes: token_loss_weights",
    ),
    "enable_channel_loss": refuse(
        "reports the loss per data channel; not implemented (eval_on_each_dataset "
        "gives a loss per eval dataset)"
    ),
    "safe_serialization": alias("save_safetensors"),
    "host": alias("api_host"),
    "port": alias("api_port"),
    "max_batch_size": alias("per_device_eval_batch_size"),
    "max_shard_size": refuse(
        "shards the weights saved by training; tunesmith writes the trained model whole and "
        "shards on export: tunesmith export OUTPUT_DIR export_size=GB",
        "5GB",
    ),
    "acc_strategy": fixed("token", "accuracy is per token"),
    "max_epochs": refuse("stops after N epochs regardless of max_steps; set num_train_epochs (or max_steps)"),
    "use_logits_to_keep": inert(
        "tunesmith's loss computes the logits only at positions with a label whenever the model allows it "
        "(the same loss either way)"
    ),
    "ds3_gather_for_generation": refuse(
        "gathers ZeRO-3 weights for generation; tunesmith evaluates with the "
        "loss, not generation, during ZeRO-3 runs",
        True,
    ),
    "callbacks": refuse("names ms-swift callback plugins; register your own with plugin_modules"),
    "early_stop_interval": alias("early_stopping_patience"),
    "use_flash_ckpt": refuse(
        "uses DLRover flash checkpoints; tunesmith writes atomic checkpoints "
        "(save_async for background writes)"
    ),
    "add_version": fixed(
        False,
        "tunesmith writes into output_dir itself (no v0-<time> subfolder); give each run its own output_dir",
    ),
    "create_checkpoint_symlink": refuse(
        "links the best/last checkpoint; tunesmith keeps the best one "
        "(load_best_model_at_end) and resume_from_checkpoint: auto finds the last"
    ),
    "load_args": refuse("reads the arguments saved with a checkpoint; pass the run's tunesmith_config.yaml"),
    "load_data_args": refuse(
        "reads the data arguments saved with a checkpoint; pass the run's tunesmith_config.yaml"
    ),
    "zero_hpz_partition_size": refuse(
        "is a ZeRO++ option; put it in your DeepSpeed JSON (zero_optimization.zero_hpz_partition_size)"
    ),
    "deepspeed_autotp_size": refuse("selects DeepSpeed AutoTP; tunesmith's tensor parallel is tp_size"),
    "external_plugins": refuse(
        "loads ms-swift plugin files; tunesmith plugins are Python modules named in plugin_modules"
    ),
    "custom_register_path": refuse(
        "registers ms-swift models/templates/datasets; use dataset_info.json and plugin_modules"
    ),
    "ignore_args_error": refuse("would ignore argument errors; tunesmith never does"),
    "use_hf": inert(
        "models and data are read from local paths (or the Hugging Face cache); no hub is "
        "contacted, so the choice of hub changes nothing"
    ),
    "check_model": inert("the check looks for model updates on ModelScope; runs here are offline"),
    "logprobs": refuse("returns token log-probabilities from inference; not implemented", False),
    "top_logprobs": refuse("returns token log-probabilities from inference; not implemented"),
    "structured_outputs_regex": refuse("constrains generation by a regex (vLLM); not implemented"),
    **refuse_all("ray_num_workers ray_init_kwargs", notes.RAY),
}
RLHF = {
    "beta": alias("pref_beta"),
    "ref_adapters": alias("ref_model_adapters"),
    "ref_model_type": refuse(
        "names an ms-swift model registration; the reference model's architecture comes "
        "from its config.json: drop it"
    ),
    "ref_model_revision": refuse("picks a hub revision; the reference model is read from a local path"),
    "discopop_tau": refuse(
        "belongs to the DiscoPOP loss, which is not implemented; use pref_loss sigmoid, "
        "ipo, hinge, orpo or simpo",
        0.05,
    ),
    **refuse_all(
        "lmbda seq_kd gkd_logits_topk teacher_model teacher_adapters teacher_model_type teacher_model_revision "
        "teacher_deepspeed teacher_model_server offload_teacher_model teacher_tag_key teacher_kl_coef sft_alpha",
        "configures GKD/on-policy distillation, which needs online generation; not implemented here",
    ),
}

ROLLOUTS = refuse_all(
    "max_completion_length num_generations reward_funcs reward_weights log_completions num_iterations "
    "epsilon epsilon_high delta cosine_min_len_value_wrong cosine_max_len_value_wrong "
    "cosine_min_len_value_correct cosine_max_len_value_correct cosine_max_len repetition_n_grams "
    "repetition_max_penalty reward_model_plugin chord_sft_dataset chord_sft_per_device_train_batch_size "
    "chord_enable_phi_function chord_mu_warmup_steps chord_mu_decay_steps chord_mu_peak chord_mu_valley "
    "multi_turn_scheduler max_turns completion_length_limit_scope use_gym_env gym_env dynamic_sample "
    "max_resample_times overlong_filter soft_max_length soft_cache_length scale_rewards log_entropy "
    "top_entropy_quantile importance_sampling_level tau_pos tau_neg advantage_estimator kl_in_reward "
    "advantage_reweight rlsd_lambda rlsd_reweight_clip_range rlsd_lambda_warmup_steps "
    "rlsd_lambda_decay_steps rlsd_negative_only sdar_loss_coef sdar_gate_beta real_tau fipo_decay_rate "
    "fipo_clip_range fipo_clip_high_only fipo_safety_threshold num_generations_eval "
    "rollout_importance_sampling_mode rollout_importance_sampling_threshold log_rollout_offpolicy_metrics "
    "off_policy_sequence_mask_delta min_p wandb_log_unique_prompts generation_batch_size "
    "steps_per_generation num_ppo_epochs whiten_rewards kl_coef cliprange vf_coef cliprange_value gamma "
    "lam num_mini_batches local_rollout_forward_batch_size num_sample_generations response_length "
    "missing_eos_penalty reward_adapters reward_model_revision reward_template reward_model reward_model_type",
    notes.ROLLOUT,
) | refuse_all(
    "vllm_server_pass_dataset use_vllm vllm_mode vllm_max_num_seqs vllm_enable_prefix_caching "
    "vllm_enable_lora vllm_server_base_url vllm_server_host vllm_server_port vllm_server_timeout "
    "vllm_server_group_port enable_flattened_weight_sync async_generate sleep_level move_model_batches "
    "offload_optimizer offload_model vllm_gpu_memory_utilization vllm_tensor_parallel_size "
    "vllm_pipeline_parallel_size vllm_enable_expert_parallel vllm_max_model_len "
    "vllm_disable_custom_all_reduce vllm_limit_mm_per_prompt vllm_use_async_engine vllm_quantization "
    "vllm_reasoning_parser vllm_disable_cascade_attn vllm_mm_processor_cache_gb vllm_speculative_config "
    "vllm_engine_kwargs vllm_data_parallel_size",
    notes.VLLM,
)

GALORE = {
    "galore_target_modules": alias("galore_target"),
    "galore_update_proj_gap": alias("galore_update_interval"),
    "galore_optim_per_parameter": refuse(
        "gives each parameter an optimizer stepped at the end of the step, with the projection interval and the "
        "schedule's length doubled; use_galore without it makes the same updates with one optimizer "
        "(galore_layerwise steps each parameter inside backward, with accumulation 1)"
    ),
    "galore_with_embedding": refuse(
        "also projects the embedding's gradient; GaLore here projects the linear "
        "layers named by galore_target",
        False,
    ),
    **refuse_all(
        "galore_quantization galore_proj_quant galore_proj_bits galore_proj_group_size galore_cos_threshold "
        "galore_gamma_proj galore_queue_size",
        "configures Q-GaLore (quantised projections), which is not implemented; plain GaLore runs here "
        "(use_galore, galore_rank, galore_update_interval)",
    ),
}

NAMES: dict[str, Entry] = {
    **ROLLOUTS,
    **GALORE,
    **MULTIMODAL,
    **TUNERS,
    **SWANLAB,
    **EVAL,
    **DATA,
    **swift_templates.TEMPLATE_ARGUMENTS,
    **MODEL,
    **TRAINING,
    **RLHF,
}

MARKERS = frozenset(
    {
        "tuner_type",
        "split_dataset_ratio",
        "dataset_num_proc",
        "lazy_tokenize",
        "model_author",
        "model_name",
        "rlhf_type",
        "quant_method",
        "quant_bits",
        "lorap_lr_ratio",
        "freeze_vit",
        "freeze_llm",
        "freeze_aligner",
        "val_dataset",
        "loss_scale",
        "sequence_parallel_size",
        "packing_length",
        "tuner_backend",
        "enable_dft_loss",
        "init_weights",
        "add_version",
        "use_hf",
    }
)


def _accumulation(get: Any) -> int:
    return max(1, math.ceil(16 / int(get("per_device_train_batch_size")) / dist_env.world_size()))


def _learning_rate(get: Any) -> float:
    return 1e-5 if get("finetuning_type") == "full" else 1e-4


def _eval_strategy(get: Any) -> str:
    return str(get("save_strategy")) if get("val_size") or get("eval_dataset") else "no"


def _eval_steps(get: Any) -> int | None:
    return get("save_steps") if _eval_strategy(get) == "steps" else get("eval_steps")


def _bf16(get: Any) -> bool:
    return str(get("torch_dtype")).removeprefix("torch.") in ("bfloat16", "bf16")


DEFAULTS = {
    "bf16": HomeDefault(fn=_bf16, why="ms-swift trains in bf16 mixed precision when torch_dtype is bfloat16"),
    "eval_strategy": HomeDefault(
        fn=_eval_strategy,
        why="ms-swift evaluates at save_strategy when there is an eval set (split or given)",
    ),
    "eval_steps": HomeDefault(fn=_eval_steps, why="ms-swift evaluates every save_steps when it evaluates"),
    "finetuning_type": HomeDefault("lora", why="ms-swift's tuner_type defaults to lora"),
    "per_device_train_batch_size": HomeDefault(1, why="ms-swift's per_device_train_batch_size defaults to 1"),
    "per_device_eval_batch_size": HomeDefault(1, why="ms-swift's per_device_eval_batch_size defaults to 1"),
    "gradient_accumulation_steps": HomeDefault(
        fn=_accumulation, why="ms-swift takes ceil(16 / (batch size x world size)) when unset"
    ),
    "learning_rate": HomeDefault(fn=_learning_rate, why="ms-swift: 1e-5 for full fine-tuning, else 1e-4"),
    "lr_scheduler_type": HomeDefault("cosine", why="ms-swift's lr_scheduler_type defaults to cosine"),
    "weight_decay": HomeDefault(0.1, why="ms-swift's weight_decay defaults to 0.1"),
    "gradient_checkpointing": HomeDefault(True, why="ms-swift turns gradient checkpointing on by default"),
    "lora_dropout": HomeDefault(0.05, why="ms-swift's lora_dropout defaults to 0.05"),
    "logging_steps": HomeDefault(5, why="ms-swift logs every 5 steps by default"),
    "logging_first_step": HomeDefault(True, why="ms-swift logs the first step by default"),
}

# `max_length` is tunesmith's cutoff_len alias and means the same in ms-swift: no override needed.
# tunesmith names that ms-swift spells with other values or another meaning.
DIALECT = Dialect(
    "swift",
    "ms-swift",
    NAMES,
    MARKERS,
    DEFAULTS,
    overrides=frozenset(
        {
            "train_type",
            "lora_dtype",
            "model_kwargs",
            "optimizer",
            "lazy_tokenize",
            "template",
            "enable_thinking",
        }
    ),
)
