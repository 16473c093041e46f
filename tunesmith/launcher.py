"""Re-execute a command under torchrun when more than one process is asked for.

The layout comes from the environment, as with LLaMA-Factory's `FORCE_TORCHRUN` launch: `NPROC_PER_NODE`,
`NNODES`, `NODE_RANK`, `MASTER_ADDR`, `MASTER_PORT`, `MAX_RESTARTS` (elastic restarts of the whole group).
Under torchrun already (RANK and WORLD_SIZE set), the command runs as-is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

from tunesmith.utils.errors import ConfigError


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ConfigError(f"environment variable {name}={raw!r}: expected an integer >= {minimum}")
    return int(raw)


def needs_torchrun(env: Mapping[str, str], nproc_per_node: int | None = None) -> bool:
    """True when several processes are asked for (env or `nproc_per_node`) and we are not under torchrun yet."""
    if "RANK" in env and "WORLD_SIZE" in env:
        return False
    nproc = _int(env, "NPROC_PER_NODE", nproc_per_node or 1, 1)
    return nproc > 1 or _int(env, "NNODES", 1, 1) > 1


def torchrun_command(
    entry: Sequence[str], env: Mapping[str, str], nproc_per_node: int | None = None
) -> list[str]:
    """The torchrun command line running `entry` (`["-m", module, *args]` or `[script, *args]`)."""
    nproc = _int(env, "NPROC_PER_NODE", nproc_per_node or 1, 1)
    nnodes = _int(env, "NNODES", 1, 1)
    node_rank = _int(env, "NODE_RANK", 0, 0)
    if node_rank >= nnodes:
        raise ConfigError(f"environment variable NODE_RANK={node_rank}: must be < NNODES={nnodes}")
    cmd = [
        sys.executable,
        "-m",
        "tunesmith.torchrun",  # torch.distributed.run without its traceback when a rank fails
        "--nproc_per_node",
        str(nproc),
        "--nnodes",
        str(nnodes),
    ]
    cmd += ["--max_restarts", str(_int(env, "MAX_RESTARTS", 0, 0))]
    if nnodes == 1 and "MASTER_ADDR" not in env and "MASTER_PORT" not in env:
        cmd.append("--standalone")  # a free local port, no rendezvous server to run
    else:
        if nnodes > 1 and "MASTER_ADDR" not in env:
            raise ConfigError(
                "MASTER_ADDR: required with NNODES > 1 (the address of the node with NODE_RANK=0)"
            )
        cmd += ["--node_rank", str(node_rank), "--master_addr", env.get("MASTER_ADDR", "127.0.0.1")]
        cmd += ["--master_port", str(_int(env, "MASTER_PORT", 29500, 1))]
    return cmd + list(entry)


def relaunch(
    args: Sequence[str],
    module: str = "tunesmith.cli",
    env: Mapping[str, str] | None = None,
    nproc_per_node: int | None = None,
) -> int | None:
    """Run `python -m module *args` under torchrun and return its exit code when several processes are asked for;
    None means: carry on in this process."""
    env = dict(os.environ if env is None else env)
    if not needs_torchrun(env, nproc_per_node):
        return None
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default too; keeps ranks from oversubscribing cores
    return subprocess.call(torchrun_command(["-m", module, *args], env, nproc_per_node), env=env)
