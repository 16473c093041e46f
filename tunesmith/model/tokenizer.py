"""Tokenizer loading: source, fast/slow, special-token splitting, added tokens and the pad-token fallback."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from tunesmith.model.source import check_remote_code, hub_kwargs, load_or_explain, resolve_source
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")

NEW_TOKEN_IDS_ATTR = "tunesmith_new_token_ids"


def load_tokenizer(cfg: Any) -> PreTrainedTokenizerBase:
    """Load the tokenizer of `cfg.model` and add the requested tokens; the ids of tokens that were really new are
    kept in `new_token_ids(tokenizer)` so the model layer can initialise their embedding rows."""
    margs = cfg.model
    field = "tokenizer_name_or_path" if margs.tokenizer_name_or_path else "model_name_or_path"
    source = resolve_source(margs.tokenizer_name_or_path or margs.model_name_or_path, field)
    check_remote_code(source, margs.trust_remote_code, field)
    tokenizer = load_or_explain(
        lambda: AutoTokenizer.from_pretrained(
            source,
            use_fast=margs.use_fast_tokenizer,
            split_special_tokens=margs.split_special_tokens,
            **hub_kwargs(margs),
        ),
        source,
        field,
    )
    if not margs.use_fast_tokenizer and tokenizer.is_fast:
        logger.warning(
            "use_fast_tokenizer: false, but %s has only a fast (tokenizers) implementation", source
        )
    _override_tokens(tokenizer, margs)
    _ensure_pad_token(tokenizer)
    if margs.chat_template_path and margs.custom_chat_template:
        raise ConfigError(
            "chat_template_path and custom_chat_template: both replace the chat template; keep one"
        )
    if margs.chat_template_path:
        tokenizer.chat_template = read_chat_template(margs.chat_template_path)
    elif margs.custom_chat_template:
        tokenizer.chat_template = margs.custom_chat_template
    before = len(tokenizer)
    _add_tokens(tokenizer, margs)
    setattr(tokenizer, NEW_TOKEN_IDS_ATTR, list(range(before, len(tokenizer))))
    return tokenizer


def new_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of the tokens `load_tokenizer` added to the tokenizer's vocabulary (empty for any other tokenizer)."""
    return list(getattr(tokenizer, NEW_TOKEN_IDS_ATTR, []))


def read_token_descriptions(path: str) -> dict[str, str]:
    """`new_special_tokens_config`: a YAML mapping {token: description}, checked entry by entry."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"new_special_tokens_config: file {path} does not exist")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"new_special_tokens_config: {path}{where}: invalid YAML") from err
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"new_special_tokens_config: {path} must be a non-empty mapping {{token: description}}"
        )
    for token, text in data.items():
        if not isinstance(token, str) or not isinstance(text, str) or not text.strip():
            raise ConfigError(
                f"new_special_tokens_config: {path}: entry {token!r} must map a token string to a non-empty "
                "description string"
            )
    return data


def _override_tokens(tokenizer: PreTrainedTokenizerBase, margs: Any) -> None:
    """eos_token / pad_token: make an existing vocabulary token the EOS / padding token."""
    vocab = tokenizer.get_vocab()
    for field, value in (("eos_token", margs.eos_token), ("pad_token", margs.pad_token)):
        if value is None:
            continue
        if value not in vocab:
            raise ConfigError(
                f"{field}: {value!r} is not in the tokenizer's vocabulary; add it with add_special_tokens first"
            )
        setattr(tokenizer, field, value)


def read_chat_template(path: str) -> str:
    """The Jinja chat template in file `path`, or of the tokenizer saved in folder `path`."""
    where = Path(path).expanduser()
    if where.is_file():
        return where.read_text(encoding="utf-8")
    if where.is_dir():
        template = AutoTokenizer.from_pretrained(where).chat_template
        if template:
            return template
        raise ConfigError(f"chat_template_path: the tokenizer in {where} has no chat template")
    raise ConfigError(f"chat_template_path: {where} is neither a template file nor a tokenizer folder")


def _ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.pad_token is not None:
        return
    fallback = tokenizer.eos_token or tokenizer.unk_token
    if fallback is None:
        raise ConfigError("tokenizer has no pad, eos or unk token; add one with add_special_tokens")
    tokenizer.pad_token = fallback
    logger.info("tokenizer has no pad token; using %r", fallback)


def _add_tokens(tokenizer: PreTrainedTokenizerBase, margs: Any) -> None:
    if margs.add_tokens:
        added = tokenizer.add_tokens(_token_list(margs.add_tokens, "add_tokens"))
        logger.info("add_tokens: %d new token(s)", added)
    special = _token_list(margs.add_special_tokens, "add_special_tokens") if margs.add_special_tokens else []
    if margs.new_special_tokens_config:
        special = list(read_token_descriptions(margs.new_special_tokens_config))
    if special:
        added = tokenizer.add_special_tokens(
            {"extra_special_tokens": special}, replace_extra_special_tokens=False
        )
        logger.info("add_special_tokens: %d new special token(s)", added)


def _token_list(value: str | list[str], field: str) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    tokens = [item.strip() for item in items if item.strip()]
    if not tokens:
        raise ConfigError(f"{field}: no tokens given; use a comma-separated string or a list")
    return tokens
