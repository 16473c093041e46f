"""CPO as TRL (`CPOConfig`, a TRL-style `stage: cpo`) and ms-swift (`--rlhf_type cpo|simpo`, which run TRL's
CPOTrainer) spell it: their loss_type onto tunesmith's CPO losses (pref_loss cpo, cpo_hinge, cpo_ipo, cpo_simpo)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunesmith.utils.errors import ConfigError

# CPOConfig.loss_type -> pref_loss; TRL's `alphapo` is simpo with cpo_alpha 0 (CPOConfig.__post_init__)
LOSS_TYPES = {"sigmoid": "cpo", "hinge": "cpo_hinge", "ipo": "cpo_ipo", "simpo": "cpo_simpo"}
SMOOTHED = ("sigmoid", "simpo", "alphapo")  # CPOTrainer ignores label_smoothing for hinge and ipo


def given(context: Mapping[str, Any], *names: str) -> bool:
    """True when the config sets any of `names` (a peer name or tunesmith's)."""
    return any(name in context for name in names)


def loss_type(value: Any) -> dict[str, Any]:
    """A CPO `loss_type` (one name) -> pref_loss (alphapo: cpo_simpo with cpo_alpha 0)."""
    items = value if isinstance(value, list) else [v for v in str(value).split(",") if v.strip()]
    key = str(items[0]).strip().lower() if len(items) == 1 else ""
    if key == "alphapo":
        return {"pref_loss": "cpo_simpo", "cpo_alpha": 0.0}
    if key not in LOSS_TYPES:
        raise ConfigError(f"{value!r}: CPO takes one loss_type, one of: {', '.join(LOSS_TYPES)}, alphapo")
    return {"pref_loss": LOSS_TYPES[key]}


def as_dpo(context: Mapping[str, Any]) -> dict[str, Any]:
    """CPO is stage dpo with a CPO loss: `cpo` (CPOConfig's sigmoid) unless loss_type names another."""
    return {"stage": "dpo", **({} if given(context, "loss_type", "pref_loss") else {"pref_loss": "cpo"})}


def smooths(context: Mapping[str, Any]) -> bool:
    """Whether CPOTrainer applies label_smoothing with the config's loss_type (sigmoid by default)."""
    return str(context.get("loss_type", "sigmoid")).strip().lower() in SMOOTHED


def swift_rlhf(key: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """ms-swift `--rlhf_type cpo` (loss_type sigmoid by default) and `--rlhf_type simpo` (CPO with loss_type simpo
    and beta 2.0 unless given: RLHFArguments._init_simpo); a simpo loss takes swift's simpo_gamma default, 1."""
    out = as_dpo(context)
    if key == "simpo" and "pref_loss" in out:
        out["pref_loss"] = "cpo_simpo"
    if key == "simpo" and not given(context, "beta", "pref_beta"):
        out["pref_beta"] = 2.0
    loss = str(context.get("loss_type", "")).strip().lower()
    simpo = out.get("pref_loss") == "cpo_simpo" or loss in ("simpo", "alphapo")
    if simpo and not given(context, "simpo_gamma"):
        out["simpo_gamma"] = 1.0
    return out


def for_cpo(context: Mapping[str, Any], key: str, values: tuple[str, ...]) -> bool:
    """True when the config's `key` (stage, rlhf_type) is one of `values`."""
    return str(context.get(key, "")).strip().lower() in values
