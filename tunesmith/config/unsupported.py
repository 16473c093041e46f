"""Arguments that are accepted by name but cannot take effect here: setting them is an error that says why and
what to use instead (never a silent no-op)."""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.config.loader import TunesmithConfig
from tunesmith.config.schema import fields_by_name
from tunesmith.utils.errors import ConfigError

_HUB = (
    "uploading to the Hub is not implemented; upload output_dir afterwards with `hf upload REPO OUTPUT_DIR`"
)
_QUANT = (
    "MindSpeed's mxfp8 low-precision training needs FP8 kernels (Ascend or Hopper) that this build does not have; "
    "use bf16, or QLoRA (finetuning_type: qlora)"
)
_BADAM_RATIO = (
    "only used by BAdam's ratio mode, whose sparse gradients the step's gradient-norm computation cannot take; "
    "use badam_mode: layer (badam_switch_interval, badam_switch_mode)"
)
_ONLY_WITH_QUANT = "only used with quant_recipe, which is not available here (see quant_recipe)"
_HUBS = "downloads from ModelScope/Modelers are not implemented; download the model first and pass its local directory"

# argument -> why it cannot take effect and what to use instead; an error when the user sets it.
REFUSED: dict[str, str] = {
    "push_to_hub": _HUB,
    "export_hub_model_id": "uploading an export to the Hub is not implemented (no network here); export with "
    "export_dir, then upload that folder with `hf upload REPO EXPORT_DIR`",
    "hub_model_id": f"only used with push_to_hub: {_HUB}",
    "hub_strategy": f"only used with push_to_hub: {_HUB}",
    "hub_token": f"only used with push_to_hub: {_HUB}",
    "hub_private_repo": f"only used with push_to_hub: {_HUB}",
    "hub_always_push": f"only used with push_to_hub: {_HUB}",
    "hub_revision": f"only used with push_to_hub: {_HUB}",
    "ms_hub_token": _HUBS,
    "om_hub_token": _HUBS,
    "accelerator_config": "tunesmith does not run accelerate's Accelerator; use dist_config, fsdp/fsdp_config or deepspeed",
    "trackio_space_id": "Trackio is not a supported report_to backend; use tensorboard, wandb, swanlab or mlflow",
    "lazy_tokenize": "tunesmith tokenizes ahead, in parallel and cached (a rerun does not tokenize again), which "
    "exact-length batching needs; to tokenize while training use streaming: true (with max_steps)",
    "badam_update_ratio": _BADAM_RATIO,
    "badam_mask_mode": _BADAM_RATIO,
    "quant_recipe": _QUANT,
    "quant_format": _ONLY_WITH_QUANT,
    "quant_block_size": _ONLY_WITH_QUANT,
    "quant_apply_modules": _ONLY_WITH_QUANT,
    "quant_ignored_modules": _ONLY_WITH_QUANT,
    "converters": _ONLY_WITH_QUANT,
}

# MindSpeed-LLM's model ids (mindspeed_llm/fsdp2/models/model_registry.py) -> the transformers model_type each is
MODEL_ID_TYPES = {
    "gpt_oss": "gpt_oss",
    "qwen3": "qwen3",
    "qwen3_moe": "qwen3_moe",
    "qwen3_next": "qwen3_next",
    "minimax_m27": "minimax_m2",
    "glm52": "glm_moe_dsa",
    "deepseek_v4": "deepseek_v4",
}


def check_unsupported(cfg: TunesmithConfig) -> None:
    """Refuse arguments that cannot take effect, and check the few that only constrain others."""
    fields = fields_by_name()
    for name, why in REFUSED.items():
        if cfg.is_set(name) and cfg.get(name) != fields[name].default:
            raise ConfigError(f"{cfg.where(name)}: {why}")
    train = cfg.train
    if (
        cfg.is_set("do_train")
        and not train.do_train
        and not (train.do_eval or train.do_predict or train.predict_with_generate)
    ):
        raise ConfigError(
            f"{cfg.where('do_train')}: with do_train false set do_eval and/or do_predict (evaluate or predict the "
            "loaded model), or drop do_train"
        )
    _check_debug(cfg)
    _check_labels(cfg)
    _check_data_manager(cfg)
    _check_model_id(cfg)


UNDERFLOW_OVERFLOW = "underflow_overflow"


def debug_options(value: str | list[str] | None) -> list[str]:
    """HF's `debug` as a list: a space-separated string or a list of option names."""
    items = value.split() if isinstance(value, str) else list(value or [])
    return [str(item) for item in items if str(item)]


def _check_debug(cfg: TunesmithConfig) -> None:
    for option in debug_options(cfg.train.debug):
        if option != UNDERFLOW_OVERFLOW:
            raise ConfigError(
                f"{cfg.where('debug')}: {option!r} is not available (TPU metrics need a TPU); the one option here is "
                f"{UNDERFLOW_OVERFLOW} (stop at the first module that outputs inf/nan)"
            )


def _check_labels(cfg: TunesmithConfig) -> None:
    train = cfg.train
    if train.label_names not in (None, ["labels"]):
        raise ConfigError(
            f"{cfg.where('label_names')}: tunesmith batches always carry their labels under 'labels'"
        )


def _check_data_manager(cfg: TunesmithConfig) -> None:
    if cfg.data.data_manager_type == "mg" and cfg.train.stage != "pt":
        raise ConfigError(
            f"{cfg.where('data_manager_type')}: 'mg' is the pre-training data pipeline; set stage: pt "
            f"(now {cfg.where('stage')} = {cfg.train.stage!r})"
        )
    if cfg.data.no_shared_storage and cfg.data.data_shared_file_system:
        raise ConfigError(
            f"{cfg.where('no_shared_storage')} and {cfg.where('data_shared_file_system')} contradict each other"
        )


def _check_model_id(cfg: TunesmithConfig) -> None:
    """Before loading: `model_id` against a local model's config.json (the model loader checks every model)."""
    path = Path(str(cfg.model.model_name_or_path)) / "config.json"
    if cfg.model.model_id is not None and path.is_file():
        model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type")
        check_model_id(cfg.model.model_id, model_type, f"{cfg.where('model_id')}", str(path))


def check_model_id(
    model_id: str | None, model_type: str | None, where: str = "model_id", source: str = ""
) -> None:
    """`model_id` names MindSpeed's own implementation of a model type; tunesmith runs transformers' one for the
    same type, so the id must match the model's type."""
    if model_id is not None and model_type != MODEL_ID_TYPES[model_id]:
        at = f" ({source})" if source else ""
        raise ConfigError(f"{where}: {model_id!r} does not match the model's type {model_type!r}{at}")
