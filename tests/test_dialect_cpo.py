"""CPO as its peers state it: ms-swift `--rlhf_type cpo|simpo` (TRL's CPOTrainer with swift's defaults), a
TRL-style `stage: cpo` with CPOConfig's names, the corpus runner's cpo.py line; and the options CPO would ignore,
refused before anything loads."""

from __future__ import annotations

import pytest

from compat.entries import CORPUS, Entry, invocation
from tunesmith.config import load_config
from tunesmith.train.losses.cpo import check_options
from tunesmith.utils.errors import ConfigError

BASE = ["--model", "builtin:tiny", "--dataset", "demo", "--dataset_dir", "builtin:demo", "report_to=none"]
TRL = ["dialect=trl", "stage=cpo", *BASE]


def pref(args: list[str]) -> dict:
    cfg = load_config(None, args)
    check_options(cfg)
    p = cfg.preference
    keys = ("pref_loss", "pref_beta", "cpo_alpha", "simpo_gamma", "alphapo_alpha", "dpo_label_smoothing")
    return {"stage": cfg.train.stage, **{k: getattr(p, k) for k in keys}}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--rlhf_type", "cpo"], {"pref_loss": "cpo", "pref_beta": 0.1, "cpo_alpha": 1.0}),
        (["--rlhf_type", "simpo"], {"pref_loss": "cpo_simpo", "pref_beta": 2.0, "simpo_gamma": 1.0}),
        (["--rlhf_type", "simpo", "--beta", "0.5", "--cpo_alpha", "0"], {"pref_beta": 0.5, "cpo_alpha": 0.0}),
        (["--rlhf_type", "simpo", "--simpo_gamma", "0.3"], {"simpo_gamma": 0.3}),
        (["--rlhf_type", "simpo", "--loss_type", "sigmoid"], {"pref_loss": "cpo", "pref_beta": 2.0}),
        (["--rlhf_type", "cpo", "--loss_type", "simpo"], {"pref_loss": "cpo_simpo", "simpo_gamma": 1.0}),
        (["--rlhf_type", "cpo", "--loss_type", "ipo"], {"pref_loss": "cpo_ipo", "simpo_gamma": 0.5}),
        (["--rlhf_type", "cpo", "--loss_type", "alphapo"], {"cpo_alpha": 0.0, "simpo_gamma": 1.0}),
        (["--rlhf_type", "cpo", "--label_smoothing", "0.1"], {"dpo_label_smoothing": 0.1}),
    ],
)
def test_swift_cpo_and_simpo_are_trl_cpo_with_swift_defaults(args, expected):
    got = pref([*args, *BASE])
    assert got["stage"] == "dpo"
    assert {k: got[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], {"pref_loss": "cpo", "pref_beta": 0.1, "cpo_alpha": 1.0, "simpo_gamma": 0.5}),
        (
            ["loss_type=simpo", "cpo_alpha=0.5", "simpo_gamma=0.8"],
            {"pref_loss": "cpo_simpo", "cpo_alpha": 0.5},
        ),
        (
            ["loss_type=alphapo", "alpha=0.3"],
            {"pref_loss": "cpo_simpo", "cpo_alpha": 0.0, "alphapo_alpha": 0.3},
        ),
        (["loss_type=hinge", "label_smoothing=0.2"], {"pref_loss": "cpo_hinge", "dpo_label_smoothing": 0.0}),
        (["label_smoothing=0.2"], {"dpo_label_smoothing": 0.2}),
    ],
)
def test_trl_stage_cpo_takes_cpo_config_names(args, expected):
    got = pref([*TRL, *args])
    assert got["stage"] == "dpo"
    assert {k: got[k] for k in expected} == expected


def test_trl_stage_cpo_keeps_trl_defaults_and_dpo_keeps_its_losses():
    cfg = load_config(None, TRL)
    assert cfg.train.learning_rate == 1e-6  # CPOConfig's
    assert (
        load_config(None, ["dialect=trl", "stage=dpo", "loss_type=ipo", *BASE]).preference.pref_loss == "ipo"
    )


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--rlhf_type", "cpo", "--loss_type", "sigmoid", "ipo"], "loss_type"),  # one loss_type only
        (["dialect=trl", "stage=cpo", "loss_type=robust"], "loss_type"),
        (["stage=dpo", "cpo_alpha=0.5"], "cpo_alpha"),  # ignored without a CPO loss
        (["stage=dpo", "alphapo_alpha=0.5"], "alphapo_alpha"),
        (["stage=kto", "pref_loss=cpo", "cpo_alpha=0.5"], "cpo_alpha"),  # CPO is a stage dpo loss
        (["stage=dpo", "pref_loss=cpo", "rpo_alpha=0.5"], "rpo_alpha"),
        (["stage=dpo", "pref_loss=cpo", "pref_ftx=0.5"], "pref_ftx"),
        (["--rlhf_type", "cpo", "--ref_model", "builtin:tiny"], "ref_model"),
        (["stage=dpo", "pref_loss=cpo_ipo", "dpo_label_smoothing=0.1"], "dpo_label_smoothing"),
        (["stage=dpo", "pref_loss=cpo,sft"], "pref_loss"),
    ],
)
def test_options_cpo_would_ignore_are_refused(args, key):
    with pytest.raises(ConfigError, match=key):
        pref([*args, *BASE])


@pytest.mark.parametrize("name", ["trl__cpo__1.cmd", "trl__cpo__2.cmd"])
def test_runner_launches_trl_cpo_script_as_trl_stage_cpo(name):
    inv = invocation(Entry("hf_trl", CORPUS / "hf_trl" / name))
    assert (inv.command, inv.stage, inv.flags.value("stage"), inv.flags.value("dialect")) == (
        "train",
        "cpo",
        "cpo",
        "trl",
    )


def test_every_cpo_config_name_is_known():
    """CPOConfig's names beyond transformers' TrainingArguments, read from the installed TRL."""
    pytest.importorskip("trl")
    import dataclasses

    from transformers import TrainingArguments
    from trl.experimental.cpo import CPOConfig

    from tunesmith.config.catalog import argument_catalog

    known = {n for e in argument_catalog() for n in (e["name"], *(e.get("aliases") or ()))}
    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    names = {f.name for f in dataclasses.fields(CPOConfig) if f.init} - base
    assert {"cpo_alpha", "simpo_gamma", "alpha", "loss_type"} <= names
    assert names <= known, sorted(names - known)


def test_plan_refuses_cpo_alpha_outside_cpo(capsys):
    from tunesmith.cli import main

    assert main(["plan", "model=builtin:tiny", "stage=kto", "cpo_alpha=0.5", "--no-data"]) == 2
    assert "cpo_alpha" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["pref_ftx=0.5", "rpo_alpha=0.5"])
def test_plan_refuses_the_sft_term_in_kto(capsys, option):
    from tunesmith.cli import main

    assert main(["plan", "model=builtin:tiny", "stage=kto", option, "--no-data"]) == 2
    assert option.split("=")[0] in capsys.readouterr().err


@pytest.mark.parametrize(("trainer", "instead"), [("bco", "stage kto"), ("prm", "stage rm")])
def test_trl_trainers_not_here_are_refused_with_the_stage_to_use(trainer, instead):
    with pytest.raises(ConfigError, match=f"'stage'.*TRL's {trainer.upper()} trainer.*{instead}"):
        load_config(None, ["dialect=trl", f"stage={trainer}", *BASE])
