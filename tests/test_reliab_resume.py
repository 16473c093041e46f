"""Resuming never silently keeps a hyper-parameter the config changed: a changed learning rate or weight decay
is an error naming both values, unless `keep_checkpoint_hparams` (then the checkpoint's values are used, as
before); a changed run length is reported and followed."""

from __future__ import annotations

import logging

import pytest
import torch
from helpers import tiny_model

from tunesmith.config import load_config
from tunesmith.train import checkpoint_load as ckpt_load
from tunesmith.train.control import EvalSaveControl
from tunesmith.train.trainer import Trainer
from tunesmith.utils.errors import ConfigError


def _batches(n: int = 6) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(5, 200, (2, 10), generator=g) for _ in range(n)]
    return [{"input_ids": i, "labels": i.clone(), "attention_mask": torch.ones_like(i)} for i in ids]


def _trainer(out, *overrides: str) -> Trainer:
    base = ["model_name_or_path=builtin:tiny", "max_steps=4", "learning_rate=1e-2", "logging_steps=1"]
    args = load_config(
        None, [*base, "report_to=none", "disable_tqdm=true", f"output_dir={out}", *overrides]
    ).train
    return Trainer(tiny_model().train(), args, _batches(), callbacks=[EvalSaveControl(args, None)])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume_check")
    _trainer(out, "save_steps=2").train()
    return out / "checkpoint-2"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("learning_rate=1e-3", "learning_rate: config 0.001, checkpoint 0.01"),
        ("weight_decay=0.1", "weight_decay"),
    ],
)
def test_changed_hyper_parameter_is_an_error(checkpoint, change, named):
    with pytest.raises(ConfigError, match="keep_checkpoint_hparams") as raised:
        ckpt_load.load_checkpoint(_trainer(checkpoint.parent / "x", change), checkpoint)
    assert named in str(raised.value)


def test_keep_checkpoint_hparams_goes_on_with_the_checkpoints(checkpoint, caplog):
    trainer = _trainer(
        checkpoint.parent / "y", "learning_rate=1e-3", "keep_checkpoint_hparams=true", "max_steps=6"
    )
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        ckpt_load.load_checkpoint(trainer, checkpoint)
    assert trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(1e-2)
    assert "continuing with the checkpoint's values" in caplog.text
    assert "max_steps changed from 4 to 6" in caplog.text
    same = _trainer(checkpoint.parent / "z")
    ckpt_load.load_checkpoint(same, checkpoint)  # unchanged config: no complaint
    assert same.state.global_step == 2
