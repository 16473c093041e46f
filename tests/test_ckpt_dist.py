"""Checkpoints with two gloo ranks: one complete checkpoint holds each rank's RNG and data files, and resuming
restores each rank's own generators."""

from __future__ import annotations

import json

import pytest
from dist_utils import run_script

from tunesmith.train import checkpoint_find as ckpt_find

pytestmark = pytest.mark.dist


def test_every_rank_saves_and_restores_its_own_rng(tmp_path):
    run_script("run_ckpt.py", str(tmp_path), nproc=2, timeout=300)
    folder = tmp_path / "checkpoint-2"
    assert ckpt_find.problem(folder) is None and not (tmp_path / "checkpoint-2.tmp").exists()
    listed = ckpt_find.marker_files(json.loads((folder / ckpt_find.MARKER).read_text()))
    assert {"rng_state_0.pth", "rng_state_1.pth", "model.safetensors", "optimizer.pt"} <= set(listed)
    results = [json.loads((tmp_path / f"result_{r}.json").read_text()) for r in (0, 1)]
    assert results[0]["after_save"] != results[1]["after_save"]
    for r in results:
        assert r["after_resume"] == r["after_save"]
