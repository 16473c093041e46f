"""`tunesmith convert`: a torch distributed checkpoint becomes a transformers model with the same weights."""

from __future__ import annotations

import torch
from helpers import tiny_model
from transformers import AutoModelForCausalLM

from tunesmith.cli import main
from tunesmith.dist.checkpoint_io import save_sharded


def test_convert_dcp_checkpoint_to_hf(tmp_path, tiny_model_dir, capsys):
    trained = tiny_model("qwen2", seed=7)  # other weights than the base model in tiny_model_dir
    save_sharded(tmp_path / "dcp", trained)
    out = tmp_path / "hf"
    argv = ["convert", f"model={tiny_model_dir}", "--dcp", str(tmp_path / "dcp"), "--output", str(out)]
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    converted = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        assert torch.allclose(converted(ids).logits, trained(ids).logits, atol=1e-6)
    assert (out / "tokenizer_config.json").is_file()


def test_convert_needs_both_paths(capsys):
    assert main(["convert", "model=builtin:tiny", "--dcp", "x"]) == 2
    assert "--output" in capsys.readouterr().err
