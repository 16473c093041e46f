"""`tunesmith export`: merged LoRA / DoRA / QLoRA adapters give the logits of base + adapter, the export loads in
plain transformers, `export_size` shards it with an index, and bad requests are refused before any work."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_model, tiny_tokenizer
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from tunesmith.cli import main

IDS = torch.tensor([[5, 17, 99, 3, 250, 41, 7, 7, 12]])


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def _adapter(base_dir, path, *, seed: int, quantized: bool = False, **kwargs) -> str:
    """A LoRA adapter with random (non-zero) weights on the base in `base_dir`, saved with the tokenizer as a run's
    output_dir is."""
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4") if quantized else None
    base = AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=quant)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = get_peft_model(base, config)
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return str(path)


def _export(capsys, *argv: str) -> int:
    code = main(["export", *argv])
    capsys.readouterr()
    return code


@pytest.mark.parametrize("variant", ["lora", "dora"])
def test_merged_export_equals_base_plus_adapter(tmp_path, tiny_model_dir, capsys, variant):
    adapter = _adapter(tiny_model_dir, tmp_path / "run", seed=3, use_dora=variant == "dora")
    assert _export(capsys, adapter, "--output", str(tmp_path / "merged")) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")  # plain transformers, no peft
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    torch.testing.assert_close(_logits(merged), _logits(reference), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_logits(merged), _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir)))
    files = {p.name for p in (tmp_path / "merged").iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= files
    assert (
        "chat_template.jinja" in files
        or "chat_template" in (tmp_path / "merged/tokenizer_config.json").read_text()
    )


def test_qlora_merges_into_the_full_precision_base(tmp_path, tiny_model_dir, capsys):
    adapter = _adapter(tiny_model_dir, tmp_path / "run", seed=4, quantized=True)
    assert _export(capsys, adapter, "finetuning_type=qlora", "--output", str(tmp_path / "merged")) == 0
    merged = _logits(AutoModelForCausalLM.from_pretrained(tmp_path / "merged"))
    full = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    torch.testing.assert_close(merged, _logits(full), rtol=1e-5, atol=1e-5)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    trained_on = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=quant), adapter
    )
    quantized = _logits(trained_on)
    # what the 4-bit run computed differs only by the NF4 rounding of the base weights
    assert (merged - quantized).abs().max() < 0.1 * quantized.abs().max()
    assert (merged.argmax(-1) == quantized.argmax(-1)).float().mean() > 0.8


def test_export_size_shards_with_an_index_and_legacy_bin(tmp_path, tiny_model_dir, capsys):
    adapter = _adapter(tiny_model_dir, tmp_path / "run", seed=5)
    assert _export(capsys, adapter, "export_size=0.0002", "--output", str(tmp_path / "sharded")) == 0
    shards = sorted(p.name for p in (tmp_path / "sharded").glob("model-*.safetensors"))
    assert len(shards) > 1
    index = json.loads((tmp_path / "sharded/model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == shards
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "sharded")
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    torch.testing.assert_close(_logits(merged), _logits(reference), rtol=1e-5, atol=1e-5)
    assert _export(capsys, adapter, "export_legacy_format=true", "--output", str(tmp_path / "bin")) == 0
    assert (tmp_path / "bin/pytorch_model.bin").is_file() and not list(
        (tmp_path / "bin").glob("*.safetensors")
    )
    legacy = AutoModelForCausalLM.from_pretrained(tmp_path / "bin")
    torch.testing.assert_close(_logits(legacy), _logits(reference), rtol=1e-5, atol=1e-5)


def test_refusals_before_any_work(tmp_path, tiny_model_dir, capsys):
    assert main(["export", str(tiny_model_dir), "export_hub_model_id=me/model", "export_dir=x"]) == 2
    assert "hf upload" in capsys.readouterr().err
    assert (
        main(["export", str(tiny_model_dir), "export_legacy_format=true", "export_size=1", "export_dir=x"])
        == 2
    )
    assert "written as one file" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full/keep.txt").write_text("mine")
    assert main(["export", str(tiny_model_dir), "--output", str(tmp_path / "full")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["export", str(tiny_model_dir)]) == 2
    assert "export_dir: not set" in capsys.readouterr().err
    assert main(["export", str(tmp_path)]) == 2
    assert "holds neither a model" in capsys.readouterr().err


def test_lora_run_on_a_random_base_and_a_config_with_two_adapters(tmp_path, tiny_model_dir, capsys):
    from tunesmith.model.saving import save_pretrained_output

    base = tiny_model(seed=9)
    base.name_or_path = (
        ""  # as a built-in / train_from_scratch run leaves it: the base is saved with the adapter
    )
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(6)
        run = get_peft_model(base, config)
    save_pretrained_output(run, tiny_tokenizer(), tmp_path / "run")
    assert _export(capsys, str(tmp_path / "run"), "--output", str(tmp_path / "merged")) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    torch.testing.assert_close(_logits(merged), _logits(run.eval()), rtol=1e-5, atol=1e-5)

    first, second = (
        _adapter(tiny_model_dir, tmp_path / "a", seed=1),
        _adapter(tiny_model_dir, tmp_path / "b", seed=2),
    )
    (tmp_path / "export.yaml").write_text(
        f"model_name_or_path: {tiny_model_dir}\nadapter_name_or_path: {first},{second}\nexport_dir: {tmp_path / 'both'}\n"
    )
    assert _export(capsys, str(tmp_path / "export.yaml")) == 0
    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), first, adapter_name="a"
    )
    reference.load_adapter(second, adapter_name="b")
    reference.base_model.set_adapter(["a", "b"])
    both = AutoModelForCausalLM.from_pretrained(tmp_path / "both")
    torch.testing.assert_close(_logits(both), _logits(reference), rtol=1e-5, atol=1e-5)
