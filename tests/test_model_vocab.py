"""New tokens resize the embeddings and LM head; new rows start as documented (noise / description init)."""

from __future__ import annotations

import math

import pytest
import torch
from test_model_cfg import model_cfg

from tunesmith.model import load_model, load_tokenizer
from tunesmith.model.vocab import DESC_NOISE_SCALE
from tunesmith.utils.errors import ConfigError

DESCRIPTIONS = {
    "<|search|>": "look something up on the web",
    "<|calc|>": "compute a number with a calculator",
    "<|mail|>": "send an email message to a friend",
    "<|sum|>": "write a short summary of the text",
}


def _load(model_dir, **fields):
    cfg = model_cfg(str(model_dir), **fields)
    tokenizer = load_tokenizer(cfg)
    return load_model(cfg, tokenizer), tokenizer


def _matrices(model):
    return [model.get_input_embeddings().weight.detach(), model.get_output_embeddings().weight.detach()]


def _descriptions(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text("".join(f"'{token}': {text}\n" for token, text in DESCRIPTIONS.items()))
    return str(path)


def test_noise_init_is_mean_plus_noise_and_old_rows_are_kept(tiny_model_dir):
    base, base_tok = _load(tiny_model_dir)
    model, tok = _load(tiny_model_dir, add_tokens="zzword,qqword", add_special_tokens="<|tool|>")
    old = len(base_tok)
    assert len(tok) == old + 3
    assert (
        model.get_input_embeddings().weight.shape[0]
        == model.get_output_embeddings().weight.shape[0]
        == len(tok)
    )
    for new, ref in zip(_matrices(model), _matrices(base), strict=True):
        assert torch.equal(new[:old], ref[:old])
        noise = new[old:] - ref.mean(dim=0)
        assert abs(noise.mean().item()) < 0.01
        assert noise.std().item() == pytest.approx(1 / math.sqrt(ref.shape[1]), rel=0.15)
    logits = model(input_ids=torch.tensor([tok.convert_tokens_to_ids(["zzword", "<|tool|>"])])).logits
    assert logits.shape[-1] == len(tok) and torch.isfinite(logits).all()


def test_desc_init_rows_equal_the_description_mean(tiny_model_dir, tmp_path):
    base, _ = _load(tiny_model_dir)
    model, tok = _load(
        tiny_model_dir, new_special_tokens_config=_descriptions(tmp_path), init_special_tokens="desc_init"
    )
    for new, ref in zip(_matrices(model), _matrices(base), strict=True):
        for token, text in DESCRIPTIONS.items():
            ids = tok(text, add_special_tokens=False)["input_ids"]
            torch.testing.assert_close(new[tok.convert_tokens_to_ids(token)], ref[ids].mean(dim=0))


def test_desc_init_with_noise_adds_small_noise(tiny_model_dir, tmp_path):
    base, _ = _load(tiny_model_dir)
    model, tok = _load(
        tiny_model_dir,
        new_special_tokens_config=_descriptions(tmp_path),
        init_special_tokens="desc_init_w_noise",
    )
    for new, ref in zip(_matrices(model), _matrices(base), strict=True):
        diffs = torch.stack(
            [
                new[tok.convert_tokens_to_ids(token)]
                - ref[tok(text, add_special_tokens=False)["input_ids"]].mean(0)
                for token, text in DESCRIPTIONS.items()
            ]
        )
        assert diffs.std().item() == pytest.approx(DESC_NOISE_SCALE * ref.std().item(), rel=0.2)


def test_tied_embeddings_stay_tied_and_existing_tokens_keep_their_rows():
    base, _ = _load("builtin:tiny")
    model, tok = _load("builtin:tiny", add_special_tokens="<|im_end|>,<|new|>")
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert torch.equal(model.get_input_embeddings().weight[end], base.get_input_embeddings().weight[end])
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)


def test_desc_init_needs_descriptions(tiny_model_dir):
    with pytest.raises(ConfigError, match="init_special_tokens: desc_init needs new_special_tokens_config"):
        _load(tiny_model_dir, add_special_tokens="<|x|>", init_special_tokens="desc_init")
