"""ms-swift options that choose an implementation (its named optimizers, MoE experts kernel, agent template,
QLoRA compute dtype): each mapped onto the tunesmith feature that does the same, or refused with what to use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunesmith.config.dialects.base import adam_muon
from tunesmith.utils.errors import ConfigError

_DTYPES = {"bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "fp16": "fp16", "half": "fp16"}
_DTYPES |= {"float32": "fp32", "fp32": "fp32", "float": "fp32"}


def optimizer(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """`--optimizer` names one of ms-swift's optimizer callbacks (swift/optimizers/mapping.py): muon is
    Moonlight's Muon, with AdamW (adam_beta1/2, adam_epsilon) for embeddings, head and 1-D weights; galore and
    lorap are what use_galore / lorap_lr_ratio select anyway."""
    key = str(value).strip().lower()
    if key in ("default", "none", ""):
        return {}
    if key == "muon":
        return adam_muon(context)
    if key == "galore":
        return {"use_galore": True}
    if key == "lorap":
        if not context.get("lorap_lr_ratio"):
            raise ConfigError(
                "'lorap' (LoRA+) needs lorap_lr_ratio, the ratio of the B matrices' learning rate"
            )
        return {}
    if key == "muonclip":
        raise ConfigError(
            "'muonclip' (Muon with QK-clip of the attention logits) is not implemented; --optimizer muon runs here"
        )
    if key == "multimodal":
        raise ConfigError(
            "'multimodal' sets vision-tower/aligner learning rates; multimodal models are not trained"
        )
    raise ConfigError(f"{value!r} is not one of ms-swift's optimizers: default, muon, galore, lorap")


def experts_impl(value: Any) -> dict[str, Any]:
    """`--experts_impl` is transformers' experts_implementation: grouped_mm -> moe_grouped_gemm; eager is the
    per-expert loop tunesmith runs unless told."""
    key = str(value).strip().lower()
    if key == "grouped_mm":
        return {"moe_grouped_gemm": True}
    if key == "eager":
        return {}
    raise ConfigError(f"{value!r}: choose grouped_mm (moe_grouped_gemm) or eager; batched_mm is not run here")


# ms-swift agent templates whose tool prompt and call layout are those of a tunesmith tool_format.
AGENT_TEMPLATES = {"hermes": "qwen"}


def agent_template(value: Any) -> dict[str, Any]:
    """`--agent_template hermes` is tunesmith's `tool_format: qwen` (the same <tools>/<tool_call> text); other
    ms-swift agent templates lay tools out in text tunesmith does not have."""
    key = str(value).strip().lower()
    if key in AGENT_TEMPLATES:
        return {"tool_format": AGENT_TEMPLATES[key]}
    raise ConfigError(
        f"{value!r}: this ms-swift agent template's tool prompt is not implemented; tool formats here: "
        "qwen (ms-swift's hermes), llama3, default (LLaMA-Factory's ReAct style): set tool_format"
    )


def bnb_4bit_compute_dtype(value: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    """QLoRA computes in the dtype the weights load in, as ms-swift's default does (torch_dtype): the same value
    is accepted, without torch_dtype it sets torch_dtype; another one is refused."""
    asked = _DTYPES.get(str(value).strip().lower())
    if asked is None:
        raise ConfigError(f"{value!r}: choose bfloat16, float16 or float32")
    loaded = context.get("torch_dtype", context.get("dtype"))
    if loaded is None:
        return {"torch_dtype": {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[asked]}
    if _DTYPES.get(str(loaded).strip().lower()) != asked:
        raise ConfigError(
            f"{value!r}: 4-bit layers compute in the dtype the weights load in (torch_dtype {loaded}) here"
        )
    return {}
