"""A second Ctrl-C while the first one's checkpoint is being written stops at once, cleanly: a one-line error (no
traceback) saying the checkpoint was abandoned and naming the last complete one; the half-written checkpoint stays
a `.tmp` folder that no resume takes, and the output_dir lock is released. A real process and real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from test_reliab_run import _config, _env, _steps

from tunesmith.train.checkpoint_find import find_resume_checkpoint
from tunesmith.utils.runlock import LOCK_FILE

# the real CLI, with checkpoint weight writes after the first slowed down so that a signal lands in one
SLOW_SAVE = """
import sys, time
import safetensors.torch
write = safetensors.torch.save_file

def slow(tensors, filename, *args, **kwargs):
    if ".tmp" in str(filename) and "checkpoint-3.tmp" not in str(filename):
        print("WRITING", flush=True)
        time.sleep(60)
    return write(tensors, filename, *args, **kwargs)

safetensors.torch.save_file = slow
from tunesmith.cli import main
sys.exit(main(["train", sys.argv[1], "save_steps=3", "max_steps=200"]))
"""


def test_second_sigint_during_the_save_abandons_it_and_says_so(tmp_path):
    out = tmp_path / "out"
    config = _config(tmp_path, out)
    env = _env(tmp_path)
    cmd = [sys.executable, "-c", SLOW_SAVE, str(config)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint-3").is_dir() or max(_steps(out), default=0) < 4:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)  # first: finish the step, save, exit
        assert proc.stdout.readline().strip() == "WRITING"
        proc.send_signal(signal.SIGINT)  # second, during that save
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == 2
    assert "Traceback" not in stderr, stderr[-3000:]
    line = [x for x in stderr.splitlines() if x.startswith("tunesmith: error:")]
    assert len(line) == 1 and "second SIGINT" in line[0] and "was abandoned" in line[0], stderr[-2000:]
    assert f"the last complete checkpoint is {out / 'checkpoint-3'}" in line[0]
    assert list(out.glob("checkpoint-*.tmp")) and find_resume_checkpoint(out) == out / "checkpoint-3"
    assert not (out / LOCK_FILE).exists()
