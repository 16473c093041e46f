"""Full, freeze, LoRA and QLoRA each train a few steps through the trainer and save a model or adapter that
transformers / peft load back with the same logits as the in-memory model."""

from __future__ import annotations

import pytest
import torch
from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM

from tunesmith.config import load_config
from tunesmith.model import load_model, load_tokenizer, prepare_for_training, save_pretrained_output
from tunesmith.train.trainer import Trainer

TYPES = {
    "full": [],
    "freeze": ["freeze_trainable_layers=1"],
    "lora": ["lora_rank=4", "lora_alpha=8"],
    "qlora": ["lora_rank=4", "lora_alpha=8"],
}


def micro_batches(tokenizer, n: int = 4) -> list[dict[str, torch.Tensor]]:
    out = []
    for i in range(n):
        ids = tokenizer(
            [f"Example {i}: the answer is {i * 7}.", f"Another line number {i}, a bit longer."],
            padding=True,
            return_tensors="pt",
        )
        labels = ids["input_ids"].masked_fill(ids["attention_mask"] == 0, -100)
        out.append({"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"], "labels": labels})
    return out


@pytest.mark.parametrize("kind", list(TYPES))
def test_type_trains_and_saves_loadable_output(tmp_path, tiny_model_dir, kind):
    overrides = [
        f"model_name_or_path={tiny_model_dir}",
        f"finetuning_type={kind}",
        f"output_dir={tmp_path}",
        "max_steps=4",
        "logging_steps=1",
        "disable_tqdm=true",
        "learning_rate=5e-3",
        *TYPES[kind],
    ]
    cfg = load_config(None, overrides, validate=False)
    tokenizer = load_tokenizer(cfg)
    model = prepare_for_training(load_model(cfg, tokenizer), cfg)
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    data = micro_batches(tokenizer)
    trainer = Trainer(model, cfg.train, data)
    history = trainer.train().log_history
    trainer.close()
    assert len(history) == 4 and history[-1]["loss"] < history[0]["loss"]
    now = dict(model.named_parameters())
    assert any(not torch.equal(now[n], p) for n, p in trainable.items())
    assert all(torch.equal(now[n], p) for n, p in frozen.items())
    out = save_pretrained_output(model, tokenizer, tmp_path / "final")
    model.eval()
    with torch.no_grad():
        expected = model(**{k: v for k, v in data[0].items() if k != "labels"}).logits
        if kind in ("lora", "qlora"):
            loaded = AutoPeftModelForCausalLM.from_pretrained(out, **_quant(cfg, kind))
        else:
            loaded = AutoModelForCausalLM.from_pretrained(out)
        got = loaded.eval()(**{k: v for k, v in data[0].items() if k != "labels"}).logits
    error = (got - expected).abs().max()
    if (
        kind == "qlora"
    ):  # 4-bit CPU kernels: the eval-layout reload differs slightly; require far below training's effect
        with torch.no_grad(), model.disable_adapter():
            base = model(**{k: v for k, v in data[0].items() if k != "labels"}).logits
        assert error < 0.05 * (expected - base).abs().max()
    else:
        assert error < 1e-4


def _quant(cfg, kind: str) -> dict:
    """QLoRA: load the base with the same 4-bit settings as training."""
    if kind != "qlora":
        return {}
    from tunesmith.model.loader import quantization_config

    return {"quantization_config": quantization_config(cfg.model, torch.float32), "dtype": torch.float32}
