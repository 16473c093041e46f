"""Saving the trained result in Hugging Face format: a full model, or a PEFT adapter, plus its tokenizer;
optionally the LoRA adapter merged into the base weights."""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from tunesmith.model.adapters import is_adapter_model
from tunesmith.utils.errors import ConfigError

if TYPE_CHECKING:  # peft is imported only when an adapter is used
    from peft import PeftModel

logger = logging.getLogger("tunesmith")

BASE_DIR = "base_model"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def save_pretrained_output(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase | None,
    output_dir: str | Path,
    safe_serialization: bool = True,
) -> Path:
    """Write the model (or only its adapter, for LoRA) and the tokenizer to `output_dir`; `transformers`
    (`AutoModelForCausalLM`) or `peft` (`AutoPeftModelForCausalLM`) load the result. An adapter on a randomly
    initialised base (built-in model, train_from_scratch) also gets that base in `output_dir/base_model`. Written
    through `atomic_export`: a kill during the write leaves no half-written weights."""
    final = Path(output_dir)
    with atomic_export(final) as path:
        if is_adapter_model(model) and not model.get_base_model().name_or_path:
            _save_random_base(model, path / BASE_DIR, safe_serialization, final / BASE_DIR)
        model.save_pretrained(path, safe_serialization=safe_serialization)
        if not safe_serialization and not is_adapter_model(model):
            safetensors_to_bin(path)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
    logger.info("saved %s to %s", "adapter" if is_adapter_model(model) else "model", final)
    return final


@contextlib.contextmanager
def atomic_export(output_dir: str | Path) -> Iterator[Path]:
    """A temporary folder inside `output_dir` to write an export into; when the body succeeds its entries are
    renamed into `output_dir` (each rename atomic, the weights last, so a kill in between leaves no weights of a
    half export), else it is removed."""
    final = Path(output_dir)
    final.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=final))
    try:
        yield tmp
        for entry in sorted(tmp.iterdir(), key=lambda p: (p.suffix in _WEIGHT_SUFFIXES, p.name)):
            target = final / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _save_random_base(model: PeftModel, path: Path, safe_serialization: bool, final: Path) -> None:
    """Save the frozen base weights, which exist in no checkpoint, and point the adapter config at them. A 4-bit
    or 8-bit base is saved dequantised; loading it with the run's quantisation settings gives back the same weights
    (up to the re-rounding of 4-bit double-quantised block scales)."""
    base = model.get_base_model()
    plain = AutoModelForCausalLM.from_config(_without_quantization(base.config), dtype=base.dtype)
    own = _base_state(base)
    plain.load_state_dict({key: own[key] for key in plain.state_dict()}, strict=True)
    plain.save_pretrained(path)
    if not safe_serialization:
        safetensors_to_bin(path)
    for config in model.peft_config.values():
        config.base_model_name_or_path = str(final.resolve())
    logger.info("the base model was randomly initialised: saved it to %s", final)


def safetensors_to_bin(path: Path) -> None:
    """`save_safetensors: false`: transformers 5 always writes safetensors, so rewrite the saved weights of `path`
    as one `pytorch_model.bin` (which transformers and peft still load) and remove the safetensors files."""
    import safetensors.torch

    files = sorted(path.glob("model*.safetensors"))
    if not files:
        return
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(safetensors.torch.load_file(str(file)))
    torch.save(state, path / "pytorch_model.bin")
    for file in [*files, path / "model.safetensors.index.json"]:
        file.unlink(missing_ok=True)


def _base_state(base: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The base model's own parameters (LoRA layers and saved copies left out, 4-bit weights dequantised)."""
    from bitsandbytes.nn import Linear8bitLt

    scales = {id(m.weight): _int8_scale(m) for m in base.modules() if isinstance(m, Linear8bitLt)}
    state = {}
    for name, param in [*base.named_parameters(remove_duplicate=False), *base.named_buffers()]:
        if "lora_" in name or ".modules_to_save." in name:
            continue
        param = _dequantized(param, scales.get(id(param)))
        state[name.replace(".base_layer.", ".").replace(".original_module.", ".")] = param.detach()
    return state


def _int8_scale(module: torch.nn.Module) -> torch.Tensor | None:
    scale = module.weight.SCB
    return scale if scale is not None else module.state.SCB


def _dequantized(param: torch.Tensor, int8_scale: torch.Tensor | None) -> torch.Tensor:
    """A bitsandbytes 4-bit or 8-bit (row scales `int8_scale`) weight back in floating point; others unchanged."""
    if type(param).__name__ == "Params4bit":
        import bitsandbytes.functional as bnb_functional

        return bnb_functional.dequantize_4bit(param.data, param.quant_state)
    if int8_scale is not None and param.dtype == torch.int8:
        return param.data.float() * int8_scale.float().unsqueeze(1) / 127
    return param


def _without_quantization(config: Any) -> Any:
    config = copy.deepcopy(config)
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    return config


def save_merged(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase | None,
    output_dir: str | Path,
    safe_serialization: bool = True,
) -> Path:
    """Merge the LoRA weights into the base model and save it as a plain `transformers` model.

    The adapter is merged in place, so call this last; a quantised (qlora) base cannot be merged."""
    if not is_adapter_model(model):
        raise ConfigError("merged export: the model has no LoRA adapter to merge")
    if getattr(model.get_base_model(), "is_quantized", False):
        raise ConfigError(
            "merged export: a 4/8-bit (qlora) base cannot be merged; reload the base in full precision"
        )
    merged = model.merge_and_unload()
    return save_pretrained_output(merged, tokenizer, output_dir, safe_serialization)
