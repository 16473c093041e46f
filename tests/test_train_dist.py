"""Two DDP ranks (gloo) with the trainer give the loss and gradient norm of one process accumulating all
micro-batches: the step's token count is summed over ranks (average_tokens_across_devices)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()


def micro_batches():
    import torch

    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(8):
        ids = torch.randint(3, 400, (2, 10 + 3 * i), generator=g)
        labels = ids.clone()
        labels[:, : 2 + 2 * i] = -100  # uneven supervised tokens per micro-batch
        out.append({"input_ids": ids, "labels": labels})
    return out


def train(out: Path, world: int, rank: int) -> list[dict]:
    sys.path.insert(0, str(HERE.parent))
    from helpers import tiny_model

    from tunesmith.config import load_config
    from tunesmith.train.trainer import Trainer

    model = tiny_model("llama")
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model)
    ga = 4 // world
    args = load_config(
        None,
        [
            f"output_dir={out}",
            f"gradient_accumulation_steps={ga}",
            "max_steps=2",
            "logging_steps=1",
            "disable_tqdm=true",
            "learning_rate=1e-3",
        ],
        validate=False,
    ).train
    # step k takes micro-batches 4k..4k+3; rank r takes its share of each step
    mine = [
        mb for step in range(2) for mb in micro_batches()[4 * step + rank * ga : 4 * step + (rank + 1) * ga]
    ]
    return Trainer(model, args, mine).train().log_history


def worker(out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    history = train(Path(out) / f"rank{rank}", world, rank)
    Path(out, f"rank{rank}.json").write_text(json.dumps(history))
    dist.destroy_process_group()


@pytest.mark.dist
@pytest.mark.slow  # the CLI-level ddp run of test_train_distributed.py covers this path (2 loopback nodes)
def test_ddp_two_ranks_match_one_process(tmp_path):
    from dist_utils import run_script

    run_script(str(HERE), str(tmp_path), nproc=2)  # an absolute path: dist_scripts/ is not used
    single = train(tmp_path / "single", 1, 0)
    for rank in range(2):
        ranked = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert [r["tokens"] for r in ranked] == [r["tokens"] for r in single]
        for a, b in zip(ranked, single, strict=True):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
            assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)


if __name__ == "__main__":
    worker(sys.argv[1])
