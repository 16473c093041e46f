"""Schedulers (curves equal transformers.get_scheduler), optimizers by name, weight-decay groups, Muon plugin."""

from __future__ import annotations

import types

import pytest
import torch
from helpers import tiny_model
from transformers import get_scheduler
from transformers.optimization import get_wsd_schedule

from tunesmith.config.plugins import LR_SCHEDULER, OPTIM
from tunesmith.train import optim_plugins
from tunesmith.train.optimizers import build_optimizer, no_decay_names, parse_optim_args
from tunesmith.train.schedulers import build_plugin_scheduler, build_scheduler
from tunesmith.utils.errors import ConfigError

TOTAL, WARMUP, LR = 40, 6, 2e-3


def curve(scheduler, optimizer) -> list[float]:
    out = []
    for _ in range(TOTAL + 3):
        out.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return out


def fresh() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)


SCHEDULES = [
    ("linear", {}),
    ("cosine", {}),
    ("cosine", {"num_cycles": 1.5}),
    ("cosine_with_restarts", {"num_cycles": 3}),
    ("polynomial", {"power": 2.0, "lr_end": 1e-5}),
    ("constant", {}),
    ("constant_with_warmup", {}),
    ("inverse_sqrt", {}),
    ("inverse_sqrt", {"timescale": 20}),
    ("cosine_with_min_lr", {"min_lr": 1e-4}),
    ("cosine_with_min_lr", {"min_lr_rate": 0.1}),
]


@pytest.mark.parametrize(("name", "kwargs"), SCHEDULES)
def test_schedule_matches_get_scheduler(name, kwargs):
    o1, o2 = fresh(), fresh()
    ours = curve(build_scheduler(o1, name, WARMUP, TOTAL, kwargs), o1)
    theirs = curve(get_scheduler(name, o2, WARMUP, TOTAL, scheduler_specific_kwargs=kwargs), o2)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    assert len(set(ours)) > 1 or name == "constant"


def test_learning_rate_end_and_power_fields():
    o1, o2 = fresh(), fresh()
    ours = curve(build_scheduler(o1, "polynomial", WARMUP, TOTAL, {}, learning_rate_end=1e-4, power=3.0), o1)
    ref = get_scheduler(
        "polynomial", o2, WARMUP, TOTAL, scheduler_specific_kwargs={"lr_end": 1e-4, "power": 3.0}
    )
    assert ours == pytest.approx(curve(ref, o2))
    o1, o2 = fresh(), fresh()
    ours = curve(build_scheduler(o1, "cosine", WARMUP, TOTAL, {}, learning_rate_end=2e-4), o1)
    ref = get_scheduler("cosine_with_min_lr", o2, WARMUP, TOTAL, scheduler_specific_kwargs={"min_lr": 2e-4})
    assert ours == pytest.approx(curve(ref, o2))
    assert min(ours[WARMUP:]) == pytest.approx(2e-4)


def test_scheduler_errors_name_the_field():
    with pytest.raises(ConfigError, match="lr_scheduler_kwargs: 'bogus'"):
        build_scheduler(fresh(), "cosine", 0, 10, {"bogus": 1})


def test_min_lr_with_a_linear_schedule_warns_and_changes_nothing(caplog):
    o1, o2 = fresh(), fresh()
    with caplog.at_level("WARNING", logger="tunesmith"):
        ours = curve(build_scheduler(o1, "linear", WARMUP, TOTAL, {}, learning_rate_end=1e-5), o1)
    assert "learning_rate_end (min_lr) has no effect with the linear schedule" in caplog.text
    assert ours == curve(build_scheduler(o2, "linear", WARMUP, TOTAL, {}), o2)


@pytest.mark.parametrize(
    ("warmup_type", "decay_type"), [("linear", "cosine"), ("cosine", "linear"), ("1-sqrt", "1-sqrt")]
)
def test_wsd_matches_transformers(warmup_type, decay_type):
    kw = {"num_decay_steps": 10, "min_lr_ratio": 0.1, "warmup_type": warmup_type, "decay_type": decay_type}
    spec = LR_SCHEDULER.parse({"name": "warmup_stable_decay", **kw}, "lr_scheduler_config")
    o1, o2, o3 = fresh(), fresh(), fresh()
    plugin = curve(build_plugin_scheduler(o1, spec, WARMUP, TOTAL), o1)
    by_type = curve(build_scheduler(o2, "warmup_stable_decay", WARMUP, TOTAL, kw), o2)
    ref = curve(
        get_wsd_schedule(
            o3,
            WARMUP,
            10,
            num_training_steps=TOTAL,
            **{k: v for k, v in kw.items() if k != "num_decay_steps"},
        ),
        o3,
    )
    assert plugin == pytest.approx(ref) and by_type == pytest.approx(ref)


def args(**kw) -> types.SimpleNamespace:
    base = {
        "optim": "adamw_torch",
        "optim_args": None,
        "optim_target_modules": None,
        "optim_config": None,
        "learning_rate": 1e-2,
        "weight_decay": 0.1,
        "adam_beta1": 0.9,
        "adam_beta2": 0.98,
        "adam_epsilon": 1e-6,
    }
    return types.SimpleNamespace(**{**base, **kw})


def test_weight_decay_skips_bias_and_norms():
    model = tiny_model("qwen2")  # qwen2 has q/k/v biases
    skip = no_decay_names(model)
    assert "model.norm.weight" in skip and "model.layers.0.input_layernorm.weight" in skip
    assert "model.layers.0.self_attn.q_proj.bias" in skip
    assert "model.layers.0.self_attn.q_proj.weight" not in skip
    opt = build_optimizer(model, args())
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert set(plain["names"]) == skip
    assert opt.defaults["betas"] == (0.9, 0.98) and opt.defaults["eps"] == 1e-6


def test_optim_args_string_and_dict():
    assert parse_optim_args("momentum=0.9,nesterov=true") == {"momentum": 0.9, "nesterov": True}
    opt = build_optimizer(tiny_model(), args(optim="sgd", optim_args="momentum=0.5"))
    assert opt.defaults["momentum"] == 0.5
    with pytest.raises(ConfigError, match="optim_args"):
        parse_optim_args("momentum")
    with pytest.raises(ConfigError, match="optim_args"):
        build_optimizer(tiny_model(), args(optim="sgd", optim_args={"betas": (0.1, 0.2)}))


def loss_after_steps(optimizer_args, steps: int = 8) -> tuple[float, float]:
    torch.manual_seed(0)
    model = tiny_model("llama").train()
    opt = build_optimizer(model, optimizer_args)
    ids = torch.randint(3, 300, (4, 16))
    losses = []
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    return losses[0], losses[-1]


@pytest.mark.parametrize(
    "name",
    [
        "adamw_torch",
        "adamw_torch_fused",
        "adamw_8bit",
        "paged_adamw_8bit",
        "adafactor",
        "sgd",
        "lion",
        "adagrad",
        "rmsprop",
    ],
)
def test_each_optimizer_trains(name):
    lr = {"sgd": 0.5, "adagrad": 0.05, "lion": 1e-3}.get(name, 1e-2)
    first, last = loss_after_steps(args(optim=name, learning_rate=lr))
    assert last < first * 0.97, (name, first, last)


def test_muon_plugin_orthogonalises_and_trains():
    g = torch.randn(32, 16)
    singular = torch.linalg.svdvals(optim_plugins.newton_schulz(g, 5))
    assert singular.min() > 0.5 and singular.max() < 1.3  # near-orthogonal, unlike g itself
    spec = OPTIM.parse({"name": "muon", "momentum": 0.9}, "optim_config")
    model = tiny_model("llama")
    opt = build_optimizer(model, args(optim_config=spec, learning_rate=0.02))
    kinds = {n: g["use_muon"] for g in opt.param_groups for n in g["names"]}
    assert kinds["model.layers.0.mlp.up_proj.weight"] and not kinds["model.embed_tokens.weight"]
    assert not kinds["model.norm.weight"] and not kinds["lm_head.weight"]
    first, last = loss_after_steps(args(optim_config=spec, learning_rate=0.02))
    assert last < first * 0.95


@pytest.mark.parametrize("decay_all", [False, True])
def test_muon_decay_all_decays_norms_and_biases_as_lf_and_moonlight(decay_all):
    spec = OPTIM.parse({"name": "muon", "decay_all": decay_all}, "optim_config")
    model = tiny_model("llama")
    opt = build_optimizer(model, args(optim_config=spec, learning_rate=0.5, weight_decay=0.1))
    norm = model.model.norm.weight
    before = norm.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # zero gradients: only the decay moves a weight
    factor = 1 - 0.5 * 0.1 if decay_all else 1.0
    torch.testing.assert_close(norm.detach(), before * factor)
