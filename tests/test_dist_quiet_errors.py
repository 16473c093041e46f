"""A data error found after tunesmith started its ranks (NPROC_PER_NODE=2) is one line, printed once by rank 0:
no traceback from the rank that lost its peer, none from the launcher, and the rank's exit code."""

from __future__ import annotations

import subprocess

import pytest
from dist_utils import PYTHON, dist_env, free_port
from helpers import write_jsonl


@pytest.mark.dist
@pytest.mark.parametrize("launch", ["standalone", "master_port"])
def test_data_error_under_torchrun_is_one_line(tmp_path, launch):
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}] * 4
    data = write_jsonl(tmp_path / "no_label.jsonl", rows)  # KTO needs a desirable/undesirable label
    cmd = [PYTHON, "-m", "tunesmith.cli", "train", "--model", "builtin:tiny", "--dataset", str(data)]
    cmd += ["--stage", "kto", "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "report_to=none"]
    env = dist_env(
        NPROC_PER_NODE="2", **({"MASTER_PORT": str(free_port())} if launch == "master_port" else {})
    )
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("tunesmith: error:")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(errors) == 1 and "kto_tag" in errors[0]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
