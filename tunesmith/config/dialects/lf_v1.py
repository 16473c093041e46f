"""LLaMA-Factory v1 (`src/llamafactory/v1/config/*_args.py`): plugin-style dicts (`peft_config`,
`quant_config`, `kernel_config`, `init_config`), dataset files (`train_dataset`), and v1's own defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config.dialects import lf, notes
from tunesmith.config.dialects.base import Dialect, Entry, HomeDefault, alias, convert, refuse
from tunesmith.utils.errors import ConfigError

# v1 dataset converters -> tunesmith formattings (pair: `chosen` / `rejected` are two whole OpenAI-style
# conversations, v1's PairSample: the chosen one is the messages, the other the rejected messages).
CONVERTERS = {
    "alpaca": "alpaca",
    "sharegpt": "sharegpt",
    "openai": "openai",
    "text": "text",
    "pair": "openai",
}
PAIR_COLUMNS = {"messages": "chosen", "rejected_messages": "rejected"}
PEFT_KEYS = {
    "r": "lora_rank",
    "lora_rank": "lora_rank",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "target_modules": "target_modules",
    "modules_to_save": "modules_to_save",
    "use_dora": "use_dora",
    "use_rslora": "use_rslora",
    "freeze_trainable_layers": "freeze_trainable_layers",
    "freeze_trainable_modules": "freeze_trainable_modules",
    "adapter_name_or_path": "adapter_name_or_path",
    "freeze_extra_modules": "freeze_extra_modules",
    "export_dir": "export_dir",
    "export_size": "export_size",
    "export_hub_model_id": "export_hub_model_id",
    "infer_dtype": "infer_dtype",
    "export_legacy_format": "export_legacy_format",
}
# Muon's keys in v1's optim_config -> tunesmith's Muon plugin parameters (`wd` and the betas are taken apart).
MUON_KEYS = ("momentum", "nesterov", "ns_steps", "adamw_eps")


def _plugin(value: Any, what: str) -> tuple[str, dict[str, Any]] | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{what}: invalid JSON ({exc.msg})") from None
    if isinstance(value, str):
        return value.strip().lower(), {}
    if not isinstance(value, dict) or "name" not in value:
        raise ConfigError(f"{what}: expected a mapping with a 'name' key, got {value!r}")
    rest = {k: v for k, v in value.items() if k != "name"}
    return str(value["name"]).strip().lower(), rest


def peft_config(value: Any) -> dict[str, Any]:
    """`{name: lora|freeze|full, r, lora_alpha, lora_dropout, target_modules, ...}` -> finetuning fields."""
    plugin = _plugin(value, "peft_config")
    if plugin is None:
        return {}
    name, params = plugin
    if name not in ("lora", "freeze", "full"):
        raise ConfigError(f"peft_config name {name!r} is not allowed; choose one of: lora, freeze, full")
    unknown = sorted(set(params) - set(PEFT_KEYS))
    if unknown:
        raise ConfigError(f"peft_config: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(PEFT_KEYS))}")
    return {"finetuning_type": name, **{PEFT_KEYS[k]: v for k, v in params.items()}}


def quant_config(value: Any) -> dict[str, Any]:
    """`{name: bnb|auto, quantization_bit: 4|8}` -> quantization_bit (bitsandbytes)."""
    plugin = _plugin(value, "quant_config")
    if plugin is None:
        return {}
    name, params = plugin
    if name not in ("bnb", "auto"):
        raise ConfigError(f"quant_config name {name!r}: {notes.QUANT_BACKEND}")
    unknown = sorted(set(params) - {"quantization_bit"})
    if unknown:
        raise ConfigError(f"quant_config: unknown key {unknown[0]!r}; allowed: quantization_bit")
    return {"quantization_bit": params.get("quantization_bit", 4)}


def kernel_config(value: Any) -> dict[str, Any]:
    """`{name: auto|liger_kernel|"auto, liger_kernel"}` -> use_liger_kernel. v1's `auto` applies Ascend NPU fused
    operators only (none on CPU or CUDA), so it changes nothing here; flash-linear-attention is refused."""
    plugin = _plugin(value, "kernel_config")
    if plugin is None:
        return {}
    names, params = [n.strip() for n in plugin[0].split(",") if n.strip()], plugin[1]
    for name in names:
        if name == "flash-linear-attention":
            raise ConfigError(
                "flash-linear-attention needs a CUDA or NPU device and the fla and FSDPTurbo packages "
                "(LLaMA-Factory raises without them); use_triton_gdn runs the Gated DeltaNet Triton kernels on "
                "a CUDA GPU, or drop it: transformers' own layers run everywhere"
            )
        if name not in ("auto", "liger_kernel"):
            raise ConfigError(
                f"kernel_config name {name!r} is not allowed; choose from: auto, liger_kernel, "
                "flash-linear-attention (comma-separated)"
            )
    if "liger_kernel" in names:
        return {"use_liger_kernel": True, "liger_kernel_config": params or None}
    return {}


def optim_config(value: Any) -> dict[str, Any]:
    """v1's `optim_config: {name: muon, wd, momentum, nesterov, ns_steps, adamw_betas, adamw_eps}` -> tunesmith's
    Muon plugin and weight_decay (v1 defaults wd to 0.1; its `lr` is always replaced by learning_rate). Another
    name passes through as tunesmith's own optim_config (a plugin registered here)."""
    plugin = _plugin(value, "optim_config")
    if plugin is None:
        return {}
    name, params = plugin
    if name != "muon":
        return {"optim_config": {"name": name, **params}}
    unknown = sorted(set(params) - {*MUON_KEYS, "wd", "adamw_betas", "lr"})
    if unknown:
        allowed = ", ".join(sorted({*MUON_KEYS, "wd", "adamw_betas", "lr"}))
        raise ConfigError(f"optim_config (muon): unknown key {unknown[0]!r}; allowed: {allowed}")
    muon: dict[str, Any] = {
        "name": "muon",
        "decay_all": True,
        **{k: params[k] for k in MUON_KEYS if k in params},
    }
    if "adamw_betas" in params:
        betas = params["adamw_betas"]
        if not isinstance(betas, (list, tuple)) or len(betas) != 2:
            raise ConfigError(f"optim_config (muon): adamw_betas must be two numbers, got {betas!r}")
        muon["adamw_beta1"], muon["adamw_beta2"] = float(betas[0]), float(betas[1])
    return {"optim_config": muon, "weight_decay": params.get("wd", 0.1)}


def init_config(value: Any) -> dict[str, Any]:
    """`{name: init_on_meta|init_on_rank0|init_on_default}` -> init_model_with_meta_device."""
    plugin = _plugin(value, "init_config")
    if plugin is None:
        return {}
    name, _ = plugin
    modes = {"init_on_meta": True, "init_on_rank0": True, "init_on_default": False, "init_on_cpu": False}
    if name not in modes:
        raise ConfigError(f"init_config name {name!r} is not allowed; choose one of: {', '.join(modes)}")
    return {"init_model_with_meta_device": modes[name]}


def dataset_file(target: str):
    """`train_dataset: data/v1_sft_demo.yaml` (a file of named datasets) -> inline dataset specs; a plain path
    or hub id passes through."""

    def fn(value: Any) -> dict[str, Any]:
        if not isinstance(value, str) or Path(value).suffix.lower() not in (".yaml", ".yml"):
            return {target: value}
        return {target: _read_dataset_file(Path(value))}

    return fn


def _read_dataset_file(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"dataset file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"dataset file {path}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"dataset file {path}: expected a mapping of dataset name -> spec")
    return [_inline_spec(name, spec, path) for name, spec in data.items()]


def _inline_spec(name: str, spec: Any, path: Path) -> dict[str, Any]:
    if not isinstance(spec, dict) or "path" not in spec:
        raise ConfigError(f"dataset file {path}: dataset {name!r} needs a 'path'")
    converter = str(spec.get("converter", "alpaca"))
    if converter not in CONVERTERS:
        raise ConfigError(
            f"dataset file {path}: dataset {name!r}: converter {converter!r} is not allowed; "
            f"choose one of: {', '.join(CONVERTERS)}"
        )
    source = str(spec.get("source", "local" if Path(spec["path"]).exists() else "hf_hub"))
    where = "file_name" if source == "local" else "hf_hub_url"
    out: dict[str, Any] = {"name": name, where: spec["path"], "formatting": CONVERTERS[converter]}
    if converter == "pair":
        out["ranking"], out["columns"] = True, dict(PAIR_COLUMNS)
    if spec.get("size") is not None:
        out["num_samples"] = spec["size"]
    if spec.get("split") is not None:
        out["split"] = spec["split"]
    return out


def _model_class(value: Any) -> dict[str, Any]:
    if str(value).strip().lower() != "llm":
        raise ConfigError(f"{value!r} {notes.MULTIMODAL}")
    return {}


def _sample_backend(value: Any) -> dict[str, Any]:
    if str(value).strip().lower() != "hf":
        raise ConfigError(f"{value!r} {notes.VLLM}")
    return {}


NAMES: dict[str, Entry] = {
    "flash_attn": convert(
        lf.flash_attn_strict,
        "attn_impl (auto: transformers' default; disabled: eager); a FlashAttention kernel this machine lacks "
        "is refused, as LLaMA-Factory v1 hands it to transformers, which raises",
    ),
    "model_class": convert(_model_class, "llm (text causal LM) is what tunesmith trains"),
    "peft_config": convert(
        peft_config, "finetuning_type, lora_rank, lora_alpha, lora_dropout, target_modules"
    ),
    "quant_config": convert(quant_config, "quantization_bit (bitsandbytes QLoRA)"),
    "kernel_config": convert(
        kernel_config, "use_liger_kernel (auto: v1's NPU fused operators, none off Ascend NPUs)"
    ),
    "optim_config": convert(
        optim_config, "muon: tunesmith's Muon plugin (adamw_betas -> adamw_beta1/2) and weight_decay (wd)"
    ),
    "init_config": convert(init_config, "init_model_with_meta_device"),
    "train_dataset": convert(dataset_file("dataset"), "dataset (a v1 dataset file becomes inline specs)"),
    "dist_timeout": alias("ddp_timeout"),
    "cp_mode": alias("cp_type"),
    "mp_shard_size": alias("fsdp_size"),
    "mp_replicate_size": refuse(
        "is derived here: FSDP2 replicates over number of processes / fsdp_size; set fsdp_size only"
    ),
    "dp_size": refuse("is derived here from the number of processes / (tp_size x cp_size); drop it"),
    "save_ckpt_as_hf": refuse(
        "would write every checkpoint in Hugging Face format; tunesmith checkpoints are "
        "resumable (sharded runs: DCP) and the final model is HF format; turn a checkpoint "
        "into an HF model with `tunesmith convert`"
    ),
    "sample_backend": convert(_sample_backend, "hf: generation on the transformers model"),
}
NAMES["eval_dataset"] = convert(
    dataset_file("eval_dataset"), "eval_dataset (a v1 dataset file becomes inline specs)"
)

MARKERS = frozenset(
    {
        "model_class",
        "peft_config",
        "quant_config",
        "kernel_config",
        "init_config",
        "train_dataset",
        "sample_backend",
        "dist_timeout",
        "cp_mode",
        "mp_shard_size",
        "mp_replicate_size",
        "dp_size",
        "save_ckpt_as_hf",
    }
)

DEFAULTS = {
    "bf16": HomeDefault(True, why="LLaMA-Factory v1 trains in bf16 by default"),
    "gradient_checkpointing": HomeDefault(
        True, why="LLaMA-Factory v1 enables activation checkpointing by default"
    ),
    "per_device_train_batch_size": HomeDefault(1, why="LLaMA-Factory v1's micro_batch_size defaults to 1"),
    "learning_rate": HomeDefault(1e-4, why="LLaMA-Factory v1's learning_rate defaults to 1e-4"),
    "logging_steps": HomeDefault(1, why="LLaMA-Factory v1 logs every step by default"),
}

# `eval_dataset` is a tunesmith name too, but in v1 it may be a dataset file; v1's optim_config has its own keys.
DIALECT = Dialect(
    "lf_v1",
    "LLaMA-Factory v1",
    NAMES,
    MARKERS,
    DEFAULTS,
    overrides=frozenset({"eval_dataset", "optim_config"}),
)
