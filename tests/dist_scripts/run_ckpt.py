"""Each of 2 gloo ranks trains a tiny model and checkpoints it; rank files land in one complete checkpoint and
resume restores each rank's own RNG. Writes result_<rank>.json to the folder given as argument."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from common import tiny_model

from tunesmith.config import load_config
from tunesmith.train import checkpoint_load as ckpt_load
from tunesmith.train.control import EvalSaveControl
from tunesmith.train.trainer import Trainer


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    args = load_config(
        None,
        [
            "model_name_or_path=builtin:tiny",
            "max_steps=2",
            "save_steps=2",
            "disable_tqdm=true",
            "report_to=none",
            f"output_dir={out}",
            "average_tokens_across_devices=false",
        ],
    ).train
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(rank))
    batches = [{"input_ids": ids, "labels": ids.clone()}] * 4
    model = tiny_model("qwen2")  # seeds the global generator itself
    torch.manual_seed(100 + rank)  # ranks draw different random numbers
    trainer = Trainer(model, args, batches, callbacks=[EvalSaveControl(args, rank=rank, world_size=2)])
    trainer.train()
    after_save = torch.rand(3).tolist()
    torch.manual_seed(7)
    fresh = Trainer(tiny_model("qwen2"), args, batches)
    ckpt_load.load_checkpoint(fresh, out / "checkpoint-2", rank)
    result = {"after_save": after_save, "after_resume": torch.rand(3).tolist()}
    (out / f"result_{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
