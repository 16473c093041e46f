"""MindSpeed-LLM's FSDP2 backend (`mindspeed_llm/fsdp2/utils/arguments.py`, sectioned YAML `model:`, `data:`,
`training:`, `parallel:`, `optimization:`): the names beyond the spec tables tunesmith already knows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunesmith.config.dialects import notes
from tunesmith.config.dialects.base import (
    Dialect,
    Entry,
    HomeDefault,
    alias,
    convert,
    convert_in_context,
    fixed,
    refuse,
    refuse_all,
    truthy,
)
from tunesmith.utils.errors import ConfigError

# MindSpeed-LLM model ids whose model has no transformers class (MindSpeed ships its own modelling code).
_NO_TRANSFORMERS_CLASS = {
    "mamba3": "Mamba-3 (transformers has Mamba and Mamba-2 only)",
    "step35": "Step-3.5 (transformers 5 has its config, no causal-LM class)",
    "longcat_flash_ngram": "LongCat-Flash with n-gram embeddings (transformers' longcat_flash has none)",
}


def _model_id(value: Any) -> dict[str, Any]:
    """Model ids name architectures; ids of models only MindSpeed implements are refused with what they are."""
    key = str(value).strip().lower()
    if key in _NO_TRANSFORMERS_CLASS:
        raise ConfigError(
            f"{value!r} is {_NO_TRANSFORMERS_CLASS[key]}, which only MindSpeed-LLM's own modelling code "
            "implements; tunesmith trains transformers' classes: pick a model transformers has"
        )
    return {"model_id": value}


def _hook_modules(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """FSDP2 hooks on modules FSDP wraps are what fully_shard installs itself; other modules are refused."""
    wrapped = context.get("fsdp_modules") or ["model.layers.{*}"]
    hooked = [value] if isinstance(value, str) else list(value or [])
    if all(module in wrapped for module in hooked):
        return {}
    raise ConfigError(
        f"hooks on {value!r}, other modules than fsdp_modules ({wrapped!r}), belong to MindSpeed's FSDPTurbo "
        "hook manager; tunesmith's FSDP2 hooks the modules it wraps: list them in fsdp_modules"
    )


def _log_memory(value: Any) -> dict[str, Any]:
    return {"skip_memory_metrics": not truthy(value)}


NAMES: dict[str, Entry] = {
    "deterministic": alias("full_determinism"),
    "use_checkpoint_opt_param_scheduler": alias("keep_checkpoint_hparams"),
    "override_opt_param_scheduler": refuse(
        "makes the config's optimizer and schedule values win over a resumed "
        "checkpoint's, which tunesmith refuses when they differ; start a new "
        "run, or keep the checkpoint's with keep_checkpoint_hparams",
        False,
    ),
    "log_throughput": alias("include_tokens_per_second"),
    "log_cpu_memory": convert(_log_memory, "skip_memory_metrics: not log_cpu_memory"),
    "infer_backend": fixed("huggingface", "generation runs on the transformers model"),
    "fsdp_implementation": fixed("native", "FSDP2 is torch's fully_shard"),
    "indexer_loss_coeff": refuse(
        "weights DeepSeek-V3.2's indexer loss, a MindSpeed model implementation; "
        "tunesmith runs transformers' models",
        1.0,
    ),
    "mtp_loss_scaling_factor": refuse(
        "weights multi-token-prediction heads of MindSpeed's own model "
        "implementations; tunesmith runs transformers' models",
        0.3,
    ),
    "reset_attention_mask": refuse(
        "resets attention at end-of-document tokens in pre-training blocks; use "
        "stage: sft with neat_packing for per-document attention",
        False,
    ),
    "append_eod": refuse(
        "appends an end-of-document token in MindSpeed's pre-training pipeline; tunesmith's "
        "pt stage appends the tokenizer's EOS to every text itself",
        False,
    ),
    "quant_recipe_name": refuse("selects an mxfp8 recipe (Ascend/Hopper FP8 kernels); use bf16 or QLoRA"),
    "quant_converters": refuse(
        "belongs to mxfp8 training (Ascend/Hopper FP8 kernels); use bf16 or QLoRA", ["quantize.linear.mx"]
    ),
    "enable_fsdp_low_precision_all_gather": refuse("belongs to mxfp8 training; use bf16 or QLoRA", True),
    "fsdp_low_precision_all_gather_mode": refuse("belongs to mxfp8 training; use bf16 or QLoRA", "on-demand"),
    "efsdp_shard_placement_fn": refuse(
        "shards experts by MindSpeed's placement functions; tunesmith's expert shards use shard_placement_fn",
        "shard_by_dim_1",
    ),
    "hook_modules": convert_in_context(
        _hook_modules, "accepted when it names the fsdp_modules (fully_shard hooks what it wraps)"
    ),
    "model_id": convert(_model_id, "model_id (mamba3, step35, longcat_flash_ngram: no transformers class)"),
    **refuse_all(
        "enable_chunk_batch",
        "splits micro-batches into chunks inside MindSpeed's modules; use a "
        "smaller per_device_train_batch_size with gradient_accumulation_steps",
        False,
    ),
    **{
        name: refuse(
            "belongs to MindSpeed's chunked micro-batches (enable_chunk_batch); not implemented", default
        )
        for name, default in (
            ("chunk_mbs", 1),
            ("chunk_mbs_batch_dim", 0),
            ("chunk_mbs_modules", ["model.layers.{*}"]),
            ("chunk_mbs_arg_indexs", [0]),
            ("chunk_mbs_kwarg_names", ["position_embeddings", "position_ids", "attention_mask", "input_ids"]),
        )
    },
    **refuse_all(
        "use_sparse_flash_attn use_fused_lightning_indexer use_fused_lightning_indexer_loss "
        "use_ascend_mhc use_triton_swiglu_limit use_flash_gdn use_triton_rmsnormgated fix_router",
        notes.NPU,
        False,
    ),
    "pre_tokens": refuse(notes.NPU, 1048576),
    "next_tokens": refuse(notes.NPU, 0),
}

# Keys only MindSpeed-LLM configs write (its spec names that tunesmith's own configs use, such as recompute or
# model_id, do not count).
MARKERS = frozenset(
    {
        "ep_dispatcher",
        "fsdp_implementation",
        "log_throughput",
        "lr_decay_style",
        "train_iters",
        "hook_modules",
        "enable_chunk_batch",
        "indexer_loss_coeff",
        "deterministic",
        "data_manager_type",
    }
)

DEFAULTS = {
    "learning_rate": HomeDefault(1e-5, why="MindSpeed-LLM's lr defaults to 1e-5"),
    "weight_decay": HomeDefault(0.01, why="MindSpeed-LLM's weight_decay defaults to 0.01"),
    "adam_beta2": HomeDefault(0.95, why="MindSpeed-LLM's adam_beta2 defaults to 0.95"),
    "lr_scheduler_type": HomeDefault("cosine", why="MindSpeed-LLM's lr_decay_style defaults to cosine"),
    "warmup_ratio": HomeDefault(0.03, why="MindSpeed-LLM's warmup_ratio defaults to 0.03"),
    "learning_rate_end": HomeDefault(1e-6, why="MindSpeed-LLM's min_lr defaults to 1e-6"),
    "save_total_limit": HomeDefault(3, why="MindSpeed-LLM keeps 3 checkpoints by default"),
    "logging_steps": HomeDefault(1, why="MindSpeed-LLM logs every step by default"),
}

# `model_id` is a tunesmith name too; MindSpeed's ids of models transformers lacks are refused with a reason.
DIALECT = Dialect("mindspeed", "MindSpeed-LLM", NAMES, MARKERS, DEFAULTS, overrides=frozenset({"model_id"}))
