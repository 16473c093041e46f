"""CPO (Xu et al. 2024) and its relatives as TRL 1.16's CPOTrainer computes them: reference-free pair losses on
the policy's log-probabilities (`pref_loss` cpo, cpo_hinge, cpo_ipo, cpo_simpo), plus `cpo_alpha` x the mean NLL
of the micro-batch's chosen tokens, with AlphaPO's reward shape (`alphapo_alpha`).

cpo_ipo and cpo_simpo work on per-token average log-probabilities, cpo and cpo_hinge on sums. Metrics are TRL's:
rewards/* are beta x the (shaped) rewards, logps/* the values the loss saw, nll_loss the NLL term.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.config import TunesmithConfig
from tunesmith.config.arguments.preference import CPO_LOSSES
from tunesmith.config.schema import fields_by_name
from tunesmith.train.losses.dpo import (
    PAIR_METRICS,
    MetricSums,
    PairObjective,
    chosen_nll,
    loss_spec,
    pair_metrics,
)
from tunesmith.train.losses.logps import run_logps
from tunesmith.utils.errors import ConfigError

AVERAGED = ("cpo_ipo", "cpo_simpo")
CPO_METRICS = (*PAIR_METRICS, "nll_loss")
# preference options TRL's CPOTrainer has no place for: (why, value that asks for nothing)
NOT_IN_CPO = {
    "pref_ftx": ("the CPO losses weigh their NLL term with cpo_alpha", 0.0),
    "rpo_alpha": ("the CPO losses weigh their NLL term with cpo_alpha", None),
    "ld_alpha": ("LD-DPO weighting is for reference-based losses", None),
    "loss_weights": ("a CPO loss is listed alone", None),
    "ref_model": ("CPO is reference-free", None),
    "ref_model_adapters": ("CPO is reference-free", None),
    "ref_model_quantization_bit": ("CPO is reference-free", None),
}


def uses_cpo(pref: Any) -> bool:
    """True when `pref_loss` is one of the CPO losses."""
    return any(kind in CPO_LOSSES for kind, _ in loss_spec(pref))


def check_options(cfg: TunesmithConfig) -> None:
    """Options that would be ignored: cpo_alpha / alphapo_alpha without a CPO loss, and with one the options CPO
    does not use (pref_ftx, ld_alpha, loss_weights, a reference model; label smoothing of cpo_hinge / cpo_ipo)."""
    pref = cfg.preference
    if cfg.train.stage != "dpo" or not uses_cpo(pref):
        for name, hint in (("cpo_alpha", " (the other losses' NLL term is pref_ftx)"), ("alphapo_alpha", "")):
            if cfg.is_set(name) and cfg.get(name) != fields_by_name()[name].default:
                raise ConfigError(
                    f"{cfg.where(name)}: only used with stage dpo and pref_loss {'|'.join(CPO_LOSSES)} "
                    f"(TRL's CPO); drop it{hint}"
                )
        return
    kind = loss_spec(pref)[0][0]
    for name, (why, nothing) in NOT_IN_CPO.items():
        if cfg.get(name) != nothing:
            raise ConfigError(f"{cfg.where(name)}: not used with pref_loss {kind} ({why}); unset it")
    if pref.dpo_label_smoothing and kind not in ("cpo", "cpo_simpo"):
        raise ConfigError(
            f"{cfg.where('dpo_label_smoothing')}: pref_loss {kind} has no label smoothing "
            "(only cpo and cpo_simpo); unset it"
        )


def alphapo_reward(logps: torch.Tensor, alpha: float) -> torch.Tensor:
    """AlphaPO's reward (1 - p^-alpha) / alpha of the probability p = exp(logps); log p itself when alpha is 0."""
    if alpha == 0:
        return logps
    return -torch.expm1(-alpha * logps) / alpha


def cpo_loss(
    kind: str, chosen: torch.Tensor, rejected: torch.Tensor, beta: float, smoothing: float, gamma: float
) -> torch.Tensor:
    """Per-pair loss of CPO kind `kind` from the rewards of the chosen and rejected answers."""
    margin = chosen - rejected
    if kind == "cpo_simpo":
        margin = margin - gamma / beta
    if kind in ("cpo", "cpo_simpo"):
        return -(1 - smoothing) * F.logsigmoid(beta * margin) - smoothing * F.logsigmoid(-beta * margin)
    if kind == "cpo_hinge":
        return torch.relu(1 - beta * margin)
    if kind == "cpo_ipo":
        return (margin - 1 / (2 * beta)) ** 2
    raise ValueError(kind)


class CPOObjective(PairObjective):
    """The stage-dpo loss for a CPO `pref_loss`: `(model, micro-batch) -> (sum of per-pair losses, aux)`; no
    reference model."""

    metric_names = CPO_METRICS

    def __init__(self, pref: Any) -> None:
        super().__init__(pref, None)
        self.kind, self.nll_weight, self.alpha = self.spec[0][0], pref.cpo_alpha, pref.alphapo_alpha
        self.metrics = MetricSums(CPO_METRICS)

    def __call__(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = int(self.units(batch))
        _, logps = run_logps(model, batch, 2 * pairs)
        values = logps.means if self.kind in AVERAGED else logps.sums
        rewards = alphapo_reward(values, self.alpha)
        chosen, rejected = rewards.chunk(2)
        losses = cpo_loss(self.kind, chosen, rejected, self.beta, self.smoothing, self.gamma)
        metrics = pair_metrics(self.beta * rewards, values)
        if self.nll_weight:  # the same value for every pair of the micro-batch, as TRL adds it to the mean
            nll = chosen_nll(logps)
            losses = losses + self.nll_weight * nll
            metrics["nll_loss"] = nll.detach()
        self.metrics.add(metrics)
        return losses.sum(), losses.new_zeros(())
