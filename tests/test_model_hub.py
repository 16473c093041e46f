"""Hub access arguments reach `from_pretrained`, and a token never shows in an error."""

from __future__ import annotations

import pytest

from tunesmith.config import load_config
from tunesmith.model import load_tokenizer
from tunesmith.model.source import hub_kwargs
from tunesmith.utils.errors import ConfigError

TOKEN = "hf_SECRET_do_not_print"


def test_hub_kwargs_carry_revision_cache_and_token(tmp_path):
    cfg = load_config(
        None, ["model=builtin:tiny", f"hf_hub_token={TOKEN}", "model_revision=v2", f"cache_dir={tmp_path}"]
    )
    assert hub_kwargs(cfg.model) == {
        "trust_remote_code": False,
        "revision": "v2",
        "cache_dir": str(tmp_path),
        "token": TOKEN,
    }


def test_offline_hub_id_error_hides_token(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config(None, ["model=someone/some-model", f"hf_hub_token={TOKEN}"])
    with pytest.raises(ConfigError) as err:
        load_tokenizer(cfg)
    assert "some-model" in str(err.value) and TOKEN not in str(err.value)
