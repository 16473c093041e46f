"""Under torchrun, rank 0 processes the data first; the other rank waits and reads the cache (no tokenizing)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from helpers import write_jsonl

SCRIPT = """
import json, os, sys
import torch.distributed as dist
from transformers import AutoTokenizer
from tunesmith.config import load_config
from tunesmith.data import build_datasets, tokenize
from tunesmith.utils.builtin import resolve_builtin

data, out = sys.argv[1:]
dist.init_process_group("gloo")
calls = 0
real = tokenize.encode_texts


def counted(tok, texts):
    global calls
    calls += 1
    return real(tok, texts)


tokenize.encode_texts = counted
tok = AutoTokenizer.from_pretrained(resolve_builtin("builtin:tiny"))
cfg = load_config(None, ["model=builtin:tiny", f"dataset={data}", "template=chatml"], validate=False)
bundle = build_datasets(cfg, tok)
result = {"calls": calls, "input_ids": list(bundle.train["input_ids"])}
with open(os.path.join(out, f"rank{dist.get_rank()}.json"), "w") as fh:
    json.dump(result, fh)
dist.barrier()
dist.destroy_process_group()
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.dist
def test_rank_zero_processes_first_and_the_other_rank_reads_the_cache(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(20)])
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")
    }
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TUNESMITH_DATA_CACHE=str(tmp_path / "cache"))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_port()),
        str(script),
        str(data),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["calls"] > 0 and rank1["calls"] == 0
    assert rank0["input_ids"] == rank1["input_ids"] and len(rank0["input_ids"]) == 20
