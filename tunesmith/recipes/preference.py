"""The wiring the preference stages share: pair (or KTO) batches, the reference model, dropout off, the stage's
objective as the trainer's loss and its evaluator; dpo.py, kto.py and rm.py pick the objective."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from torch import nn

from tunesmith.config import TunesmithConfig
from tunesmith.data.batching.builder import batch_settings
from tunesmith.data.batching.pairs import build_preference_batcher
from tunesmith.model import load_model
from tunesmith.model.reference import build_reference, place_like, uses_adapter_reference
from tunesmith.recipes.common import StageParts
from tunesmith.train.preference_eval import PreferenceEvaluator
from tunesmith.train.ref_sync import SyncReference
from tunesmith.train.reference_logps import add_reference_logps
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")

# (cfg, the wrapped policy, reference module or None, adapter reference?) -> the objective
ObjectiveFactory = Callable[[TunesmithConfig, nn.Module, nn.Module | None, bool], Any]


def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability to 0 (TRL's disable_dropout)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    config = getattr(model, "config", None)
    for name in ("attention_dropout", "hidden_dropout", "dropout"):
        if config is not None and isinstance(getattr(config, name, None), float):
            setattr(config, name, 0.0)


# SFT loss options the preference objectives do not apply: refused rather than ignored
SFT_ONLY = {
    "label_smoothing_factor": "token label smoothing (for DPO use dpo_label_smoothing)",
    "chunk_loss_size": "chunked token cross-entropy",
    "auto_find_batch_size": "halving micro-batches (it would split chosen from rejected)",
}


def check_supported(cfg: TunesmithConfig) -> None:
    """Options of the SFT loss path that a preference stage cannot honour: a ConfigError naming the key."""
    for name, what in SFT_ONLY.items():
        if getattr(cfg.train, name):
            raise ConfigError(f"{cfg.where(name)}: {what} is not used by stage {cfg.train.stage}; unset it")
    if cfg.model.router_aux_loss_coef:
        raise ConfigError(
            f"{cfg.where('router_aux_loss_coef')}: the MoE router loss is not added to the preference losses yet; "
            "unset it (or 0)"
        )


class PreferenceStage:
    """Builds the StageParts of a preference stage around `make_objective`."""

    def __init__(
        self,
        make_objective: ObjectiveFactory,
        *,
        pairs: bool = True,
        with_reference: Callable[[TunesmithConfig], bool] = lambda cfg: True,
        load: Callable[[TunesmithConfig, Any], nn.Module] = load_model,
    ) -> None:
        self.make_objective, self.pairs, self.with_reference, self.load = (
            make_objective,
            pairs,
            with_reference,
            load,
        )
        self.reference: nn.Module | None = None
        self.adapter_reference = False

    def parts(self) -> StageParts:
        """The hooks for `run_stage`."""
        return StageParts(
            load_model=self.load_model,
            build_batcher=self.build_batcher,
            prepare_data=self.prepare_data,
            objective=self.objective,
            evaluator=self.evaluator,
            callbacks=self.callbacks,
        )

    def load_model(self, cfg: TunesmithConfig, tokenizer: Any) -> nn.Module:
        """The policy, and (before adapters are added) the reference it is compared with."""
        check_supported(cfg)
        model = self.load(cfg, tokenizer)
        self.tokenizer = tokenizer
        if cfg.preference.disable_dropout:
            disable_dropout(model)
        if self.with_reference(cfg):
            self.reference = build_reference(cfg, model, tokenizer)
            self.adapter_reference = uses_adapter_reference(cfg)
            if self.reference is not None and cfg.preference.disable_dropout:
                disable_dropout(self.reference)
        return model

    def prepare_data(self, cfg: TunesmithConfig, data: Any, model: nn.Module) -> Any:
        """`precompute_ref_log_probs`: reference log-probabilities of every train and eval pair, computed now; the
        reference is then dropped (nothing is run or kept for it while training)."""
        pref = cfg.preference
        if not pref.precompute_ref_log_probs:
            return data
        if not self.pairs or not self.with_reference(cfg):
            raise ConfigError(
                f"{cfg.where('precompute_ref_log_probs')}: only for stage dpo with a reference-based pref_loss "
                "(KTO's KL pairs change with every micro-batch; rm and orpo/simpo use no reference)"
            )
        settings, size = batch_settings(cfg, self.tokenizer), cfg.train.per_device_eval_batch_size
        reference, adapter = place_like(self.reference, model), self.adapter_reference

        def add(ds: Any) -> Any:
            return add_reference_logps(ds, model, reference, adapter, settings, size, pref.ld_alpha)

        data = dataclasses.replace(
            data, train=add(data.train), eval={k: add(v) for k, v in data.eval.items()}
        )
        self.reference, self.adapter_reference = None, False
        logger.info(
            "precompute_ref_log_probs: reference log-probabilities of %d pairs computed", len(data.train)
        )
        return data

    def build_batcher(self, cfg: TunesmithConfig, dataset: Any, tokenizer: Any, **where: int) -> Any:
        """Pair (or KTO example) micro-batches."""
        return build_preference_batcher(cfg, dataset, tokenizer, pairs=self.pairs, **where)

    def objective(self, cfg: TunesmithConfig, model: nn.Module) -> Any:
        """The trainer's loss, the reference placed beside the policy."""
        self.reference = place_like(self.reference, model)
        return self.make_objective(cfg, model, self.reference, self.adapter_reference)

    def callbacks(self, cfg: TunesmithConfig) -> list[Any]:
        """TR-DPO's reference sync (`sync_ref_model`) when asked."""
        pref = cfg.preference
        if not pref.sync_ref_model:
            return []
        spec = cfg.train.dist_config
        if self.reference is None or (spec is not None and spec.name == "deepspeed"):
            raise ConfigError(
                f"{cfg.where('sync_ref_model')}: needs a reference copy (full or freeze fine-tuning, no "
                "precompute_ref_log_probs, not under deepspeed); with LoRA the reference is the base model"
            )
        return [SyncReference(self.reference, pref.ref_model_mixup_alpha, pref.ref_model_sync_steps)]

    def evaluator(self, cfg: TunesmithConfig, sets: dict[str, Any], tokenizer: Any, objective: Any) -> Any:
        """The stage's loss and metrics on the eval sets."""
        return PreferenceEvaluator(
            sets,
            objective,
            batch_settings(cfg, tokenizer),
            cfg.train.per_device_eval_batch_size,
            packed=cfg.train.batching_strategy == "padding_free",
            pairs=self.pairs,
        )
