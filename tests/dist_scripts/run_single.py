"""One process, no torchrun. `save WORKDIR`: 2 steps then a DCP checkpoint (ckpt_1p).
`resume WORKDIR`: load the 2-rank checkpoint (ckpt_2p), run step 3; check the HF export's logits."""

from __future__ import annotations

import json
import os
import sys

import torch
from common import LR, batches, max_diff, reference_losses, tiny_model, train_step, valid_tokens

from tunesmith.dist.checkpoint_io import convert_dcp_to_hf, load_sharded, save_sharded


def save(workdir: str) -> None:
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    for b in batches(2):
        train_step(model, opt, b, valid_tokens(b["labels"]))
    save_sharded(os.path.join(workdir, "ckpt_1p"), model, opt)


def resume(workdir: str) -> dict:
    from transformers import AutoModelForCausalLM

    ref = reference_losses()
    model = tiny_model(seed=99)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    load_sharded(os.path.join(workdir, "ckpt_2p"), model, opt)
    probe = batches(1, seed=7)[0]["input_ids"]
    with torch.no_grad():
        loaded_logits = model(input_ids=probe).logits
    b = batches(3)[2]
    step3 = train_step(model, opt, b, valid_tokens(b["labels"]))
    exported = AutoModelForCausalLM.from_pretrained(os.path.join(workdir, "hf_export"))
    converted_dir = os.path.join(workdir, "hf_converted")
    convert_dcp_to_hf(os.path.join(workdir, "ckpt_2p"), tiny_model(seed=5), converted_dir)
    converted = AutoModelForCausalLM.from_pretrained(converted_dir)
    sharded = torch.load(os.path.join(workdir, "sharded_logits.pt"))
    with torch.no_grad():
        export_diff = (exported(input_ids=probe).logits - sharded).abs().max().item()
        convert_diff = (converted(input_ids=probe).logits - loaded_logits).abs().max().item()
    return {
        "resume_2p_to_1p": max_diff(ref[2:], [step3]),
        "export_logits": export_diff,
        "convert_logits": convert_diff,
    }


if __name__ == "__main__":
    mode, workdir = sys.argv[1], sys.argv[2]
    if mode == "save":
        save(workdir)
    else:
        with open(os.path.join(workdir, "single.json"), "w") as f:
            json.dump(resume(workdir), f)
