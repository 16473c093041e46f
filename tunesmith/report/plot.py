"""Loss / eval loss / learning-rate PNGs from trainer_log.jsonl, smoothed like TensorBoard."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from tunesmith.report.jsonl import FILENAME, read_log
from tunesmith.utils.errors import DataError

SMOOTHING = 0.6  # TensorBoard's default smoothing weight
FIGSIZE, DPI = (8.0, 5.0), 100  # 800 x 500 pixels
PLOTS = (("loss", "training_loss.png"), ("eval_loss", "training_eval_loss.png"), ("lr", "training_lr.png"))


def ema_smooth(values: Sequence[float], weight: float = SMOOTHING) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average debiased by 1 - weight**n; non-finite values pass
    through and do not enter the average."""
    out, last, count = [], 0.0, 0
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        last = last * weight + (1 - weight) * value
        count += 1
        out.append(last / (1 - weight**count) if weight < 1 else value)
    return out


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], float("nan") if r[key] is None else float(r[key])) for r in rows if key in r]
    return [p[0] for p in points], [p[1] for p in points]


def _draw(steps: list[int], values: list[float], key: str, path: Path, weight: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    ax.plot(steps, values, color="#1f77b4", alpha=0.3, label="original")
    ax.plot(steps, ema_smooth(values, weight), color="#1f77b4", label=f"smoothed ({weight})")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(f"{key} of {path.parent.name}")
    ax.legend()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_run(output_dir: str | Path, weight: float = SMOOTHING) -> list[Path]:
    """Write one PNG per metric found in `output_dir/trainer_log.jsonl` (loss, eval_loss, lr); returns their paths."""
    output_dir = Path(output_dir)
    if not (output_dir / FILENAME).is_file():
        raise DataError(f"{output_dir / FILENAME}: not found; give the output_dir of a tunesmith run")
    rows = read_log(output_dir)
    written = []
    for key, name in PLOTS:
        steps, values = _series(rows, key)
        if steps:
            _draw(steps, values, key, output_dir / name, weight)
            written.append(output_dir / name)
    return written
