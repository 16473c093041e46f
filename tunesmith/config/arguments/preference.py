"""PreferenceArguments: Preference and reward training (DPO, KTO, ORPO, SimPO, reward models): losses, reference model."""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.config.fields import arg

# TRL's CPOTrainer (reference-free) with loss_type sigmoid, hinge, ipo, simpo
CPO_LOSSES = ("cpo", "cpo_hinge", "cpo_ipo", "cpo_simpo")
PAIR_LOSSES = ("sigmoid", "hinge", "ipo", "bco_pair", "robust", "orpo", "simpo", "sft", *CPO_LOSSES)


@dataclass
class PreferenceArguments:
    """Preference and reward training (DPO, KTO, ORPO, SimPO, reward models): losses, reference model."""

    pref_beta: float = arg(
        0.1,
        "Temperature beta of the preference loss (DPO/KTO/ORPO/SimPO); ORPO's weight of the odds-ratio term.",
        minimum=0.0,
        exclusive_minimum=True,
    )
    pref_ftx: float = arg(
        0.0,
        "LLaMA-Factory's SFT term in stage dpo: weight of each pair's chosen-answer NLL (its per-token mean), "
        "averaged over the pairs.",
        minimum=0.0,
    )
    rpo_alpha: float | None = arg(
        None,
        "RPO (ms-swift) in stage dpo: weight of the NLL term, the mean NLL over the micro-batch's chosen "
        "tokens (pref_loss sft with loss_weights); None: none.",
        minimum=0.0,
    )
    pref_loss: str | list[str] = arg(
        "sigmoid",
        "DPO-stage loss (sigmoid, hinge, ipo, bco_pair, robust, orpo, simpo, sft) or a list (loss_weights); "
        "alone: cpo, cpo_hinge, cpo_ipo, cpo_simpo (TRL's CPO).",
    )
    loss_weights: list[float] | None = arg(
        None,
        "Weight of each pref_loss entry (default 1 each).",
    )
    simpo_gamma: float = arg(0.5, "SimPO's target reward margin gamma (simpo, cpo_simpo).")
    cpo_alpha: float = arg(
        1.0,
        "CPO (pref_loss cpo*): weight of the NLL term, the mean NLL over the micro-batch's chosen tokens "
        "(0: pure SimPO or AlphaPO with cpo_simpo).",
        minimum=0.0,
    )
    alphapo_alpha: float = arg(
        0.0,
        "AlphaPO (pref_loss cpo*): reward (1 - p^-alpha) / alpha of an answer's probability p (per-token mean "
        "for cpo_ipo/cpo_simpo) instead of log p; 0: log p.",
    )
    dpo_label_smoothing: float = arg(
        0.0,
        "Robust/conservative DPO: the probability that a pair's labels are flipped (sigmoid, robust).",
        aliases=("label_smoothing",),
        minimum=0.0,
        maximum=0.5,
    )
    ld_alpha: float | None = arg(
        None,
        "LD-DPO: weight of the tokens of the longer answer past the shorter's length (1 = plain DPO).",
        minimum=0.0,
        maximum=1.0,
    )
    kto_chosen_weight: float = arg(
        1.0,
        "KTO weight of the desirable (kto_tag true) examples' loss.",
        aliases=("desirable_weight",),
        minimum=0.0,
    )
    kto_rejected_weight: float = arg(
        1.0,
        "KTO weight of the undesirable (kto_tag false) examples' loss.",
        aliases=("undesirable_weight",),
        minimum=0.0,
    )
    ref_model: str | None = arg(
        None,
        "Reference model (path or hub id); unset: a frozen copy of the starting model (LoRA: the base with "
        "adapters disabled, no second copy).",
    )
    ref_model_adapters: str | None = arg(
        None, "LoRA adapter(s) applied to ref_model (comma-separated paths)."
    )
    ref_model_quantization_bit: int | None = arg(
        None,
        "Load ref_model quantized to this many bits (4 or 8, bitsandbytes).",
        choices=(None, 4, 8),
    )
    precompute_ref_log_probs: bool = arg(
        False,
        "Compute the reference log-probabilities once before training (no reference model in memory while "
        "training).",
    )
    sync_ref_model: bool = arg(
        False,
        "TR-DPO: move the reference towards the policy every ref_model_sync_steps steps (a reference copy only).",
    )
    ref_model_mixup_alpha: float = arg(
        0.6,
        "TR-DPO: reference <- alpha x policy + (1 - alpha) x reference at each sync.",
        minimum=0.0,
        maximum=1.0,
    )
    ref_model_sync_steps: int = arg(512, "TR-DPO: optimizer steps between reference syncs.", minimum=1)
    center_rewards_coefficient: float | None = arg(
        None,
        "Reward model: weight of the penalty on the squared mean reward of each pair (centres rewards on 0).",
        minimum=0.0,
    )
    disable_dropout: bool = arg(
        True, "Turn dropout off in the policy (and reference) model for preference training."
    )
