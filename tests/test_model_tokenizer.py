"""Tokenizer loading: added tokens, special-token splitting, separate tokenizer path, pad fallback."""

from __future__ import annotations

import json
import shutil

import pytest
from test_model_cfg import model_cfg

from tunesmith.model import load_tokenizer
from tunesmith.model.tokenizer import new_token_ids
from tunesmith.utils.errors import ConfigError


def test_added_tokens_are_whole_new_ids_and_special_ones_skip_on_decode():
    base = load_tokenizer(model_cfg())
    tok = load_tokenizer(
        model_cfg(add_tokens="zzword, qqword", add_special_tokens=["<|tool|>", "<|im_end|>"])
    )
    assert new_token_ids(base) == []
    ids = tok.convert_tokens_to_ids(["zzword", "qqword", "<|tool|>"])
    assert new_token_ids(tok) == sorted(ids) == list(range(len(base), len(base) + 3))
    encoded = tok("a zzword<|tool|>", add_special_tokens=False)["input_ids"]
    assert encoded[-2:] == [ids[0], ids[2]]
    assert "<|tool|>" not in tok.decode(tok("x <|tool|> y")["input_ids"], skip_special_tokens=True)
    assert {"<|im_start|>", "<|im_end|>", "<|tool|>"} <= set(tok.all_special_tokens)


def test_split_special_tokens():
    whole = load_tokenizer(model_cfg())("<|im_start|>")["input_ids"]
    split = load_tokenizer(model_cfg(split_special_tokens=True))("<|im_start|>")["input_ids"]
    assert len(whole) == 1 and len(split) > 1


def test_separate_tokenizer_path_and_pad_fallback(tiny_model_dir, tmp_path):
    no_pad = tmp_path / "tok"
    no_pad.mkdir()
    shutil.copy(tiny_model_dir / "tokenizer.json", no_pad)
    config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    config["pad_token"] = None
    (no_pad / "tokenizer_config.json").write_text(json.dumps(config))
    tok = load_tokenizer(model_cfg("builtin:tiny", tokenizer_name_or_path=str(no_pad)))
    assert tok.pad_token == tok.eos_token == "<|im_end|>"


def test_new_special_tokens_config_wins_and_bad_files_are_named(tmp_path):
    good = tmp_path / "tokens.yaml"
    good.write_text("'<|search|>': look something up on the web\n")
    tok = load_tokenizer(model_cfg(add_special_tokens="<|other|>", new_special_tokens_config=str(good)))
    assert tok.convert_tokens_to_ids("<|search|>") == len(tok) - 1
    assert "<|other|>" not in tok.get_vocab()
    bad = tmp_path / "bad.yaml"
    bad.write_text("'<|a|>': [1, 2]\n")
    with pytest.raises(ConfigError, match="new_special_tokens_config: .*bad.yaml: entry '<|a|>'"):
        load_tokenizer(model_cfg(new_special_tokens_config=str(bad)))


def test_slow_tokenizer_request_is_not_silently_ignored(caplog):
    with caplog.at_level("WARNING", logger="tunesmith"):
        tok = load_tokenizer(model_cfg(use_fast_tokenizer=False))
    assert tok.is_fast and "has only a fast (tokenizers) implementation" in caplog.text


def test_tokenizer_with_its_own_code_is_refused(tiny_model_dir, tmp_path):
    custom = tmp_path / "tok"
    custom.mkdir()
    shutil.copy(tiny_model_dir / "tokenizer.json", custom)
    config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="MyOwnTokenizer", auto_map={"AutoTokenizer": ["tok.MyOwnTokenizer", None]})
    (custom / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(
        ConfigError, match="tokenizer_name_or_path: .*tokenizer_config.json.*trust_remote_code: true"
    ):
        load_tokenizer(model_cfg(tokenizer_name_or_path=str(custom)))
