"""The peft configuration of each adapter type: LoRA with its options (initialisation incl. PiSSA/OLoRA, bias,
target regex, target parameters), OFT, BOFT and VeRA; and PiSSA's conversion of a trained adapter back to a plain
LoRA of the original weights.

LoRA options follow ms-swift and LLaMA-Factory: `lora_bias` is ms-swift's (which biases train: none, all,
lora_only; peft's `bias`), `init_lora_weights` is peft's name (ms-swift's `init_weights`), `pissa_init` /
`pissa_iter` are LLaMA-Factory's shortcut for `pissa_niter_<iter>` (-1: exact SVD).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tunesmith.utils.errors import ConfigError

if TYPE_CHECKING:
    from peft import PeftConfig, PeftModel

logger = logging.getLogger("tunesmith")

ADAPTER_TYPES = ("lora", "qlora", "oft", "boft", "vera", "adalora")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
PISSA_INIT_DIR = "pissa_init"
PISSA_CONVERTED_DIR = "pissa_converted"


def init_lora_weights(methods: Any) -> bool | str:
    """peft's `init_lora_weights` from `pissa_init`/`pissa_iter` or `init_lora_weights` (true/false/gaussian/
    pissa/pissa_niter_N/olora/orthogonal)."""
    if methods.pissa_init:
        if methods.init_lora_weights not in (True, "true"):
            raise ConfigError(
                "pissa_init and init_lora_weights: both choose the LoRA initialisation; keep one"
            )
        return "pissa" if methods.pissa_iter == -1 else f"pissa_niter_{methods.pissa_iter}"
    value = methods.init_lora_weights
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if (
        isinstance(value, str)
        and value not in ("gaussian", "pissa", "olora", "orthogonal")
        and not (value.startswith("pissa_niter_") and value.removeprefix("pissa_niter_").isdigit())
    ):
        raise ConfigError(
            f"init_lora_weights: {value!r} is not available here; choose true, false, gaussian, pissa, "
            "pissa_niter_<n>, olora or orthogonal (loftq, eva, corda and lora-ga need calibration passes "
            "tunesmith does not run)"
        )
    return value


def peft_config(
    kind: str, margs: Any, methods: Any, target: str | list[str], modules_to_save: list[str] | None
) -> PeftConfig:
    """The peft config for adapter type `kind` (lora/qlora, oft, boft, vera) with the user's options."""
    import peft

    common = {"task_type": "CAUSAL_LM", "modules_to_save": modules_to_save}
    if methods.target_regex:
        target = methods.target_regex  # peft matches a string target as a full regular expression
    if kind in ("lora", "qlora"):
        return peft.LoraConfig(
            **common,
            r=margs.lora_rank,
            lora_alpha=margs.lora_alpha,
            lora_dropout=margs.lora_dropout,
            target_modules=target,
            target_parameters=methods.target_parameters or None,
            use_dora=margs.use_dora,
            use_rslora=margs.use_rslora,
            bias=methods.lora_bias,
            init_lora_weights=init_lora_weights(methods),
        )
    _refuse_lora_only(kind, methods)
    if kind == "oft":
        return peft.OFTConfig(
            **common,
            r=methods.oft_rank,
            oft_block_size=methods.oft_block_size if not methods.oft_rank else 0,
            module_dropout=methods.module_dropout,
            target_modules=_oft_target(methods, target),
        )
    if kind == "boft":
        return peft.BOFTConfig(
            **common,
            boft_block_size=methods.boft_block_size,
            boft_block_num=methods.boft_block_num,
            boft_n_butterfly_factor=methods.boft_n_butterfly_factor,
            boft_dropout=methods.boft_dropout,
            target_modules=target,
        )
    if kind == "adalora":
        return peft.AdaLoraConfig(
            **common,
            target_modules=target,
            init_r=methods.adalora_init_r,
            target_r=methods.adalora_target_r,
            tinit=methods.adalora_tinit,
            tfinal=methods.adalora_tfinal,
            deltaT=methods.adalora_deltaT,
            beta1=methods.adalora_beta1,
            beta2=methods.adalora_beta2,
            orth_reg_weight=methods.adalora_orth_reg_weight,
            lora_alpha=margs.lora_alpha,
            lora_dropout=margs.lora_dropout,
            total_step=methods.adalora_tinit
            + methods.adalora_tfinal
            + 1,  # the run's length is set at its start
        )
    return peft.VeraConfig(
        **common,
        r=methods.vera_rank,
        projection_prng_key=methods.vera_projection_prng_key,
        vera_dropout=methods.vera_dropout,
        d_initial=methods.vera_d_initial,
        target_modules=target,
    )


def _oft_target(methods: Any, target: str | list[str]) -> str | list[str]:
    value = methods.oft_target
    if value in ("all", ["all"]):
        return target
    return [t.strip() for t in value.split(",")] if isinstance(value, str) else list(value)


def _refuse_lora_only(kind: str, methods: Any) -> None:
    for name, on in (
        ("pissa_init", methods.pissa_init),
        ("loraplus_lr_ratio", methods.loraplus_lr_ratio is not None),
        ("target_parameters", methods.target_parameters),
    ):
        if on:
            raise ConfigError(f"{name}: a LoRA option; finetuning_type is {kind}")


def cast_adapter(model: PeftModel, dtype_name: str | None) -> None:
    """`lora_dtype`: keep the LoRA A/B weights in this dtype (default: the model's); peft casts their input."""
    if dtype_name is None:
        return
    dtype = DTYPES[dtype_name]
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = param.data.to(dtype)


def save_pissa_init(model: PeftModel, output_dir: str | Path) -> Path:
    """Save the adapter as initialised (pissa_convert needs it to turn the trained adapter into a plain LoRA)."""
    path = Path(output_dir) / PISSA_INIT_DIR
    config = model.peft_config["default"]
    kept, config.init_lora_weights = config.init_lora_weights, True
    try:
        model.save_pretrained(path)
    finally:
        config.init_lora_weights = kept
    return path


def save_pissa_converted(model: PeftModel, output_dir: str | Path) -> Path:
    """Save the trained PiSSA adapter converted to a plain LoRA of the original (unmodified) base weights."""
    out = Path(output_dir)
    path = out / PISSA_CONVERTED_DIR
    config = model.peft_config["default"]
    kept, config.init_lora_weights = config.init_lora_weights, True
    try:
        model.save_pretrained(path, path_initial_model_for_weight_conversion=str(out / PISSA_INIT_DIR))
    finally:
        config.init_lora_weights = kept
    logger.info("PiSSA adapter converted to a plain LoRA of the original weights: %s", path)
    return path


def orth_regularizer(model: torch.nn.Module) -> Callable[[], torch.Tensor] | None:
    """AdaLoRA's orthogonality penalty of its P (lora_A) and Q (lora_B) factors, as peft adds it to the loss:
    weight x mean over factors of ||P P^T - I||_F (||Q^T Q - I||_F); None for other models."""
    config = getattr(model, "peft_config", {}).get("default")
    if type(config).__name__ != "AdaLoraConfig" or not config.orth_reg_weight:
        return None
    factors = [
        (n, p) for n, p in model.named_parameters() if ("lora_A" in n or "lora_B" in n) and p.requires_grad
    ]

    def penalty() -> torch.Tensor:
        total = factors[0][1].new_zeros(())
        for name, param in factors:
            cov = param @ param.T if "lora_A" in name else param.T @ param
            total = total + torch.linalg.matrix_norm(cov - torch.eye(*cov.shape, dtype=cov.dtype), ord="fro")
        return config.orth_reg_weight * total / len(factors)

    return penalty
