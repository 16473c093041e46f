"""Method options that only act with a switch or a fine-tuning type: set without it they would be ignored, so
they are errors naming the option and what turns it on (checked before anything loads)."""

from __future__ import annotations

from typing import Any

from tunesmith.config.loader import TunesmithConfig
from tunesmith.config.schema import fields_by_name
from tunesmith.utils import dist_env
from tunesmith.utils.errors import ConfigError

# option prefix or name -> (what turns it on, predicate on the config)
SWITCHED: tuple[tuple[tuple[str, ...], str, Any], ...] = (
    (("galore_",), "use_galore: true", lambda c: c.methods.use_galore),
    (("apollo_",), "use_apollo: true", lambda c: c.methods.use_apollo),
    (("badam_",), "use_badam: true", lambda c: c.methods.use_badam),
    (("lisa_step_interval",), "lisa_activated_layers > 0", lambda c: c.methods.lisa_activated_layers > 0),
    (("eaft_alpha",), "use_eaft_loss: true", lambda c: c.methods.use_eaft_loss),
    (("asft_alpha",), "use_asft_loss: true", lambda c: c.methods.use_asft_loss),
    (("pissa_iter",), "pissa_init: true", lambda c: c.methods.pissa_init),
    (("llamapro_num_groups",), "llamapro_num_new_blocks", lambda c: c.methods.llamapro_num_new_blocks),
    (("loraplus_lr_embedding",), "loraplus_lr_ratio", lambda c: c.methods.loraplus_lr_ratio is not None),
    (("oft_", "module_dropout"), "finetuning_type: oft", lambda c: c.model.finetuning_type == "oft"),
    (("boft_",), "finetuning_type: boft", lambda c: c.model.finetuning_type == "boft"),
    (("vera_",), "finetuning_type: vera", lambda c: c.model.finetuning_type == "vera"),
    (("adalora_",), "finetuning_type: adalora", lambda c: c.model.finetuning_type == "adalora"),
    (
        ("lora_bias", "lora_dtype", "init_lora_weights", "target_parameters", "create_new_adapter"),
        "finetuning_type: lora or qlora",
        lambda c: c.model.finetuning_type in ("lora", "qlora"),
    ),
)


def check_method_options(cfg: TunesmithConfig) -> None:
    """Refuse a method option set (to a non-default value) without the switch or fine-tuning type it needs, and
    methods that change the trainable set while training on several processes."""
    _single_process_methods(cfg)
    _token_weights_supported(cfg)
    _layerwise_supported(cfg)
    if cfg.methods.use_badam and cfg.train.resume_from_checkpoint and not cfg.methods.resume_only_model:
        raise ConfigError(
            f"{cfg.where('resume_from_checkpoint')} with use_badam: BAdam's active block and its float32 copies "
            "are not in checkpoints, so a resumed run would mix blocks; set resume_only_model: true (weights only)"
        )
    fields = fields_by_name()
    for prefixes, needs, on in SWITCHED:
        if on(cfg):
            continue
        for name, entry in fields.items():
            if entry.section != "methods" or not name.startswith(prefixes):
                continue
            if cfg.is_set(name) and cfg.get(name) != entry.default:
                raise ConfigError(f"{cfg.where(name)}: only used with {needs}; set that, or drop {name}")


def _token_weights_supported(cfg: TunesmithConfig) -> None:
    """token_loss_weights weight the SFT token loss; other stages and context-parallel slices do not carry them."""
    if not cfg.data.token_loss_weights:
        return
    stage = getattr(cfg.train, "stage", "sft") or "sft"
    if stage != "sft":
        raise ConfigError(
            f"{cfg.where('token_loss_weights')}: weights the supervised fine-tuning loss (stage: sft), not stage "
            f"{stage}; unset it"
        )
    if cfg.parallel.cp_size > 1:
        raise ConfigError(
            f"{cfg.where('token_loss_weights')}: not supported with context parallel (cp_size > 1) yet; unset one"
        )


def _layerwise_supported(cfg: TunesmithConfig) -> None:
    """Layer-wise GaLore/APOLLO update each parameter inside its one backward: what needs the gradients kept
    (accumulation, synchronisation, loss scaling, clipping, split micro-batches) cannot go with it."""
    m, train = cfg.methods, cfg.train
    named = next(
        (
            n
            for n, on in (
                ("optim", str(train.optim).endswith("_layerwise")),
                ("galore_layerwise", m.use_galore and m.galore_layerwise),
                ("apollo_layerwise", m.use_apollo and m.apollo_layerwise),
            )
            if on
        ),
        None,
    )
    if named is None:
        return
    engine = train.dist_config.name if train.dist_config is not None else None
    for clash, why in (
        ("gradient_accumulation_steps", train.gradient_accumulation_steps != 1 and "must be 1"),
        ("dist_config", engine is not None and f"{engine} owns the gradients"),
        ("fp16", train.fp16 and "loss scaling unscales gradients at the step; use bf16"),
        ("auto_find_batch_size", train.auto_find_batch_size and "split micro-batches need several backwards"),
        (
            "max_grad_norm",
            cfg.is_set("max_grad_norm") and train.max_grad_norm > 0 and "set it to 0: no clipping",
        ),
        ("processes", dist_env.world_size() > 1 and "run on one process (no DDP)"),
    ):
        if why:
            where = cfg.where(clash) if clash != "processes" else f"{dist_env.world_size()} processes"
            raise ConfigError(f"{where}: {cfg.where(named)} updates each parameter inside backward, so {why}")


def _single_process_methods(cfg: TunesmithConfig) -> None:
    if dist_env.world_size() <= 1:
        return
    for name, on in (
        ("lisa_activated_layers", cfg.methods.lisa_activated_layers > 0),
        ("use_badam", cfg.methods.use_badam),
    ):
        if on:
            raise ConfigError(
                f"{cfg.where(name)}: changes which parameters train while training, which the gradient "
                f"synchronisation of {dist_env.world_size()} processes (DDP/FSDP2) cannot follow; run on one process"
            )
