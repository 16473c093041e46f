"""The GPU check's dry run (CI mode): every CUDA part is skipped with its reason, the CPU plumbing works."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_skips_cuda_and_says_so(tmp_path: Path) -> None:
    # the quick-start part's CPU side is the quick start itself (tested elsewhere); the other parts run here
    cmd = [str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path), "--parts",
           "parity", "throughput", "sharded"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the CUDA parts are skipped" in proc.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["cuda"] is False
    parts = report["parts"]
    assert {p["status"] for p in parts.values()} == {"skipped"}
    assert all(p["reason"].startswith("no CUDA") for p in parts.values())
    assert parts["throughput"]["cpu_plumbing"] is True
    assert "throughput: skipped (no CUDA" in (tmp_path / "gpu_check.md").read_text()
