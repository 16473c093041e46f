"""LLaMA-Factory v0 (`llamafactory-cli train config.yaml`, `src/llamafactory/hparams/*_args.py`): the names
tunesmith does not have under the same spelling, and LLaMA-Factory's own defaults."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from typing import Any

from tunesmith.config.dialects import notes
from tunesmith.config.dialects.base import (
    Dialect,
    Entry,
    HomeDefault,
    adam_muon,
    alias,
    convert,
    convert_in_context,
    fixed,
    inert,
    refuse,
    truthy,
)
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")

ATTENTION = {
    "auto": None,
    "disabled": "eager",
    "eager": "eager",
    "sdpa": "sdpa",
    "fa2": "flash_attention_2",
    "fa3": "flash_attention_3",
    "flash_attention_2": "flash_attention_2",  # LLaMA-Factory v1 spells the values as transformers does
    "flash_attention_3": "flash_attention_3",
}


def flash_attn_strict(value: Any) -> dict[str, Any]:
    """`flash_attn: auto|disabled|sdpa|fa2|fa3` -> attn_impl (auto keeps transformers' choice, sdpa); a flash
    kernel this machine lacks is refused when the model loads (LLaMA-Factory v1 passes it to transformers)."""
    key = str(value).strip().lower()
    if key not in ATTENTION:
        raise ConfigError(f"{value!r} is not allowed; choose one of: {', '.join(ATTENTION)}")
    return {"attn_impl": ATTENTION[key]}


FLASH_MODULES = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}


def _flash_missing(impl: str | None) -> str | None:
    """Why FlashAttention `impl` cannot run on this machine (None: it can, or `impl` is no flash kernel)."""
    if impl not in FLASH_MODULES:
        return None
    import torch  # only for a flash request: reading a config needs no torch otherwise

    if not torch.cuda.is_available():
        return "no CUDA GPU"
    if importlib.util.find_spec(FLASH_MODULES[impl]) is None:
        return f"the {FLASH_MODULES[impl]} package is not installed"
    return None


def flash_attn(value: Any) -> dict[str, Any]:
    """LF v0 `flash_attn`: as `flash_attn_strict`, but FlashAttention missing here (no CUDA GPU or no package)
    falls back to sdpa with a warning, as LLaMA-Factory v0 does (`configure_attn_implementation`)."""
    mapped = flash_attn_strict(value)
    missing = _flash_missing(mapped["attn_impl"])
    if missing is None:
        return mapped
    logger.warning(
        "LLaMA-Factory v0's flash_attn: %s: %s, so attention runs as sdpa (LLaMA-Factory falls back the same way)",
        value,
        missing,
    )
    return {"attn_impl": "sdpa"}


def _evaluates_only(name: str):
    """LF `do_eval` / `do_predict` in a config without `do_train`: LF trains only with `do_train: true` (HF's
    default is false), so such a config evaluates or predicts the loaded model only."""

    def fn(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
        if truthy(value) and "do_train" not in context:
            return {name: value, "do_train": False}
        return {name: value}

    return fn


def _quantization_method(value: Any) -> dict[str, Any]:
    if str(value).strip().lower() not in ("bnb", "bitsandbytes"):
        raise ConfigError(f"{value!r}: {notes.QUANT_BACKEND}")
    return {}


def _swanlab_switch(value: Any) -> dict[str, Any]:
    return {"report_to": "swanlab"} if truthy(value) else {}


def _pure_bf16(value: Any) -> dict[str, Any]:
    """LF `pure_bf16`: weights and compute in bf16, no fp32 master copy."""
    return {"torch_dtype": "bfloat16", "bf16": False} if truthy(value) else {}


def _profiler(value: Any) -> dict[str, Any]:
    return {"profile": True} if truthy(value) else {}


def _muon(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    return adam_muon(context) if truthy(value) else {}


def _profile_start(name: str):
    """LF profiles after wait + warm-up steps (1 + 1 by default); other counts have no tunesmith equivalent."""

    def fn(value: Any) -> dict[str, Any]:
        if int(value) != 1:
            raise ConfigError(
                f"set profile_step_start and profile_step_end instead ({name} counts steps of torch.profiler's "
                "schedule; tunesmith records one window of steps)"
            )
        return {}

    return fn


def _profile_active(value: Any) -> dict[str, Any]:
    return {"profile_step_start": 2, "profile_step_end": 2 + int(value)}


def _early_stopping(value: Any) -> dict[str, Any]:
    """LF `early_stopping_steps: N`: stop after N evaluations without improvement."""
    return {"early_stopping_patience": value}


_PPO = {
    name: refuse(notes.ROLLOUT)
    for name in (
        "ppo_buffer_size",
        "ppo_epochs",
        "ppo_score_norm",
        "ppo_target",
        "ppo_whiten_rewards",
        "reward_model",
        "reward_model_adapters",
        "reward_model_quantization_bit",
        "reward_model_type",
    )
}
_MULTIMODAL = {
    name: refuse(notes.MULTIMODAL)
    for name in (
        "media_dir",
        "image_max_pixels",
        "image_min_pixels",
        "image_do_pan_and_scan",
        "crop_to_patches",
        "video_max_pixels",
        "video_min_pixels",
        "video_fps",
        "video_maxlen",
        "use_audio_in_video",
        "audio_sampling_rate",
        "freeze_vision_tower",
        "freeze_multi_modal_projector",
        "freeze_language_model",
    )
}
_EVAL_HARNESS = {
    name: refuse(notes.EVAL_HARNESS)
    for name in ("task", "task_dir", "batch_size", "lang", "n_shot", "save_dir", "download_mode")
}
_ENGINES = {
    **{
        name: refuse(notes.VLLM)
        for name in (
            "vllm_maxlen",
            "vllm_gpu_util",
            "vllm_enforce_eager",
            "vllm_max_lora_rank",
            "vllm_config",
            "sglang_maxlen",
            "sglang_mem_fraction",
            "sglang_tp_size",
            "sglang_config",
            "sglang_lora_backend",
        )
    },
    **{
        name: refuse(
            "offloads MoE experts to the CPU through KTransformers, which tunesmith does not use; expert parallel "
            "(ep_size) and FSDP2 CPU offload run here"
        )
        for name in (
            "use_kt",
            "kt_cpu_activation",
            "kt_weight_path",
            "kt_non_expert_weight_path",
            "kt_expert_checkpoint_path",
            "kt_use_lora_experts",
            "kt_lora_expert_num",
            "kt_lora_expert_intermediate_size",
        )
    },
    **{
        name: refuse(notes.MEGATRON)
        for name in (
            "use_mca",
            "use_megatron_bridge",
            "megatron_bridge_args",
            "use_hyper_parallel",
            "hyper_parallel_args",
            "hyper_parallel_cp_size",
            # MegatronBridgeArguments (LLaMA-Factory main): only read with use_megatron_bridge
            "pipeline_model_parallel_size",
            "virtual_pipeline_model_parallel_size",
            "sequence_parallel",
            "recompute_granularity",
            "recompute_method",
            "recompute_num_layers",
            "account_for_embedding_in_pipeline_split",
            "account_for_loss_in_pipeline_split",
            "bias_activation_fusion",
            "apply_rope_fusion",
            "masked_softmax_fusion",
            "cross_entropy_loss_fusion",
            "moe_token_dispatcher_type",
            "use_distributed_optimizer",
            "overlap_param_gather",
            "overlap_grad_reduce",
            "use_packed_sequences",
            "mixed_precision",
            "megatron_pretrained_checkpoint",
            "export_hf_on_finish",
            "extra_config",
        )
    },
    **{name: refuse(notes.RAY) for name in ("ray_num_workers", "ray_init_kwargs")},
    "master_addr": refuse("is read from the environment (MASTER_ADDR) by torchrun; set it there"),
    "master_port": refuse("is read from the environment (MASTER_PORT) by torchrun; set it there"),
}
_FP8 = {
    name: refuse(
        "needs FP8 kernels (Hopper GPUs with Transformer Engine or torchao); use bf16, or QLoRA for memory"
    )
    for name in ("fp8", "fp8_backend", "fp8_enable_fsdp_float8_all_gather")
}

NAMES: dict[str, Entry] = {
    **_PPO,
    **_MULTIMODAL,
    **_EVAL_HARNESS,
    **_ENGINES,
    **_FP8,
    "flash_attn": convert(
        flash_attn,
        "attn_impl (auto: transformers' default; disabled: eager; fa2: flash_attention_2, or sdpa with a "
        "warning where FlashAttention cannot run, as LLaMA-Factory v0 falls back)",
    ),
    "enable_liger_kernel": alias("use_liger_kernel"),
    "quantization_method": convert(_quantization_method, "bnb is the quantisation backend here (QLoRA)"),
    "quantization_device_map": refuse(
        "places the quantised model with a device map, which training here "
        "does not use; the model goes to the run's device"
    ),
    "shift_attn": refuse(
        "turns on LongLoRA's shifted sparse attention, which is not implemented; use "
        "rope_scaling for longer contexts"
    ),
    "mixture_of_depths": refuse("converts the model to mixture-of-depths, which is not implemented"),
    "use_unsloth": refuse(notes.UNSLOTH),
    "use_unsloth_gc": refuse(notes.UNSLOTH),
    "use_v1_kernels": inert(
        "LLaMA-Factory v0 applies v1's automatic kernels with it, which are Ascend NPU fused operators only "
        "(none on CPU or CUDA); tunesmith runs on CPU and CUDA GPUs"
    ),
    "adapter_folder": refuse(
        "is a folder of adapters for multi-adapter inference; name the adapters with adapter_name_or_path"
    ),
    "offload_folder": refuse(
        "offloads weights to disk with accelerate's device map, which training here does "
        "not use; use FSDP2 CPU offload or DeepSpeed offload"
    ),
    "block_diag_attn": alias("neat_packing"),
    "compute_dtype": refuse("is set by LLaMA-Factory itself from bf16/fp16; set bf16 or fp16 instead"),
    "pure_bf16": convert(_pure_bf16, "torch_dtype bfloat16 without autocast (weights and compute in bf16)"),
    "use_swanlab": convert(_swanlab_switch, "report_to: swanlab"),
    "swanlab_run_name": alias("swanlab_exp_name"),
    "swanlab_api_key": alias("swanlab_token"),
    "swanlab_workspace": refuse(
        "is a SwanLab cloud workspace; tunesmith's SwanLab backend logs locally "
        "(swanlab_mode: local); drop it"
    ),
    "swanlab_logdir": refuse("moves SwanLab's folder; tunesmith writes it under output_dir"),
    "swanlab_lark_webhook_url": refuse(notes.REMOTE_LOG),
    "swanlab_lark_secret": refuse(notes.REMOTE_LOG),
    "enable_torch_profiler": convert(_profiler, "profile: true"),
    "profiler_output_dir": alias("profile_save_path"),
    "profiler_record_shapes": alias("profile_record_shapes"),
    "profiler_profile_memory": alias("profile_with_memory"),
    "profiler_with_stack": alias("profile_with_stack"),
    "early_stopping_steps": convert(_early_stopping, "early_stopping_patience"),
    "use_muon": convert_in_context(
        _muon, "optim_config: {name: muon, decay_all: true} with adam_beta1/2 and adam_epsilon"
    ),
    "include_effective_tokens_per_second": alias("include_tokens_per_second"),
    "profiler_wait_steps": convert(_profile_start("profiler_wait_steps"), "profile_step_start"),
    "profiler_warmup_steps": convert(_profile_start("profiler_warmup_steps"), "profile_step_start"),
    "profiler_active_steps": convert(
        _profile_active, "profile_step_end (after the default wait and warm-up)"
    ),
    "profiler_repeat": fixed(1, "the profiler records one window (profile_step_start .. profile_step_end)"),
    "profile_modules": refuse("names modules to profile separately; the profiler records the whole step"),
    "pref_bco_weight": refuse(
        "mixes BCO's loss into DPO, which is not implemented; the paired BCO loss runs as "
        "pref_loss: bco_pair",
        0.0,
    ),
    "use_kv_cache": fixed(True, "generation always uses the KV cache"),
    **{
        name: refuse(
            "quantises the exported model with GPTQ, which is not implemented; export in full precision "
            "(tunesmith export) and quantise it with a GPTQ tool"
        )
        for name in (
            "export_quantization_bit",
            "export_quantization_dataset",
            "export_quantization_nsamples",
            "export_quantization_maxlen",
        )
    },
    "max_length": refuse(
        "is the total length of generated sequences in LLaMA-Factory; set max_new_tokens for "
        "generation and cutoff_len for training",
        1024,
    ),
    **{
        name: convert_in_context(
            _evaluates_only(name),
            f"{name}; without do_train in the config it runs alone, as LLaMA-Factory trains only with do_train",
        )
        for name in ("do_eval", "do_predict")
    },
    "plot_loss": fixed(True, "tunesmith always writes the loss plot (training_loss.png) into output_dir"),
    "compute_accuracy": fixed(True, "evaluation always reports token accuracy (eval_accuracy)"),
}

# Spellings only LLaMA-Factory v0 configs use (tunesmith's own examples use none of them).
MARKERS = frozenset(
    {
        "plot_loss",
        "lora_target",
        "enable_liger_kernel",
        "quantization_method",
        "use_unsloth",
        "export_dir",
        "infer_backend",
        "disable_gradient_checkpointing",
        "compute_accuracy",
        "use_galore",
        "use_badam",
        "use_apollo",
        "use_adam_mini",
        "pissa_init",
        "use_swanlab",
        "early_stopping_steps",
    }
)


def _alpha(get: Any) -> int:
    return 2 * int(get("lora_rank"))


DEFAULTS = {
    "finetuning_type": HomeDefault("lora", why="LLaMA-Factory's finetuning_type defaults to lora"),
    "lora_alpha": HomeDefault(fn=_alpha, why="LLaMA-Factory sets lora_alpha to 2 x lora_rank when unset"),
    "gradient_checkpointing": HomeDefault(
        True, why="LLaMA-Factory turns gradient checkpointing on unless disable_gradient_checkpointing"
    ),
    "use_reentrant_gc": HomeDefault(
        True, why="LLaMA-Factory checkpoints activations with the re-entrant implementation by default"
    ),
    "packing": HomeDefault(
        fn=lambda get: get("stage") == "pt",
        why="LLaMA-Factory packs sequences when stage is pt (packing unset)",
    ),
}

# `max_length` is cutoff_len in tunesmith, ms-swift and TRL, but a generation length in LLaMA-Factory.
DIALECT = Dialect(
    "lf",
    "LLaMA-Factory v0",
    NAMES,
    MARKERS,
    DEFAULTS,
    overrides=frozenset({"max_length", "do_eval", "do_predict"}),
)
