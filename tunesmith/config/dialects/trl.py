"""TRL 1.x (`SFTConfig`, `DPOConfig`, `KTOConfig`, `RewardConfig`, the scripts' `ModelConfig` and
`ScriptArguments`): names beyond transformers' TrainingArguments, and TRL's own defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunesmith.config import accelerate_launch
from tunesmith.config.dialects import cpo, notes
from tunesmith.config.dialects.base import (
    Dialect,
    Entry,
    HomeDefault,
    alias,
    convert,
    convert_in_context,
    fixed,
    refuse,
    truthy,
)
from tunesmith.config.dialects.swift import packing_strategy, padding_free
from tunesmith.utils.errors import ConfigError

SFT_LOSSES = ("nll", "dft")


# TRL trainers that are not offline LM stages here: why, and what to use
TRAINERS_NOT_HERE = {
    "bco": "TRL's BCO trainer (binary classifier optimisation with a reward-shift estimate) is not implemented; "
    "unpaired desirable / undesirable rows train with stage kto",
    "prm": "TRL's PRM trainer (per-step token classification of reasoning traces) is not implemented; a "
    "sequence-level reward model is stage rm",
}


def stage(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """`stage: cpo` (TRL's CPOTrainer, no stage of its own here) is stage dpo with a CPO loss; bco / prm are
    refused with the stage to use; others as written."""
    key = str(value).strip().lower()
    if key in TRAINERS_NOT_HERE:
        raise ConfigError(TRAINERS_NOT_HERE[key])
    return cpo.as_dpo(context) if key == "cpo" else {"stage": value}


def loss_type(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """TRL `loss_type`: SFT `nll`/`dft`, the preference loss(es) of DPO/KTO (one or a list), or CPO's."""
    if cpo.for_cpo(context, "stage", ("cpo",)):
        return cpo.loss_type(value)
    items = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
    lowered = [str(v).strip().lower() for v in items]
    if len(lowered) == 1 and lowered[0] in SFT_LOSSES:
        return {"use_dft_loss": True} if lowered[0] == "dft" else {}
    if any(v in SFT_LOSSES for v in lowered):
        raise ConfigError(f"{value!r}: nll/dft are SFT losses and cannot be mixed with preference losses")
    if lowered == ["kto"]:
        return {}
    return {"pref_loss": lowered if len(lowered) > 1 else lowered[0]}


def label_smoothing(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """TRL's DPO applies `label_smoothing` to the robust loss only (its sigmoid loss ignores it); tunesmith's
    dpo_label_smoothing also smooths sigmoid (cDPO, as LLaMA-Factory does), so it is passed on for robust only.
    Its CPO smooths sigmoid and simpo (alphapo), and ignores it for hinge and ipo."""
    if cpo.for_cpo(context, "stage", ("cpo",)):
        return {"dpo_label_smoothing": value} if cpo.smooths(context) else {}
    losses = context.get("loss_type", "sigmoid")
    names = losses if isinstance(losses, list) else str(losses).split(",")
    if "robust" in [str(n).strip().lower() for n in names]:
        return {"dpo_label_smoothing": value}
    return {}


def completion_only(value: Any) -> dict[str, Any]:
    """`completion_only_loss: true` trains only on the completion (tunesmith's default masking)."""
    return {} if value is None else {"train_on_prompt": not truthy(value)}


def assistant_only(value: Any) -> dict[str, Any]:
    """`assistant_only_loss: true` trains only on assistant turns; false (TRL's default) on every token."""
    return {"train_on_prompt": not truthy(value)}


def use_peft(value: Any) -> dict[str, Any]:
    """The TRL scripts' `--use_peft`: LoRA."""
    return {"finetuning_type": "lora"} if truthy(value) else {}


def load_in(bits: int):
    def fn(value: Any) -> dict[str, Any]:
        return {"quantization_bit": bits} if truthy(value) else {}

    return fn


ROLLOUT_KEYS = ("reward_funcs", "num_generations", "reward_model_path", "teacher_model_name_or_path")


def max_completion_length(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """Generation length in TRL's online trainers (refused with them); in its offline ORPO/CPO/BCO configs it
    truncates completions of encoder-decoder models only, so for causal LMs it changes nothing."""
    if any(key in context for key in ROLLOUT_KEYS):
        raise ConfigError(f"{value!r}: {notes.ROLLOUT}")
    return {}


def lora_task_type(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """peft's task type: CAUSAL_LM adapters; SEQ_CLS is a reward model's (stage rm trains its score head fully,
    as peft's SEQ_CLS modules_to_save does)."""
    key = str(value).strip().upper()
    stage = str(context.get("stage", "sft")).strip().lower()
    if key == "CAUSAL_LM" or (key == "SEQ_CLS" and stage == "rm"):
        return {}
    if key == "SEQ_CLS":
        raise ConfigError(f"{value!r} adapts a sequence classifier: that is stage rm here (stage is {stage})")
    raise ConfigError(f"{value!r} is not allowed; choose CAUSAL_LM, or SEQ_CLS with stage rm")


def truncation_mode(value: Any) -> dict[str, Any]:
    """`keep_start` (TRL's default) cuts the end: truncation_strategy right; `keep_end` keeps the end: left."""
    modes = {"keep_start": "right", "keep_end": "left"}
    key = str(value).strip().lower()
    if key not in modes:
        raise ConfigError(f"{value!r} is not allowed; choose one of: {', '.join(modes)}")
    return {"truncation_strategy": modes[key]}


NAMES: dict[str, Entry] = {
    "beta": alias("pref_beta"),
    "stage": convert_in_context(stage, "cpo (CPOTrainer): stage dpo with pref_loss cpo* (by loss_type)"),
    "loss_type": convert_in_context(
        loss_type,
        "SFT: nll (default) or dft (use_dft_loss); DPO/KTO: pref_loss (a list is weighted by loss_weights); "
        "stage cpo: pref_loss cpo, cpo_hinge, cpo_ipo, cpo_simpo (alphapo: cpo_simpo, cpo_alpha 0)",
    ),
    "label_smoothing": convert_in_context(
        label_smoothing,
        "dpo_label_smoothing for the robust loss (TRL's DPO sigmoid ignores it); stage cpo: for sigmoid and simpo",
    ),
    "alpha": alias("alphapo_alpha"),
    "completion_only_loss": convert(completion_only, "train_on_prompt: not completion_only_loss"),
    "assistant_only_loss": convert(assistant_only, "train_on_prompt: not assistant_only_loss"),
    "padding_free": convert(padding_free, "batching_strategy: padding_free"),
    "packing_strategy": convert(packing_strategy, "best-fit packing (bfd) is tunesmith's packing"),
    "truncation_mode": convert(truncation_mode, "truncation_strategy (keep_start: right, keep_end: left)"),
    "dataset_num_proc": alias("preprocessing_num_workers"),
    "max_completion_length": convert_in_context(
        max_completion_length,
        "no effect on causal LMs in TRL's offline trainers (encoder-decoder truncation); "
        "online trainers' generation length: refused with them",
    ),
    "pad_to_multiple_of": refuse(
        "pads batches to a multiple; tunesmith pads to the longest sequence, or packs", "auto"
    ),
    "eval_packing": refuse(
        "packs the eval set differently from training; evaluation uses the training batching strategy"
    ),
    "shuffle_dataset": refuse(
        "shuffles the dataset before packing; tunesmith shuffles every epoch (set "
        "disable_shuffling to turn that off)",
        False,
    ),
    "dataset_kwargs": refuse(
        "passes extra arguments to TRL's dataset preparation; use the data arguments "
        "(template, cutoff_len, train_on_prompt)"
    ),
    "activation_offloading": refuse(
        "offloads activations to the CPU; not implemented: use gradient_checkpointing", False
    ),
    "precompute_ref_batch_size": refuse(
        "sets the batch of the reference pass; it uses per_device_eval_batch_size here"
    ),
    "f_divergence_type": refuse("selects an f-divergence DPO, which is not implemented", "reverse_kl"),
    "f_alpha_divergence_coef": refuse("belongs to f-divergence DPO, which is not implemented", 0.5),
    "use_weighting": refuse("is WPO weighting, which is not implemented", False),
    "discopop_tau": refuse("belongs to the DiscoPOP loss, which is not implemented", 0.05),
    "use_peft": convert(use_peft, "finetuning_type: lora"),
    "num_processes": convert(
        accelerate_launch.processes,
        "the processes tunesmith's launcher starts (NPROC_PER_NODE, unless the environment sets it)",
    ),
    "accelerate_config": convert_in_context(
        accelerate_launch.settings,
        "the accelerate config's engine (deepspeed / dist_config fsdp2), mixed precision, "
        "parallelism_config and num_processes",
    ),
    "teacher_model_name_or_path": refuse(
        "configures GKD/distillation from a teacher, which needs online generation; not implemented here"
    ),
    "lora_r": alias("lora_rank"),
    "lora_target_parameters": alias("target_parameters"),
    "model_init_kwargs": alias("model_kwargs"),
    "lora_target_modules": alias("target_modules"),
    "lora_modules_to_save": alias("modules_to_save"),
    "lora_task_type": convert_in_context(
        lora_task_type, "CAUSAL_LM; SEQ_CLS with stage rm (the score head trains fully, as peft's SEQ_CLS)"
    ),
    "load_in_8bit": convert(load_in(8), "quantization_bit: 8"),
    "load_in_4bit": convert(load_in(4), "quantization_bit: 4"),
    "bnb_4bit_quant_storage": refuse("sets the storage dtype of 4-bit weights; it is uint8 here"),
    "dataset_name": alias("dataset"),
    "dataset_config": refuse(
        "picks a hub dataset's configuration; write the dataset as an inline spec "
        "{hf_hub_url: NAME, subset: CONFIG}"
    ),
    "dataset_train_split": fixed(
        "train", "the training split is 'train' (an inline spec sets another split)"
    ),
    "dataset_test_split": refuse(
        "names a hub dataset's eval split; give eval_dataset an inline spec with its split, or use val_size",
        "test",
    ),
    "dataset_streaming": alias("streaming"),
    "ignore_bias_buffers": refuse("works around DDP with boolean buffers; not needed here", False),
    "generate_during_eval": refuse(
        "logs completions generated at evaluation to W&B/Comet (CPO, ORPO); not implemented here", False
    ),
    "is_encoder_decoder": refuse("marks an encoder-decoder model; tunesmith trains causal LMs", False),
}

MARKERS = frozenset(
    {
        "dataset_text_field",
        "completion_only_loss",
        "assistant_only_loss",
        "packing_strategy",
        "eval_packing",
        "beta",
        "max_prompt_length",
        "max_completion_length",
        "precompute_ref_log_probs",
        "use_peft",
        "lora_r",
        "lora_target_modules",
        "load_in_4bit",
        "load_in_8bit",
        "model_init_kwargs",
        "truncation_mode",
        "activation_offloading",
        "dataset_train_split",
        "f_divergence_type",
    }
)

DEFAULTS = {
    "learning_rate": HomeDefault(
        fn=lambda get: {"dpo": 1e-6, "kto": 1e-6, "rm": 1e-4}.get(get("stage"), 2e-5),
        why="TRL: SFTConfig 2e-5, DPOConfig/KTOConfig 1e-6, RewardConfig 1e-4",
    ),
    "logging_steps": HomeDefault(10, why="TRL's configs log every 10 steps"),
    "gradient_checkpointing": HomeDefault(True, why="TRL's configs turn gradient checkpointing on"),
    "cutoff_len": HomeDefault(1024, why="TRL's max_length defaults to 1024"),
}

# tunesmith's `label_smoothing` (alias of dpo_label_smoothing) also smooths sigmoid; TRL's DPO does not. TRL's
# `stage: cpo` names its CPOTrainer.
DIALECT = Dialect("trl", "TRL", NAMES, MARKERS, DEFAULTS, overrides=frozenset({"label_smoothing", "stage"}))
