"""adapter_name_or_path: saved adapters load onto a base, all but the last merged, the last active."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_model
from peft import LoraConfig, PeftModel, get_peft_model

from tunesmith.config import load_config
from tunesmith.model.adapter_load import adapter_paths, attach_adapters
from tunesmith.utils.errors import ConfigError

IDS = torch.tensor([[5, 17, 99, 3, 250, 41]])


def _save_adapter(path, seed: int, **kwargs) -> str:
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        get_peft_model(tiny_model(), config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return _save_adapter(root / "a", 1), _save_adapter(root / "b", 2, lora_dropout=0.1)


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def test_field_takes_a_comma_list_and_swift_name():
    cfg = load_config(None, ["model_name_or_path=builtin:tiny", "adapters=x,y"])
    assert cfg.model.adapter_name_or_path == ["x", "y"]


def test_one_adapter_matches_peft(saved):
    ours = attach_adapters(tiny_model(), [saved[0]])
    reference = PeftModel.from_pretrained(tiny_model(), saved[0])
    assert isinstance(ours, PeftModel)
    torch.testing.assert_close(_logits(ours), _logits(reference), rtol=0, atol=0)


def test_two_adapters_equal_both_active_at_once(saved):
    ours = attach_adapters(
        tiny_model(), list(saved), trainable=True
    ).eval()  # new dropouts start in train mode
    reference = PeftModel.from_pretrained(tiny_model(), saved[0], adapter_name="a")
    reference.load_adapter(saved[1], adapter_name="b")
    reference.base_model.set_adapter(["a", "b"])  # forward sums both LoRA deltas: an independent path
    torch.testing.assert_close(_logits(ours), _logits(reference), rtol=1e-5, atol=1e-5)
    trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    merged = attach_adapters(tiny_model(), list(saved), merge_all=True)
    assert not isinstance(merged, PeftModel)
    torch.testing.assert_close(_logits(merged), _logits(reference), rtol=1e-5, atol=1e-5)


def test_frozen_by_default_and_bad_paths(saved, tmp_path):
    ours = attach_adapters(tiny_model(), [saved[0]])
    assert not any(p.requires_grad for p in ours.parameters())
    assert adapter_paths(f" {saved[0]} ,{saved[1]}") == list(saved)
    with pytest.raises(ConfigError, match="adapter_name_or_path: .* is not a saved adapter folder"):
        adapter_paths(str(tmp_path))
