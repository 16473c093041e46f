"""The GPU check (`benchmarks/gpu_check.sh`): tunesmith on CUDA, in one command of at most 8 minutes on one GPU.

Parts, each reported as passed / failed / skipped (with the reason) in `OUT/gpu_check.json` and `OUT/gpu_check.md`:
  1. quickstart: `examples/quickstart.yaml` on CUDA in bf16 against the same run on the CPU in fp32: the logged
     losses agree within bf16 tolerance and the run ends trained (final loss < 0.1).
  2. parity: tunesmith's trainer and transformers.Trainer step for step on CUDA in fp32 (tf32 off): same losses.
  3. throughput: a Qwen2-0.5B-shaped model (random init) on skewed chat SFT and uniform blocks, tunesmith
     strategies (normal, padding_free, dynamic_padding_free, + Liger, + compile) against transformers.Trainer
     (padding, flattening): valid tokens/s, MFU against the bf16 matmul peak measured here, peak memory
     (`max_memory_allocated`) against the memory planner.
  4. sharded: FSDP2 and DeepSpeed ZeRO-3 on a 1-rank mesh for a few steps.
Without CUDA (or with `--dry-run`) every CUDA part is skipped and says so; the CPU side still runs at toy size so
the plumbing is checked (that is what CI runs, tests/test_gpu_check_dry.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.forked import in_child
from benchmarks.suite import matmul_peak, run_job

ROOT = Path(__file__).resolve().parent.parent
JOB_TIMEOUT = (
    90  # seconds per throughput job (torch.compile included); a slower one is reported, not waited for
)
THROUGHPUT = {
    "skewed SFT 1k": (
        "tunesmith normal",
        "tunesmith padding_free",
        "tunesmith dynamic_padding_free",
        "tunesmith padding_free + liger",
        "tunesmith padding_free + compile",
        "HF Trainer, padding",
        "HF Trainer, flattening",
    ),
    "uniform blocks 1k": ("tunesmith normal", "HF Trainer, padding"),
}


def cli(
    args: list[str], timeout: int, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`tunesmith ARGS` in a fresh process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    cmd = [sys.executable, "-m", "tunesmith.cli", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False
    )


def torchrun(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    """`tunesmith ARGS` under torchrun with one process (a 1-rank process group and mesh)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "1",
        "-m",
        "tunesmith.cli",
        *args,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False
    )


def logged_losses(output_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r.get("loss") is not None}


def part_quickstart(out: Path, cuda: bool) -> dict[str, Any]:
    """The quick start on CUDA bf16 vs CPU fp32 (dry run: 2 CPU steps)."""
    quick = ["train", "examples/quickstart.yaml", "save_strategy=no", "disable_tqdm=true"]
    if not cuda:
        proc = cli(
            [*quick, f"output_dir={out / 'quick_cpu'}", "use_cpu=true", "max_steps=2", "logging_steps=1"], 300
        )
        ok = proc.returncode == 0 and len(logged_losses(out / "quick_cpu")) == 2
        return {"status": "skipped", "reason": "no CUDA: ran 2 CPU steps only", "cpu_plumbing": ok,
                "error": proc.stderr[-2000:] if not ok else None}  # fmt: skip
    cpu = cli([*quick, f"output_dir={out / 'quick_cpu'}", "use_cpu=true"], 240, {"OMP_NUM_THREADS": "8"})
    gpu = cli([*quick, f"output_dir={out / 'quick_cuda'}", "bf16=true"], 180)
    if cpu.returncode or gpu.returncode:
        return {"status": "failed", "error": (cpu.stderr or "")[-1500:] + (gpu.stderr or "")[-1500:]}
    a, b = logged_losses(out / "quick_cpu"), logged_losses(out / "quick_cuda")
    early = [
        s for s in sorted(a) if s <= 100 and s in b
    ]  # before the curves reach ~0, where bf16 noise dominates
    worst = max(abs(a[s] - b[s]) / max(a[s], 0.05) for s in early)
    final = b[max(b)]
    ok = worst <= 0.1 and final < 0.1
    return {"status": "passed" if ok else "failed", "max_rel_diff_first_100_steps": worst,
            "final_loss_cuda": final, "final_loss_cpu": a[max(a)], "steps": max(b)}  # fmt: skip


def part_parity(out: Path, cuda: bool) -> dict[str, Any]:
    """tunesmith vs transformers.Trainer, step for step, on CUDA in fp32 (tf32 off)."""
    if not cuda:
        return {"status": "skipped", "reason": "no CUDA (the CPU parity is tests/test_train_parity.py)"}
    ours = in_child(run_job, "tiny", "uniform blocks", "tunesmith normal", 8, "cuda", False)
    theirs = in_child(run_job, "tiny", "uniform blocks", "HF Trainer, padding", 8, "cuda", False)
    diffs = [abs(x - y) / abs(y) for x, y in zip(ours["losses"], theirs["losses"], strict=True)]
    ok = max(diffs) <= 1e-4
    return {"status": "passed" if ok else "failed", "max_rel_loss_diff": max(diffs),
            "ours": ours["losses"], "transformers": theirs["losses"]}  # fmt: skip


def part_throughput(out: Path, cuda: bool) -> dict[str, Any]:
    """The 0.5B model on CUDA, every contender once (dry run: one toy CPU job)."""
    if not cuda:
        row = in_child(run_job, "tiny", "dry run", "tunesmith normal", 1, "cpu", False)
        return {
            "status": "skipped",
            "reason": "no CUDA: ran one toy CPU job",
            "cpu_plumbing": row["steps"] == 3 and row["valid_tokens"] > 0,
        }
    peak = in_child(matmul_peak, 8, 8192, 20, "cuda", True)
    rows = []
    for workload, contenders in THROUGHPUT.items():
        for contender in contenders:
            try:
                row = in_child(run_job, "0.5B", workload, contender, 8, "cuda", True, timeout=JOB_TIMEOUT)
            except RuntimeError as exc:  # a missing kernel package is reported, not fatal
                rows.append({"workload": workload, "contender": contender, "error": str(exc)[-500:]})
                continue
            row["mfu"] = row["tokens_per_s"] * row["flops_per_token"] / peak
            row.pop("losses")
            rows.append(row)
            print(
                f"{workload} / {contender}: {row['tokens_per_s']:,.0f} tokens/s, MFU {row['mfu']:.1%}",
                flush=True,
            )
    return {"status": "passed", "bf16_matmul_peak_tflops": peak / 1e12, "rows": rows}


def part_sharded(out: Path, cuda: bool) -> dict[str, Any]:
    """FSDP2 and DeepSpeed ZeRO-3 on one GPU (a 1-rank mesh), a few steps each."""
    if not cuda:
        return {"status": "skipped", "reason": "no CUDA"}
    base = [
        "train",
        "examples/quickstart.yaml",
        "logging_steps=1",
        "max_steps=5",
        "save_strategy=no",
        "bf16=true",
        "disable_tqdm=true",
    ]
    engines = {
        "fsdp2": '{"name": "fsdp2"}',
        "zero3": '{"name": "deepspeed", "config": {"zero_optimization": {"stage": 3}, "bf16": {"enabled": "auto"}}}',
    }
    result: dict[str, Any] = {}
    for name, spec in engines.items():
        if name == "zero3" and not _importable("deepspeed"):
            result[name] = {
                "status": "skipped",
                "reason": "deepspeed is not installed (carry its wheel in .whl)",
            }
            continue
        proc = torchrun([*base, f"output_dir={out / name}", f"dist_config={spec}"], 150)
        ok = proc.returncode == 0 and len(logged_losses(out / name)) > 0
        result[name] = {"status": "passed" if ok else "failed", "error": None if ok else proc.stderr[-2000:]}
    failed = any(r["status"] == "failed" for r in result.values())
    return {"status": "failed" if failed else "passed", **result}


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def versions() -> dict[str, str]:
    from tunesmith.utils.environment import environment_report

    return environment_report()


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"GPU check {report['date']}: {env.get('gpu0', 'no GPU')}, torch {env['torch']}, "
             f"transformers {env['transformers']}, peft {env['peft']}, {report['seconds']:.0f} s", ""]  # fmt: skip
    for name, part in report["parts"].items():
        lines.append(f"- {name}: {part['status']}{' (' + part['reason'] + ')' if part.get('reason') else ''}")
    rows = report["parts"].get("throughput", {}).get("rows", [])
    if rows:
        lines += ["", "| workload | contender | valid tokens/s | padding | MFU | peak MiB | planner MiB |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['workload']} | {r['contender']} | failed: {r['error'][:80]} | | | | |")
                continue
            lines.append(f"| {r['workload']} | {r['contender']} | {r['tokens_per_s']:,.0f} | {r['padding']:.1%} "
                         f"| {r['mfu']:.1%} | {r['peak_growth'] / 2**20:,.0f} | {r['estimate'] / 2**20:,.0f} |")  # fmt: skip
    return "\n".join(lines)


PARTS = {
    "quickstart": part_quickstart,
    "parity": part_parity,
    "throughput": part_throughput,
    "sharded": part_sharded,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "gpu_check_out"))
    parser.add_argument("--dry-run", action="store_true", help="skip every CUDA part (CI mode)")
    parser.add_argument("--parts", nargs="*", choices=list(PARTS), default=list(PARTS), help="run only these")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda:
        print("no CUDA (or --dry-run): the CUDA parts are skipped; the CPU side runs at toy size", flush=True)
    start = time.perf_counter()
    parts = {}
    for name in args.parts:
        part = PARTS[name]
        tick = time.perf_counter()
        try:
            parts[name] = part(out, cuda)
        except Exception as exc:  # one broken part must not hide the others' results
            parts[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[-2000:]}
        parts[name]["seconds"] = round(time.perf_counter() - tick, 1)
        print(f"{name}: {parts[name]['status']} ({parts[name]['seconds']} s)", flush=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cuda": cuda, "environment": versions(),
              "parts": parts, "seconds": time.perf_counter() - start}  # fmt: skip
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return 1 if any(p["status"] == "failed" for p in parts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
