"""Model loading: local directory, hub id or built-in; dtype, attention, random init, meta-device init,
quantisation of the base weights, vocabulary growth and kernel switches."""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import torch
import torch.distributed as dist
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    BitsAndBytesConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tunesmith.config.unsupported import check_model_id
from tunesmith.model.fused_ops import (
    apply_kernels,
    attn_for_model,
    check_kernel_flags,
    resolve_attn_impl,
)
from tunesmith.model.model_switches import (
    apply_model_kwargs,
    apply_rope_scaling,
    upcast_layernorm,
    upcast_lmhead_output,
)
from tunesmith.model.source import check_remote_code, hub_kwargs, load_or_explain, resolve_source
from tunesmith.model.vocab import resize_and_init
from tunesmith.utils.builtin import is_builtin
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
FIELD = "model_name_or_path"


def load_model(cfg: Any, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """Build the model of `cfg.model`, ready for `prepare_for_training` (cache off, vocabulary matching the
    tokenizer). Built-ins and `train_from_scratch` start from random weights drawn with `cfg.train.seed`."""
    margs = cfg.model
    check_kernel_flags(margs)
    source = resolve_source(margs.model_name_or_path, FIELD)
    check_remote_code(source, margs.trust_remote_code, FIELD)
    config = load_or_explain(lambda: AutoConfig.from_pretrained(source, **hub_kwargs(margs)), source, FIELD)
    _apply_config_overrides(config, margs)
    apply_rope_scaling(config, cfg.methods.rope_scaling, cfg.data.cutoff_len)
    apply_model_kwargs(config, cfg.methods.model_kwargs)
    check_model_id(margs.model_id, getattr(config, "model_type", None))
    attn = attn_for_model(margs, config, resolve_attn_impl(margs))
    dtype = _dtype(margs.torch_dtype, config)
    quant = quantization_config(margs, dtype)
    seed = int(cfg.train.seed)
    if margs.init_model_with_meta_device:
        _log_meta_init(cfg)
    random_init = is_builtin(margs.model_name_or_path) or margs.train_from_scratch
    if receives_weights_from_rank0(cfg) and dist.get_rank() != 0:
        model = _meta_model(config, margs, dtype, attn)
        if random_init:
            model.name_or_path = ""  # as on rank 0
    elif random_init:
        model = _random_model(config, margs, dtype, attn, seed, quant)
    else:
        model = load_or_explain(
            lambda: AutoModelForCausalLM.from_pretrained(
                source,
                config=config,
                dtype=dtype,
                attn_implementation=attn,
                quantization_config=quant,
                **hub_kwargs(margs),
            ),
            source,
            FIELD,
        )
    model.config.use_cache = False
    if quant is not None:
        _keep_4bit_trainable_layout(model)
    resize_and_init(model, tokenizer, margs, seed)
    apply_kernels(model, margs)
    if cfg.methods.upcast_layernorm:
        logger.info("upcast_layernorm: %d norm weights in float32", upcast_layernorm(model))
    if cfg.methods.upcast_lmhead_output:
        upcast_lmhead_output(model)
    return model


def receives_weights_from_rank0(cfg: Any) -> bool:
    """True when `init_model_with_meta_device` means "rank 0 loads, the others receive": several processes, the
    fsdp2 engine, no tensor/expert parallel, no quantised base. Ranks > 0 then build the model on the meta device
    and get their shards after FSDP2 sharding (`tunesmith.dist.fsdp2.load_full_state_from_rank0`)."""
    return bool(cfg.model.init_model_with_meta_device) and _every_rank_loads_because(cfg) is None


def _every_rank_loads_because(cfg: Any) -> str | None:
    """Why each process loads the weights itself despite `init_model_with_meta_device` (None: it does not)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return "this is a single process"
    spec = cfg.train.dist_config
    if spec is None or spec.name != "fsdp2":
        return f"the engine is {spec.name if spec is not None else 'DDP'}, not fsdp2"
    if cfg.parallel.tp_size > 1 or cfg.parallel.ep_size > 1:
        return "tensor/expert parallel is on (tp_size/ep_size > 1)"
    if cfg.model.quantization_bit or cfg.model.finetuning_type == "qlora":
        return "the base is quantised (quantization_bit/qlora)"
    return None


def _log_meta_init(cfg: Any) -> None:
    reason = _every_rank_loads_because(cfg)
    if reason is not None:
        logger.info(
            "init_model_with_meta_device: every process loads the weights itself because %s (transformers "
            "builds each copy on the meta device before filling it)",
            reason,
        )
    elif dist.get_rank() == 0:
        logger.info(
            "init_model_with_meta_device: rank 0 loads the weights; the other %d ranks build the model on the "
            "meta device and receive their FSDP2 shards from rank 0",
            dist.get_world_size() - 1,
        )


def _meta_model(config: Any, margs: Any, dtype: torch.dtype, attn: str) -> PreTrainedModel:
    """The model of `config` on the meta device (no weights read): its values come from rank 0 after sharding."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(
            config, dtype=dtype, attn_implementation=attn, trust_remote_code=bool(margs.trust_remote_code)
        )


def quantization_config(margs: Any, dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """bitsandbytes settings for `quantization_bit` (qlora implies 4 bits), `quantization_type` and
    `double_quantization`."""
    bits = margs.quantization_bit or (4 if margs.finetuning_type == "qlora" else None)
    if bits is None:
        return None
    if margs.finetuning_type in ("full", "freeze"):
        raise ConfigError(
            f"quantization_bit: quantised weights cannot be trained with finetuning_type {margs.finetuning_type}; "
            "use lora or qlora"
        )
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=margs.quantization_type,
        bnb_4bit_use_double_quant=margs.double_quantization,
        bnb_4bit_compute_dtype=dtype
        if dtype != torch.float16 or torch.cuda.is_available()
        else torch.float32,
    )


def _keep_4bit_trainable_layout(model: PreTrainedModel) -> None:
    """bitsandbytes repacks 4-bit weights for CPU inference on the first eval-mode forward, after which a training
    forward fails (in-place bias add on a leaf); keep the trainable layout so evaluation can run mid-training."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _dtype(name: str | None, config: Any) -> torch.dtype:
    if name == "auto":
        found = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        return DTYPES.get(str(found).removeprefix("torch."), torch.float32) if found else torch.float32
    return DTYPES[name or "float32"]


def _apply_config_overrides(config: Any, margs: Any) -> None:
    if margs.router_aux_loss_coef is None:
        return
    if not hasattr(config, "router_aux_loss_coef"):
        raise ConfigError(f"router_aux_loss_coef: model type {config.model_type!r} has no MoE router")
    config.router_aux_loss_coef = margs.router_aux_loss_coef
    config.output_router_logits = True


def _random_model(
    config: Any, margs: Any, dtype: torch.dtype, attn: str, seed: int, quant: BitsAndBytesConfig | None
) -> PreTrainedModel:
    """Random weights from the config with `seed`; on the meta device first when asked; quantised via a
    temporary checkpoint when the base must be 4/8-bit."""
    config._attn_implementation = attn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if margs.init_model_with_meta_device:
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config, dtype=dtype)
            model.to_empty(device="cpu")
            model.init_weights()
        else:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.name_or_path = ""  # no checkpoint holds these weights; saving writes them (see saving.py)
    logger.info("random initialisation from the %s config (seed %d)", config.model_type, seed)
    if quant is None:
        return model
    with tempfile.TemporaryDirectory(prefix="tunesmith-init-") as tmp:
        model.save_pretrained(tmp)
        model = AutoModelForCausalLM.from_pretrained(
            tmp, dtype=dtype, attn_implementation=attn, quantization_config=quant
        )
    model.name_or_path = ""
    return model
