"""ms-swift's `--template` names under the swift dialect give the ids and labels ms-swift's own code gives.

tests/facts/swift_templates.json holds, per ms-swift text template users write, the (input_ids, labels) of
ms-swift's `Template.encode` in training mode (release named in the file) on fixed conversations (single turn,
multi turn with and without a system, thoughts for reasoning templates; loss_scale default, and last_round), with
the tiny test tokenizer plus the template's special tokens and, as BOS/EOS, the literal ones its prefix/suffix
write (InternLM2's tokenizer adds its BOS itself, as the real one does). It is written once, by

    pip download --no-deps ms-swift==4.6.0 -d /tmp/swift
    .venv/bin/python scripts/swift_template_facts.py --wheel /tmp/swift/ms_swift-4.6.0-py3-none-any.whl

Here a swift command line with `--template NAME` goes through the dialect (NAME -> the mapped tunesmith template)
and tunesmith's renderer and SFT tokenization, and must give the same lists. Every other ms-swift name is refused
before anything loads.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from helpers import tiny_tokenizer
from tokenizers import processors

from tunesmith.config import load_config
from tunesmith.config.dialects.swift_templates import (
    LAST_ROUND_DIFFERS,
    SWIFT_MULTIMODAL_TEMPLATES,
    SWIFT_TEMPLATES,
    SWIFT_TEXT_TEMPLATES,
)
from tunesmith.data.render import build_renderer
from tunesmith.data.tokenize import make_sft_processor
from tunesmith.utils.errors import ConfigError

FACTS = json.loads((Path(__file__).parent / "facts" / "swift_templates.json").read_text())
SWIFT = ["--model", "builtin:tiny", "--tuner_type", "lora"]


def tokenizer_for(facts: dict, adds_bos: bool = False):
    """The facts' tokenizer: the template's tokens, its BOS/EOS; `adds_bos`: its encoding opens with BOS."""
    tok = tiny_tokenizer()
    tok.add_special_tokens({k: facts[k] for k in ("bos_token", "eos_token") if k in facts})
    tok.add_tokens(facts["special_tokens"], special_tokens=True)
    if adds_bos:
        bos = (tok.bos_token, tok.bos_token_id)
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos[0]} $A", pair=f"{bos[0]} $A $B", special_tokens=[bos]
        )
    return tok


def encode(data, tok, messages, system=""):
    process = make_sft_processor(build_renderer(data, tok), tok, data)
    out = process({"_messages": [messages], "_system": [system], "_tools": [""], "_where": ["row 0"]})
    return out["input_ids"][0], out["labels"][0]


@pytest.mark.parametrize("name", sorted(SWIFT_TEMPLATES))
def test_swift_template_gives_swifts_ids_and_labels(name):
    """Each case as `swift sft --template NAME [--loss_scale last_round]`; where ms-swift's last_round differs
    from mask_history for this template, the combination is refused, and the facts show that it differs."""
    facts = FACTS["templates"][name]
    differs = []  # per refused case: whether mask_history gives other ids or labels than ms-swift's last_round
    toks = {adds: tokenizer_for(facts, adds) for adds in {c["tokenizer_adds_bos"] for c in facts["cases"]}}
    for case in facts["cases"]:
        tok = toks[case["tokenizer_adds_bos"]]
        args = [*SWIFT, "--template", name, "--loss_scale", case["loss_scale"]]
        messages = FACTS["conversations"][case["conversation"]]
        if case["loss_scale"] == "last_round" and name in LAST_ROUND_DIFFERS:
            with pytest.raises(
                ConfigError, match=r"^'template' .*with loss_scale last_round, ms-swift's template"
            ):
                load_config(None, args)
            data = dataclasses.replace(load_config(None, args[:-2]).data, mask_history=True)
            differs.append(
                encode(data, tok, messages, case["system"] or "") != (case["input_ids"], case["labels"])
            )
            continue
        data = load_config(None, args).data
        assert data.template == SWIFT_TEMPLATES[name]
        ids, labels = encode(data, tok, messages, case["system"] or "")
        assert ids == case["input_ids"], (name, case["name"], tok.decode(ids), tok.decode(case["input_ids"]))
        assert labels == case["labels"], (name, case["name"])
    assert not differs or any(differs), f"{name}: last_round matches ms-swift, no need to refuse it"


def test_swift_system_replaces_the_default_system():
    """`--system` is the default system, as in ms-swift: the same ids as the row's own system prompt."""
    facts = FACTS["templates"]["default"]
    case = next(c for c in facts["cases"] if c["name"] == "multi_system")
    data = load_config(None, [*SWIFT, "--template", "default", "--system", case["system"]]).data
    ids, labels = encode(
        data, tokenizer_for(facts, case["tokenizer_adds_bos"]), FACTS["conversations"]["multi"]
    )
    assert (ids, labels) == (case["input_ids"], case["labels"])


def test_swift_default_is_not_llamafactorys_default():
    tok = tiny_tokenizer()
    messages = FACTS["conversations"]["single"]
    swift = tok.decode(encode(load_config(None, [*SWIFT, "--template", "default"]).data, tok, messages)[0])
    native = tok.decode(
        encode(load_config(None, ["model=builtin:tiny", "template=default"]).data, tok, messages)[0]
    )
    assert swift.startswith("You are a helpful assistant.\n\n### Human:\nHi there\n\n### Assistant:\n")
    assert native.startswith("Human: Hi there") and "###" not in native  # LLaMA-Factory's, in a native config


def test_every_swift_name_is_mapped_or_refused_by_kind():
    kinds = FACTS["template_kinds"]
    assert {n for n, k in kinds.items() if k != "multimodal"} == SWIFT_TEXT_TEMPLATES
    assert {n for n, k in kinds.items() if k == "multimodal"} == SWIFT_MULTIMODAL_TEMPLATES
    assert set(FACTS["templates"]) == set(SWIFT_TEMPLATES)  # every mapping is checked against the facts


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("qwen2_vl", "for a vision/audio-language model, which tunesmith does not train"),
        ("qwen3_5", "for a vision/audio-language model"),
        ("llama3_2", "which writes the date of the run into every system prompt"),
        ("ziya", "whose layout is not built in here; leave template unset to use the tokenizer's own"),
    ],
)
def test_other_swift_templates_are_refused_in_one_line(name, why):
    with pytest.raises(ConfigError) as err:
        load_config(None, [*SWIFT, "--template", name])
    message = str(err.value)
    assert message.startswith(f"'template' (command line): '{name}' is ms-swift's template")
    assert why in message and "\n" not in message


def test_a_name_swift_lacks_is_tunesmiths_own():
    assert load_config(None, [*SWIFT, "--template", "llama2"]).data.template == "llama2"
