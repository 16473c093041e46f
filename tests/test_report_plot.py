"""Loss / eval loss / lr plots: TensorBoard smoothing checked by hand, real PNGs of the promised size, the CLI."""

from __future__ import annotations

import json
import math

import matplotlib.image
import pytest

from tunesmith.cli import main
from tunesmith.report.plot import ema_smooth, plot_run


def test_ema_matches_hand_computed_debiased_average():
    # weight 0.5: last = 0.5*last + 0.5*v; debiased by 1 - 0.5**n
    # v=4: last 2,   /0.5   -> 4
    # v=2: last 2,   /0.75  -> 2.6667
    # v=8: last 5,   /0.875 -> 5.7143
    assert ema_smooth([4.0, 2.0, 8.0], 0.5) == pytest.approx([4.0, 8 / 3, 5 / 0.875])
    smoothed = ema_smooth([1.0, float("nan"), 3.0], 0.6)  # NaN passes through and does not enter the average
    assert smoothed[0] == 1.0 and math.isnan(smoothed[1])
    assert smoothed[2] == pytest.approx((0.6 * 0.4 + 0.4 * 3.0) / (1 - 0.36))
    assert ema_smooth([5.0, 1.0], 0.0) == [5.0, 1.0]


def write_log(out, with_eval: bool) -> None:
    rows = [{"step": s, "loss": 3.0 / s, "lr": 1e-3 * s} for s in range(1, 9)]
    if with_eval:
        rows += [{"step": 4, "eval_loss": 1.1}, {"step": 8, "eval_loss": 0.9}]
    out.mkdir(parents=True, exist_ok=True)
    (out / "trainer_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_plot_run_writes_800x500_pngs(tmp_path):
    write_log(tmp_path, with_eval=True)
    paths = plot_run(tmp_path)
    assert [p.name for p in paths] == ["training_loss.png", "training_eval_loss.png", "training_lr.png"]
    for path in paths:
        assert matplotlib.image.imread(path).shape[:2] == (500, 800)


def test_cli_plot_command(tmp_path, capsys):
    write_log(tmp_path, with_eval=False)
    assert main(["plot", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["training_loss.png", "training_lr.png"]
    assert "training_loss.png" in capsys.readouterr().out
    assert main(["plot", str(tmp_path / "missing")]) == 2
