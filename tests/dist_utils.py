"""Launch the scripts in tests/dist_scripts under torchrun and read the JSON they write."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).parent / "dist_scripts"
PYTHON = sys.executable


def dist_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")
    }
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", DS_ACCELERATOR="cpu", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_script(script: str, *args: str, nproc: int = 0, timeout: int = 600, env: dict | None = None) -> None:
    """Run `script` with `args`: under torchrun with `nproc` ranks, or as a plain process when nproc is 0."""
    if nproc:
        cmd = [
            PYTHON,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            str(SCRIPTS / script),
            *args,
        ]
    else:
        cmd = [PYTHON, str(SCRIPTS / script), *args]
    proc = subprocess.run(
        cmd, env=env or dist_env(), capture_output=True, text=True, timeout=timeout, cwd=str(SCRIPTS)
    )
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
