"""Run by torchrun via `tunesmith.launcher.relaunch(..., module="launch_probe")`. Joins the group, checks
`main_process_first` and an all-reduce, writes WORKDIR/probe_<rank>.json. `fail_first`: exit 1 on the first
attempt (elastic restart test)."""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist

from tunesmith.dist.setup import init_distributed, is_main_process, main_process_first


def main(workdir: str, mode: str) -> None:
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if mode == "fail_first" and attempt == 0:
        sys.exit(1)
    init_distributed("gloo", 120)
    rank = dist.get_rank()
    cache = os.path.join(workdir, "cache.txt")
    with main_process_first():
        if is_main_process():
            with open(cache, "w") as f:
                f.write("tokenized")
        saw_cache = os.path.exists(cache)
    total = torch.tensor([rank + 1])
    dist.all_reduce(total)
    with open(os.path.join(workdir, f"probe_{rank}.json"), "w") as f:
        json.dump(
            {
                "world": dist.get_world_size(),
                "sum": int(total),
                "saw_cache": saw_cache,
                "attempt": attempt,
                "local_rank": int(os.environ["LOCAL_RANK"]),
                "node_main": is_main_process(on_each_node=True),
            },
            f,
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "ok")
