"""The launcher re-executes under torchrun: 2 local processes, an elastic restart, and two loopback "nodes"."""

from __future__ import annotations

import json
import subprocess

import pytest
from dist_utils import PYTHON, SCRIPTS, dist_env, free_port

from tunesmith.launcher import needs_torchrun, torchrun_command
from tunesmith.utils.errors import ConfigError


def _probes(work, n: int) -> list[dict]:
    return [json.loads((work / f"probe_{r}.json").read_text()) for r in range(n)]


def _entry(work, mode: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, str(SCRIPTS / "relaunch_entry.py"), str(work), mode],
        env=dist_env(**env),
        cwd=str(SCRIPTS),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out[-4000:]


def test_command_from_environment():
    env = {
        "NPROC_PER_NODE": "4",
        "NNODES": "2",
        "NODE_RANK": "1",
        "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": "29600",
        "MAX_RESTARTS": "3",
    }
    cmd = torchrun_command(["-m", "tunesmith.cli", "train", "c.yaml"], env)
    text = " ".join(cmd)
    assert "--nproc_per_node 4 --nnodes 2 --max_restarts 3 --node_rank 1 --master_addr 10.0.0.1" in text
    assert text.endswith("--master_port 29600 -m tunesmith.cli train c.yaml")
    assert "--standalone" in torchrun_command(["x.py"], {"NPROC_PER_NODE": "2"})


def test_when_to_relaunch():
    assert needs_torchrun({"NPROC_PER_NODE": "2"})
    assert needs_torchrun({}, nproc_per_node=2)
    assert not needs_torchrun({})
    under_torchrun = {"NPROC_PER_NODE": "2", "RANK": "0", "WORLD_SIZE": "2"}
    assert not needs_torchrun(under_torchrun)
    with pytest.raises(ConfigError, match="NPROC_PER_NODE"):
        needs_torchrun({"NPROC_PER_NODE": "two"})
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        torchrun_command(["x.py"], {"NNODES": "2"})


@pytest.mark.dist
def test_two_local_processes(tmp_path):
    _finish(_entry(tmp_path, "ok", NPROC_PER_NODE="2"))
    probes = _probes(tmp_path, 2)
    assert [p["world"] for p in probes] == [2, 2] and probes[0]["sum"] == 3
    assert all(p["saw_cache"] for p in probes)  # rank 1 ran its body only after rank 0 wrote the cache


@pytest.mark.dist
def test_elastic_restart(tmp_path):
    _finish(_entry(tmp_path, "fail_first", NPROC_PER_NODE="2", MAX_RESTARTS="1"))
    assert [p["attempt"] for p in _probes(tmp_path, 2)] == [1, 1]


@pytest.mark.dist
def test_two_loopback_nodes_form_one_job(tmp_path):
    common = {
        "NNODES": "2",
        "NPROC_PER_NODE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    nodes = [_entry(tmp_path, "ok", NODE_RANK=str(i), **common) for i in range(2)]
    for node in nodes:
        _finish(node)
    probes = _probes(tmp_path, 2)
    assert [p["world"] for p in probes] == [2, 2] and probes[1]["sum"] == 3
    assert [p["local_rank"] for p in probes] == [0, 0]
    assert [p["node_main"] for p in probes] == [True, True]  # log_on_each_node / save_on_each_node
