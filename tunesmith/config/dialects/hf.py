"""transformers (`TrainingArguments` of 5.x, `Seq2SeqTrainingArguments`, and the `run_clm.py`-style data
arguments of its example scripts): names tunesmith does not spell the same way. Its defaults are tunesmith's."""

from __future__ import annotations

from typing import Any

from tunesmith.config.dialects.base import Dialect, Entry, alias, convert, fixed, inert, refuse, refuse_all
from tunesmith.utils.errors import ConfigError


def sampling(value: Any) -> dict[str, Any]:
    """`train_sampling_strategy: random|sequential|group_by_length`."""
    key = str(value).strip().lower()
    modes = {
        "random": {},
        "sequential": {"disable_shuffling": True},
        "group_by_length": {"group_by_length": True},
    }
    if key not in modes:
        raise ConfigError(f"{value!r} is not allowed; choose one of: {', '.join(modes)}")
    return modes[key]


def validation_percentage(value: Any) -> dict[str, Any]:
    """run_clm's `validation_split_percentage: 5` -> val_size 0.05."""
    return {"val_size": float(value) / 100.0}


def config_overrides(value: Any) -> dict[str, Any]:
    """run_clm's `--config_overrides "n_embd=10,resid_pdrop=0.2"` (with train_from_scratch) -> model_kwargs."""
    pairs = [part.split("=", 1) for part in str(value).split(",") if part.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise ConfigError(f"{value!r}: write name=value pairs separated by commas")
    return {"model_kwargs": {name.strip(): _scalar(text.strip()) for name, text in pairs}}


def _scalar(text: str) -> Any:
    """`10` -> 10, `1e4` -> 10000.0, `true` -> True, anything else stays text (as run_clm reads them)."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return {"true": True, "false": False}.get(text.lower(), text)


def block_size(value: Any) -> dict[str, Any]:
    """run_clm's `block_size`: texts are concatenated and cut into blocks of this many tokens (stage pt)."""
    return {"cutoff_len": value}


NAMES: dict[str, Entry] = {
    "activation_checkpointing": alias("gradient_checkpointing"),
    "activation_checkpointing_kwargs": alias("gradient_checkpointing_kwargs"),
    "use_cache": fixed(
        False,
        "training always runs the model with use_cache=False (a cache breaks packing "
        "isolation and costs memory)",
    ),
    "train_sampling_strategy": convert(
        sampling, "random (default), sequential: disable_shuffling, group_by_length: group_by_length"
    ),
    "dataloader_in_order": inert("batches are always delivered in order by tunesmith's batch builder"),
    "dataloader_multiprocessing_context": refuse(
        "sets the start method of data-loader worker processes; "
        "tunesmith's batch builder uses threads (batching_workers)"
    ),
    "ddp_static_graph": refuse("is not passed to DDP here; DDP runs with its defaults", False),
    "enable_jit_checkpoint": refuse(
        "saves a checkpoint when a job is preempted (SIGTERM); tunesmith always does this on SIGTERM/SIGINT",
        False,
    ),
    **refuse_all(
        "trackio_bucket_id trackio_static_space_id",
        "is a Trackio setting; Trackio is not a supported report_to backend (use tensorboard, wandb, "
        "swanlab or mlflow)",
    ),
    "generation_num_beams": alias("eval_num_beams"),
    "generation_max_length": refuse("caps the total length of generated sequences; set max_new_tokens"),
    "generation_config": refuse(
        "loads a GenerationConfig for predict_with_generate; set the generation "
        "arguments (max_new_tokens, num_beams, do_sample, temperature ...) instead"
    ),
    "sortish_sampler": refuse("is for encoder-decoder (seq2seq) models; use group_by_length", False),
    "train_file": alias("dataset"),
    "tokenizer_name": alias("tokenizer_name_or_path"),
    "token": alias("hf_hub_token"),
    "config_name": refuse(
        "builds the model from another config; put that config.json in a folder and pass it as "
        "model_name_or_path with train_from_scratch: true"
    ),
    "config_overrides": convert(
        config_overrides, "model_kwargs (config values set before the model is built)"
    ),
    "validation_file": alias("eval_dataset"),
    "dataset_config_name": refuse(
        "picks a hub dataset's configuration; write the dataset as an inline spec "
        "{hf_hub_url: NAME, subset: CONFIG}"
    ),
    "block_size": convert(block_size, "cutoff_len (use stage: pt to concatenate and cut texts into blocks)"),
    "max_train_samples": alias("max_samples"),
    "max_eval_samples": refuse("caps the eval set; cut the eval file, or use val_size"),
    "validation_split_percentage": convert(validation_percentage, "val_size (percentage / 100)"),
    "keep_linebreaks": fixed(True, "plain-text data keeps its line breaks"),
}

MARKERS = frozenset(
    {
        "activation_checkpointing",
        "train_sampling_strategy",
        "dataloader_in_order",
        "train_file",
        "validation_file",
        "block_size",
        "validation_split_percentage",
        "max_train_samples",
        "use_cache",
    }
)

DIALECT = Dialect("hf", "transformers", NAMES, MARKERS)
