"""`tunesmith export`: a plain Hugging Face model folder from a run: the adapters merged into the base (a QLoRA
base dequantised, i.e. loaded in full precision, first), or the weights of a sharded checkpoint (torch distributed
or DeepSpeed ZeRO, gathered in one process); sharded by `export_size` (or one legacy pytorch_model.bin), with tokenizer, chat template and generation
config."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from tunesmith.config.loader import TunesmithConfig
from tunesmith.dist.checkpoint_io import load_dcp_model
from tunesmith.dist.deepspeed import load_zero_model
from tunesmith.infer.loading import load_for_inference
from tunesmith.model.saving import safetensors_to_bin
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")


def export_model(cfg: TunesmithConfig, *, checkpoint: str | None = None) -> Path:
    """Write the merged model of `cfg` (with the weights of the sharded `checkpoint` when given) to `export_dir`;
    returns that folder. The folder is filled
    under a temporary name and renamed at the end, so a failed export leaves nothing behind."""
    gen = cfg.generation
    if not gen.export_dir:
        raise ConfigError(
            "export_dir: not set; name the folder the exported model is written to (or --output DIR)"
        )
    out = Path(gen.export_dir).expanduser()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{cfg.where('export_dir')}: {out} exists and is not empty; choose a new folder")
    if gen.export_legacy_format and cfg.is_set("export_size"):
        raise ConfigError(
            f"{cfg.where('export_size')}: the legacy .bin export is written as one file; shard the safetensors "
            "export instead (drop export_legacy_format)"
        )
    _full_precision_base(cfg)
    loaded = load_for_inference(cfg, merge_all=True, device=_device(gen.export_device))
    model = loaded.model
    if checkpoint:
        load_sharded_checkpoint(checkpoint, model)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, max_shard_size=f"{max(1, round(gen.export_size * 1e6))}KB")
        if gen.export_legacy_format:
            safetensors_to_bin(tmp)
        loaded.tokenizer.save_pretrained(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    logger.info("exported %s to %s", loaded.name, out)
    return out


def load_sharded_checkpoint(path: str | Path, model: torch.nn.Module) -> None:
    """The weights of a sharded checkpoint into `model`: a run's `checkpoint-<step>` folder (its `dcp/` or
    `deepspeed/` part), a torch distributed checkpoint folder (`.metadata`) or a DeepSpeed one (`latest`)."""
    folder = Path(path).expanduser()
    if (folder / "dcp").is_dir() or (folder / ".metadata").is_file():
        load_dcp_model(folder / "dcp" if (folder / "dcp").is_dir() else folder, model)
    elif (folder / "deepspeed").is_dir() or (folder / "latest").is_file():
        load_zero_model(folder / "deepspeed" if (folder / "deepspeed").is_dir() else folder, model)
    else:
        raise ConfigError(
            f"--checkpoint {path}: holds neither a torch distributed checkpoint (dcp/ or .metadata) nor a DeepSpeed "
            "one (deepspeed/ or latest); a checkpoint with full weights loads as model_name_or_path=FOLDER"
        )


def _full_precision_base(cfg: TunesmithConfig) -> None:
    """Merging needs real weights: a 4/8-bit (QLoRA) base is loaded in full precision and the adapter merged
    into it (LLaMA-Factory and ms-swift merge the same way)."""
    if cfg.model.quantization_bit or cfg.model.finetuning_type == "qlora":
        logger.info("export: loading the quantised base in full precision to merge the adapter into it")
        cfg.model.quantization_bit = None
        cfg.model.finetuning_type = "lora"


def _device(name: str) -> str:
    return "cuda" if name == "auto" and torch.cuda.is_available() else "cpu"
