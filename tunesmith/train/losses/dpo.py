"""Pairwise preference losses (stage dpo): DPO sigmoid (with label smoothing), robust, hinge, IPO, BCO pair,
TRL's sft term, and the reference-free ORPO and SimPO; one loss or a weighted list (`pref_loss`, `loss_weights`).
TRL's CPO losses (cpo, cpo_hinge, cpo_ipo, cpo_simpo) are cpo.py's.

Formulas follow TRL 1.16's DPOTrainer (sigmoid, robust, hinge, ipo, bco_pair, sft) and LLaMA-Factory's trainer
(orpo, simpo on per-token average log-probabilities; `pref_ftx` adds the average NLL of the chosen answer).
Every loss is per pair; the trainer sums them over the step's micro-batches and divides once by the step's pairs
(over data-parallel ranks), so gradient accumulation equals one big batch. Metrics are those TRL logs:
rewards/{chosen,rejected,accuracies,margins}, logps/{chosen,rejected}.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.config.arguments.preference import CPO_LOSSES, PAIR_LOSSES
from tunesmith.model.reference import adapters_disabled
from tunesmith.train.losses.logps import SequenceLogps, run_logps
from tunesmith.utils.errors import ConfigError

REFERENCE_FREE = ("orpo", "simpo", "sft", *CPO_LOSSES)
PAIR_METRICS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)


def loss_spec(pref: Any) -> list[tuple[str, float]]:
    """(loss, weight) pairs from `pref_loss` (a name or a list) and `loss_weights`."""
    kinds = [pref.pref_loss] if isinstance(pref.pref_loss, str) else list(pref.pref_loss)
    unknown = [k for k in kinds if k not in PAIR_LOSSES]
    if not kinds or unknown:
        raise ConfigError(f"pref_loss: unknown {unknown or kinds}; allowed: {', '.join(PAIR_LOSSES)}")
    if len(kinds) > 1 and set(kinds) & set(CPO_LOSSES):
        raise ConfigError(f"pref_loss: {kinds}: a CPO loss ({', '.join(CPO_LOSSES)}) is listed alone")
    weights = pref.loss_weights if pref.loss_weights is not None else [1.0] * len(kinds)
    if len(weights) != len(kinds):
        raise ConfigError(f"loss_weights: {len(weights)} weight(s) for {len(kinds)} pref_loss entries")
    return list(zip(kinds, [float(w) for w in weights], strict=True))


def needs_reference(pref: Any) -> bool:
    """False when every loss of `pref_loss` is reference-free (orpo, simpo, sft): no reference is loaded."""
    return any(kind not in REFERENCE_FREE for kind, _ in loss_spec(pref))


def reference_loss(
    kind: str,
    delta_chosen: torch.Tensor,
    delta_rejected: torch.Tensor,
    beta: float,
    smoothing: float = 0.0,
    lengths: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Per-pair loss of a reference-based kind from the log-ratios log pi/pi_ref of chosen and rejected."""
    delta = delta_chosen - delta_rejected
    if kind == "sigmoid":
        return -(1 - smoothing) * F.logsigmoid(beta * delta) - smoothing * F.logsigmoid(-beta * delta)
    if kind == "robust":
        clean, flipped = (
            -(1 - smoothing) * F.logsigmoid(beta * delta),
            -smoothing * F.logsigmoid(-beta * delta),
        )
        return (clean - flipped) / (1 - 2 * smoothing)
    if kind == "hinge":
        return torch.relu(1 - beta * delta)
    if kind == "ipo":  # per-token averages (TRL and LLaMA-Factory), (Eq. 17 of the IPO paper)
        c_len, r_len = (n.clamp(min=1) for n in lengths)
        return (delta_chosen / c_len - delta_rejected / r_len - 1 / (2 * beta)) ** 2
    if kind == "bco_pair":
        return -F.logsigmoid(beta * delta_chosen) - F.logsigmoid(-beta * delta_rejected)
    raise ValueError(kind)


def orpo_loss(chosen_mean: torch.Tensor, rejected_mean: torch.Tensor, beta: float) -> torch.Tensor:
    """ORPO (Hong et al. 2024): NLL of the chosen answer + beta x -log sigmoid(log odds ratio), on per-token
    average log-probabilities."""
    log_odds = (chosen_mean - rejected_mean) - (
        torch.log1p(-torch.exp(chosen_mean)) - torch.log1p(-torch.exp(rejected_mean))
    )
    return -chosen_mean - beta * F.logsigmoid(log_odds)


def simpo_loss(
    chosen_mean: torch.Tensor, rejected_mean: torch.Tensor, beta: float, gamma: float
) -> torch.Tensor:
    """SimPO (Meng et al. 2024): -log sigmoid(beta x (avg logp chosen - avg logp rejected) - gamma)."""
    return -F.logsigmoid(beta * (chosen_mean - rejected_mean) - gamma)


class MetricSums:
    """Running sums and counts of per-unit metric values over a step, averaged (over ranks too) on read."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.sums: torch.Tensor | None = None  # (2, names): sums, counts

    def add(self, values: dict[str, torch.Tensor]) -> None:
        """Add every element of each metric's tensor (one value per pair, example or micro-batch)."""
        ref = next(iter(values.values()))
        row = torch.stack(
            [
                torch.stack([values[n].detach().float().sum(), ref.new_tensor(float(values[n].numel()))])
                if n in values
                else ref.new_zeros(2, dtype=torch.float32)
                for n in self.names
            ],
            dim=1,
        )
        self.sums = row if self.sums is None else self.sums + row

    def pop(self, sync_group: Any = None) -> dict[str, float]:
        """Means since the last pop (summed over `sync_group`'s ranks first); metrics with no value are left out."""
        if self.sums is None:
            return {}
        sums, self.sums = self.sums, None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums, group=sync_group)
        totals, counts = sums.tolist()
        return {n: t / c for n, t, c in zip(self.names, totals, counts, strict=True) if c > 0}


class PairObjective:
    """The stage-dpo loss for the trainer: `(model, micro-batch) -> (sum of per-pair losses, aux)`.

    `reference` is a frozen module, None with `adapter_reference` (the policy with adapters disabled), or None
    for reference-free losses; precomputed `ref_chosen_logps` / `ref_rejected_logps` in the batch win."""

    metric_names = PAIR_METRICS

    def __init__(self, pref: Any, reference: torch.nn.Module | None, adapter_reference: bool = False) -> None:
        self.spec = loss_spec(pref)
        self.beta, self.smoothing = pref.pref_beta, pref.dpo_label_smoothing
        self.gamma, self.ftx, self.ld_alpha = pref.simpo_gamma, pref.pref_ftx, pref.ld_alpha
        self.rpo_alpha = pref.rpo_alpha
        self.with_reference = needs_reference(pref)
        self.reference, self.adapter_reference = reference, adapter_reference
        self.metrics = MetricSums(PAIR_METRICS)

    def units(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pairs in the micro-batch."""
        return (batch["sequence_ids"].amax() + 1) // 2

    def __call__(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = int(self.units(batch))
        _, logps = run_logps(model, batch, 2 * pairs)
        sums = self._sums(logps)
        ref = self._reference_sums(model, batch, 2 * pairs) if self.with_reference else None
        losses = self.pair_losses(logps, sums, ref)
        self.metrics.add(self._metrics(logps, sums, ref))
        return losses.sum(), losses.new_zeros(())

    def pair_losses(self, logps: SequenceLogps, sums: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        """The weighted per-pair loss."""
        chosen, rejected = sums.chunk(2)
        c_mean, r_mean = logps.means.chunk(2)
        total = torch.zeros_like(chosen)
        for kind, weight in self.spec:
            if kind == "orpo":
                loss = orpo_loss(c_mean, r_mean, self.beta)
            elif kind == "simpo":
                loss = simpo_loss(c_mean, r_mean, self.beta, self.gamma)
            elif kind == "sft":
                loss = chosen_nll(logps).expand_as(chosen)
            else:
                ref_c, ref_r = ref.chunk(2)
                lengths = tuple(logps.tokens.chunk(2))
                loss = reference_loss(
                    kind, chosen - ref_c, rejected - ref_r, self.beta, self.smoothing, lengths
                )
            total = total + weight * loss
        if self.ftx:
            total = total - self.ftx * c_mean
        if self.rpo_alpha:  # ms-swift's RPO term: the micro-batch's token-mean NLL, for every pair
            total = total + self.rpo_alpha * chosen_nll(logps).expand_as(chosen)
        return total

    def step_metrics(self, sync_group: Any = None) -> dict[str, float]:
        """rewards/* and logps/* averaged over the pairs since the last call."""
        return self.metrics.pop(sync_group)

    def _sums(self, logps: SequenceLogps) -> torch.Tensor:
        return logps.sums if self.ld_alpha is None else logps.length_desensitized(self.ld_alpha)

    def _reference_sums(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], count: int
    ) -> torch.Tensor:
        if "ref_chosen_logps" in batch:
            return torch.cat([batch["ref_chosen_logps"], batch["ref_rejected_logps"]]).float()
        return self._sums(reference_logps(model, self.reference, batch, count, self.adapter_reference))

    def _metrics(
        self, logps: SequenceLogps, sums: torch.Tensor, ref: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        # reference-free: LLaMA-Factory's beta x average log-probability
        return pair_metrics(self.beta * ((sums - ref) if ref is not None else logps.means), sums)


def check_stage_options(cfg: Any) -> None:
    """The stage-dpo NLL terms are refused with the stages that have none: pref_ftx / rpo_alpha with kto or rm."""
    stage, pref = cfg.train.stage, cfg.preference
    if stage in ("kto", "rm"):
        for name, off in (("pref_ftx", 0.0), ("rpo_alpha", None)):
            if getattr(pref, name) not in (off, 0.0):
                raise ConfigError(
                    f"{cfg.where(name)}: the SFT term is a stage dpo option; stage {stage} here has none "
                    "(LLaMA-Factory's KTO pref_ftx is not implemented): drop it"
                )


def chosen_nll(logps: SequenceLogps) -> torch.Tensor:
    """TRL's NLL term (DPO's sft loss, CPO's cpo_alpha term): the mean NLL over the micro-batch's chosen tokens."""
    c_sums, c_tokens = logps.sums.chunk(2)[0], logps.tokens.chunk(2)[0]
    return -c_sums.sum() / c_tokens.sum().clamp(min=1)


def pair_metrics(rewards: torch.Tensor, logps: torch.Tensor) -> dict[str, torch.Tensor]:
    """PAIR_METRICS from the per-sequence rewards and log-probabilities (chosen sequences first)."""
    chosen, rejected = rewards.detach().chunk(2)
    c_logps, r_logps = logps.detach().chunk(2)
    return {
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/accuracies": (chosen > rejected).float(),
        "rewards/margins": chosen - rejected,
        "logps/chosen": c_logps,
        "logps/rejected": r_logps,
    }


def reference_logps(
    model: torch.nn.Module,
    reference: torch.nn.Module | None,
    batch: dict[str, torch.Tensor],
    count: int,
    adapter_reference: bool,
    prefix: str = "",
) -> SequenceLogps:
    """Log-probabilities under the reference: `reference`, or the policy with its adapters disabled."""
    with torch.no_grad():
        if reference is not None:
            return run_logps(reference, batch, count, prefix)[1]
        if not adapter_reference:
            raise RuntimeError("a reference-based loss needs a reference model")
        with adapters_disabled(model):
            return run_logps(getattr(model, "module", model), batch, count, prefix)[1]
