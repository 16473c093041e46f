"""`python -m benchmarks` (`make bench`): tunesmith vs transformers.Trainer, interleaved and repeated.

Every round measures the fp32 matmul peak, then runs every job once, each in a fresh forked process (its memory
is its own; the libraries are imported once, before forking). The table gives medians over the rounds with the
spread (min-max), per wall-clock second and per CPU-second of the job's process; the speed-ups over Trainer's
default padding and over Trainer + DataCollatorWithFlattening and the MFU are taken per CPU-second (the matmul
peak too), which a machine shared with other work disturbs far less than the wall clock; then the memory
planner's estimate against the measured peak. JSON goes to `--output` (default
benchmarks/results.json), the markdown table to stdout.

Usage: `python -m benchmarks [--rounds 3] [--threads 1] [--models tiny 25M] [--workloads ...] [--output FILE]`
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

from benchmarks.forked import in_child
from benchmarks.memory import MALLOC_ENV
from benchmarks.suite import MODELS, matmul_peak, run_job

JOBS = {
    "skewed SFT": (
        "tunesmith group_by_length",
        "tunesmith padding_free",
        "HF Trainer, padding",
        "HF Trainer, flattening",
    ),
    "uniform blocks": ("tunesmith normal", "HF Trainer, padding"),
    "LoRA, skewed SFT": (
        "tunesmith group_by_length",
        "tunesmith padding_free",
        "HF Trainer, padding",
        "HF Trainer, flattening",
    ),
}


def warm_imports() -> None:
    """Import what every job needs once, so forked jobs start in milliseconds."""
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import transformers  # noqa: F401

    import tunesmith.data.batching  # noqa: F401
    import tunesmith.model  # noqa: F401
    import tunesmith.train.trainer  # noqa: F401


def run_rounds(
    models: list[str], workloads: list[str], rounds: int, threads: int, scale: float
) -> tuple[list[dict], dict]:
    jobs = [(m, w, c) for m in models for w in workloads for c in JOBS[w]]
    results: list[dict] = []
    peaks: dict[str, list[float]] = {"wall": [], "cpu": []}
    for r in range(rounds):
        peak = in_child(matmul_peak, threads)
        cpu_peak = in_child(matmul_peak, threads, 1024, 7, "cpu", False, True)
        peaks["wall"].append(peak)
        peaks["cpu"].append(cpu_peak)
        order = jobs[r % len(jobs) :] + jobs[: r % len(jobs)]  # rotate: no contender always runs first
        for model, workload, contender in order:
            row = in_child(run_job, model, workload, contender, threads, "cpu", False, scale)
            flops = row["flops_per_token"]
            row.update(round=r, matmul_peak=peak, matmul_peak_cpu=cpu_peak, mfu_wall=row["tokens_per_s"] * flops / peak,
                       mfu=row["tokens_per_cpu_s"] * flops / cpu_peak)  # fmt: skip
            results.append(row)
            print(f"round {r + 1}: {model} / {workload} / {contender}: {row['tokens_per_s']:,.0f} tokens/s, "
                  f"{row['tokens_per_cpu_s']:,.0f} per CPU-s", file=sys.stderr, flush=True)  # fmt: skip
    return results, peaks


def summarise(results: list[dict]) -> list[dict]:
    """Medians and spreads per (model, workload, contender), with the speed-ups over the two Trainer baselines
    (per CPU-second; `_wall` ones per wall-clock second)."""
    groups: dict[tuple, list[dict]] = {}
    for row in results:
        groups.setdefault((row["model"], row["workload"], row["contender"]), []).append(row)
    summary = []
    for (model, workload, contender), rows in groups.items():
        speed, cpu = [r["tokens_per_s"] for r in rows], [r["tokens_per_cpu_s"] for r in rows]
        summary.append({
            "model": model, "workload": workload, "contender": contender, "runs": len(rows),
            "tokens_per_s": statistics.median(speed), "spread": [min(speed), max(speed)],
            "tokens_per_cpu_s": statistics.median(cpu), "cpu_spread": [min(cpu), max(cpu)],
            "padding": statistics.median(r["padding"] for r in rows),
            "first_step_s": statistics.median(r["first_step_s"] for r in rows),
            "peak_mib": statistics.median(r["peak_growth"] for r in rows) / 2**20,
            "estimate_mib": rows[0]["estimate"] / 2**20,
            "mfu": statistics.median(r["mfu"] for r in rows),
            "mfu_wall": statistics.median(r["mfu_wall"] for r in rows),
        })  # fmt: skip
    for row in summary:
        for label, baseline in (
            ("vs_padding", "HF Trainer, padding"),
            ("vs_flattening", "HF Trainer, flattening"),
        ):
            base = next((s for s in summary if s["contender"] == baseline and s["model"] == row["model"]
                         and s["workload"] == row["workload"]), None)  # fmt: skip
            row[label] = row["tokens_per_cpu_s"] / base["tokens_per_cpu_s"] if base else None
            row[f"{label}_wall"] = row["tokens_per_s"] / base["tokens_per_s"] if base else None
    return summary


def table(summary: list[dict]) -> str:
    lines = [
        "| model | workload | contender | valid tokens/s (min-max) | per CPU-s (min-max) | vs HF padding "
        "| vs HF flattening | padding | first step (s) | peak MiB | planner MiB (ratio) | MFU |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summary:
        ratio = s["estimate_mib"] / s["peak_mib"] if s["peak_mib"] > 0 else float("nan")
        lines.append(
            f"| {s['model']} | {s['workload']} | {s['contender']} | {s['tokens_per_s']:,.0f} "
            f"({s['spread'][0]:,.0f}-{s['spread'][1]:,.0f}) | {s['tokens_per_cpu_s']:,.0f} "
            f"({s['cpu_spread'][0]:,.0f}-{s['cpu_spread'][1]:,.0f}) | {_x(s['vs_padding'])} | {_x(s['vs_flattening'])} "
            f"| {s['padding']:.1%} | {s['first_step_s']:.1f} | {s['peak_mib']:,.0f} "
            f"| {s['estimate_mib']:,.0f} ({ratio:.2f}) | {s['mfu']:.1%} |"
        )
    return "\n".join(lines)


def _x(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def machine(threads: int, peaks: dict[str, list[float]], seconds: float) -> dict[str, Any]:
    import torch
    import transformers

    from tunesmith.utils.environment import package_version

    with open("/proc/cpuinfo") as f:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
            platform.processor(),
        )
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cores": os.cpu_count(), "threads": threads, "load_average": os.getloadavg(),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": package_version("peft"), "matmul_peak_gflops": [p / 1e9 for p in peaks["wall"]],
        "matmul_peak_gflops_per_cpu_s": [p / 1e9 for p in peaks["cpu"]], "seconds": seconds,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="*", default=["tiny", "25M"], choices=list(MODELS))
    parser.add_argument("--workloads", nargs="*", default=list(JOBS), choices=list(JOBS))
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each workload's examples")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results.json"))
    args = parser.parse_args()
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):  # malloc reads these at start: re-execute
        env = {**os.environ, **MALLOC_ENV, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *sys.argv[1:]], env)
    start = time.perf_counter()
    warm_imports()
    results, peaks = run_rounds(args.models, args.workloads, args.rounds, args.threads, args.scale)
    summary = summarise(results)
    info = machine(args.threads, peaks, time.perf_counter() - start)
    info.update(rounds=args.rounds, scale=args.scale, models=args.models, workloads=args.workloads)
    with open(args.output, "w") as f:
        json.dump({"machine": info, "summary": summary, "runs": results}, f, indent=1)
    print(f"{info['date']}, {info['cpu']}, {info['cores']} cores, {info['threads']} thread(s) per run, load "
          f"{info['load_average'][0]:.1f}, torch {info['torch']}, transformers {info['transformers']}, "
          f"peft {info['peft']}, fp32 matmul peak {statistics.median(peaks['wall']) / 1e9:.1f} GFLOP/s "
          f"({statistics.median(peaks['cpu']) / 1e9:.1f} per CPU-s), "
          f"{info['seconds']:.0f} s")  # fmt: skip
    print(table(summary))


if __name__ == "__main__":
    main()
