"""A data error found after tunesmith started its ranks is one line, printed once by rank 0: no traceback from the
ranks that lost their peer (on rank 0's node, or on another node), none from the launcher, and the rank's exit
code."""

from __future__ import annotations

import subprocess

import pytest
from dist_utils import PYTHON, dist_env, free_port
from helpers import write_jsonl


def _command(tmp_path, node: str = "") -> list[str]:
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}] * 4
    data = write_jsonl(tmp_path / "no_label.jsonl", rows)  # KTO needs a desirable/undesirable label
    cmd = [PYTHON, "-m", "tunesmith.cli", "train", "--model", "builtin:tiny", "--dataset", str(data)]
    return cmd + [
        "--stage",
        "kto",
        "--output_dir",
        str(tmp_path / f"out{node}"),
        "--max_steps",
        "1",
        "report_to=none",
    ]


def _check(done: list[tuple[int, str]]) -> None:
    errors = [line for _, err in done for line in err.splitlines() if line.startswith("tunesmith: error:")]
    assert all(code == 2 for code, _ in done), [err[-2000:] for _, err in done]
    assert len(errors) == 1 and "kto_tag" in errors[0]
    for _, err in done:
        assert "Traceback" not in err, err[-2000:]


@pytest.mark.dist
def test_data_error_under_torchrun_is_one_line(tmp_path):
    done = subprocess.run(
        _command(tmp_path),
        env=dist_env(NPROC_PER_NODE="2"),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    _check([(done.returncode, done.stderr)])


@pytest.mark.dist
def test_data_error_is_one_line_on_every_node(tmp_path):
    """Two 'nodes' on this machine (NNODES=2, one rank each), each with its own temp folder, so the other node
    learns of rank 0's error only through the launch's store."""
    port, nodes = str(free_port()), []
    for rank in ("0", "1"):
        (tmp_path / f"tmp{rank}").mkdir()
        env = dist_env(
            NNODES="2",
            NODE_RANK=rank,
            NPROC_PER_NODE="1",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            TMPDIR=str(tmp_path / f"tmp{rank}"),
        )
        nodes.append(
            subprocess.Popen(
                _command(tmp_path, rank), env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path
            )
        )
    errs = [node.communicate(timeout=300)[1] for node in nodes]
    _check([(node.returncode, err) for node, err in zip(nodes, errs, strict=True)])
