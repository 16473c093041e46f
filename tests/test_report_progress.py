"""The progress bar shows step count, loss, lr, tokens/s and an ETA, and nothing when disabled."""

from __future__ import annotations

from tunesmith.report.progress import Progress


def test_progress_line_shows_metrics_and_eta(capsys):
    bar = Progress(total=10, initial=2, enabled=True)
    bar.update({"loss": 1.23456, "lr": 2e-4, "tokens_per_second": 5120.0, "grad_norm": 0.5})
    bar.update({"loss": 1.1, "lr": 1e-4, "tokens_per_second": 5000.0})
    bar.close()
    line = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "4/10" in line and "loss=1.1" in line and "lr=0.0001" in line and "tok/s=5000" in line
    assert "<" in line  # tqdm's elapsed<remaining (ETA) field
    assert "grad_norm" not in line


def test_disabled_progress_prints_nothing(capsys):
    bar = Progress(total=10, initial=0, enabled=False)
    bar.update({"loss": 1.0})
    bar.close()
    assert capsys.readouterr().err == ""
