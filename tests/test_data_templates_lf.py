"""Built-in templates give the ids and labels LLaMA-Factory's own code gives, template by template.

tests/facts/lf_templates.json holds, per template (and per MindSpeed-LLM FSDP2 template, e.g. its `gpt`), the (input_ids, labels) of LLaMA-Factory's
`SupervisedDatasetProcessor` (its template, formatter and tool modules, release named in the file) on fixed
conversations (single turn, multi turn with and without system, truncated by cutoff_len, mask_history, tools
where the tool format is built, thoughts for reasoning templates), with the tiny test tokenizer plus a BOS and the
template's stop words and literal tokens. It is written once, by

    pip download --no-deps llamafactory==0.9.5 -d /tmp/lf
    .venv/bin/python scripts/lf_template_facts.py --wheel /tmp/lf/llamafactory-0.9.5-py3-none-any.whl \
        --head-src <a newer LLaMA-Factory src/ tree, for its extra template names> \
        --mindspeed-src <a MindSpeed-LLM tree> --mindspeed-rev <its commit>

Here the same conversations go through tunesmith's renderer and SFT (and pair) tokenization and must give the same
lists. MindSpeed-LLM's cases leave out mask_history: there its reasoning templates keep the earlier answers'
thoughts, where LLaMA-Factory (and tunesmith) drop them.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

import pytest
from helpers import tiny_tokenizer

from tunesmith.config import load_config
from tunesmith.data import tool_formats
from tunesmith.data.batching.collate import pack_row
from tunesmith.data.lf_template_names import LF_MULTIMODAL_TEMPLATES, LF_TEXT_TEMPLATES
from tunesmith.data.pairwise import make_pair_processor
from tunesmith.data.render import build_renderer
from tunesmith.data.templates import BUILTIN_TEMPLATES, TEMPLATE_ALIASES, get_template
from tunesmith.data.tokenize import IGNORE_INDEX, make_sft_processor
from tunesmith.utils.errors import ConfigError, DataError

FACTS = json.loads((Path(__file__).parent / "facts" / "lf_templates.json").read_text())
TODAY = datetime(2026, 1, 2)  # the date the facts' llama3 tool prompt was written with


class FixedDate(datetime):
    @classmethod
    def now(cls, tz=None):  # noqa: ARG003
        return TODAY


@pytest.fixture(scope="module")
def base_data():
    return load_config(None, ["model=builtin:tiny"]).data


def tokenizer_for(name: str, facts: dict | None = None):
    tok = tiny_tokenizer()
    tok.add_special_tokens({"bos_token": FACTS["bos_token"]})
    tok.add_tokens((facts or FACTS["templates"])[name]["special_tokens"], special_tokens=True)
    return tok


def encode(data, tok, messages, system="", tools=""):
    process = make_sft_processor(build_renderer(data, tok), tok, data)
    out = process({"_messages": [messages], "_system": [system], "_tools": [tools], "_where": ["row 0"]})
    return out["input_ids"][0], out["labels"][0]


SOURCES = [("templates", n) for n in sorted(FACTS["templates"])] + [
    ("mindspeed_templates", n) for n in sorted(FACTS["mindspeed_templates"])
]


@pytest.mark.parametrize(("source", "name"), SOURCES)
def test_template_gives_the_reference_ids_and_labels(source, name, base_data, monkeypatch):
    """`templates`: LLaMA-Factory's; `mindspeed_templates`: MindSpeed-LLM's FSDP2 ones (its `gpt` among them)."""
    monkeypatch.setattr(tool_formats, "datetime", FixedDate)
    tok = tokenizer_for(name, FACTS[source])
    for case in FACTS[source][name]["cases"]:
        data = dataclasses.replace(
            base_data,
            template=name,
            cutoff_len=case["cutoff_len"],
            mask_history=case["mask_history"],
            enable_thinking=case["enable_thinking"],
            tool_format=case["tool_format"],
        )
        messages = case.get("messages") or FACTS["conversations"][case["conversation"]]
        ids, labels = encode(data, tok, messages, case["system"], FACTS["tools"] if case["tools"] else "")
        assert ids == case["input_ids"], (name, case["name"], tok.decode(ids), tok.decode(case["input_ids"]))
        assert labels == case["labels"], (name, case["name"])


@pytest.mark.parametrize("name", sorted(FACTS["templates"]))
def test_preference_pairs_give_llamafactorys_ids_and_labels(name, base_data):
    """The pairwise (DPO/RM) rows: the prompt before the chosen and the rejected answer, as LLaMA-Factory's
    PairwiseDatasetProcessor cuts them (efficient_eos templates: an EOS after each answer)."""
    tok = tokenizer_for(name)
    pair = FACTS["pair"]
    row = {
        "_messages": [[*pair["prompt"], {"role": "assistant", "content": pair["chosen"]}]],
        "_rejected": [pair["rejected"]],
        "_rejected_role": ["assistant"],
        "_tools": [""],
        "_where": ["row 0"],
    }
    for case in FACTS["templates"][name]["pairs"]:
        data = dataclasses.replace(base_data, template=name, cutoff_len=case["cutoff_len"])
        out = make_pair_processor(build_renderer(data, tok), tok, data)({**row, "_system": [case["system"]]})
        for key in ("input_ids", "labels", "rejected_input_ids", "rejected_labels"):
            assert out[key] == [case[key]], (name, case["name"], key)


def test_every_llamafactory_template_is_built_refused_or_listed():
    """The name lists agree with LLaMA-Factory's registry: each of its names is built in (or an alias), a
    multimodal template refused as such, or a text template of a newer LLaMA-Factory than the facts."""
    names = FACTS["template_names"]
    built = {*BUILTIN_TEMPLATES, *TEMPLATE_ALIASES}
    assert {n for n, plugin in names.items() if plugin and n not in built} == LF_MULTIMODAL_TEMPLATES
    assert {n for n, plugin in names.items() if not plugin and n not in built} == LF_TEXT_TEMPLATES
    assert set(FACTS["templates"]) == built & set(names)  # every shared name has facts


def test_template_names_lf_lacks_or_nobody_has_say_why():
    with pytest.raises(
        ConfigError, match=r"^template: 'moss_vl' is LLaMA-Factory's template for a vision/audio"
    ):
        get_template("moss_vl")
    with pytest.raises(ConfigError, match=r"'hy_dense_7b' is LLaMA-Factory's template, not built in.*unset"):
        get_template("hy_dense_7b")
    with pytest.raises(ConfigError, match="unknown template 'nope'"):
        get_template("nope")


TOOL_CALL = [
    {"role": "user", "content": "1+2?"},
    {"role": "function", "content": json.dumps({"name": "add", "arguments": {"a": 1}})},
]


@pytest.mark.parametrize("name", ["glm4_moe", "seed_oss", "lfm2", "minimax2"])
def test_tool_rows_with_a_tool_format_not_built_are_a_data_error(name, base_data):
    tok = tokenizer_for(name)
    data = dataclasses.replace(base_data, template=name)
    with pytest.raises(DataError, match=rf"row 0: template '{name}' .* tool format, which is not built in"):
        encode(data, tok, TOOL_CALL)
    with pytest.raises(DataError, match="not built in"):
        encode(data, tok, TOOL_CALL[:1] + [{"role": "assistant", "content": "3"}], tools='[{"name": "add"}]')
    ids, _ = encode(data, tok, [TOOL_CALL[0], {"role": "assistant", "content": "3"}])  # tool-less data works
    assert ids


def test_glm4_has_no_parallel_calls(base_data):
    calls = json.dumps([{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}])
    data = dataclasses.replace(base_data, template="glm4")
    with pytest.raises(DataError, match="glm4 tool format has no parallel function calls"):
        encode(data, tokenizer_for("glm4"), [TOOL_CALL[0], {"role": "function", "content": calls}])


def test_efficient_eos_refuses_train_on_prompt(base_data):
    data = dataclasses.replace(base_data, template="gpt_oss", train_on_prompt=True)
    with pytest.raises(
        ConfigError, match=r"^train_on_prompt: template 'gpt_oss' ends the sequence with one EOS"
    ):
        build_renderer(data, tiny_tokenizer())


def test_efficient_eos_rows_stay_isolated_when_packed(base_data):
    """Two glm4 rows packed: each keeps its closing EOS as the last label, the second starts unlabelled and its
    positions restart."""
    tok = tokenizer_for("glm4")
    data = dataclasses.replace(base_data, template="glm4")
    first = encode(data, tok, FACTS["conversations"]["single"])
    second = encode(data, tok, FACTS["conversations"]["multi"], "Be brief.")
    assert first[1][-1] == second[1][-1] == tok.eos_token_id
    row = pack_row([{"input_ids": ids, "labels": labels} for ids, labels in (first, second)])
    assert row["input_ids"] == first[0] + second[0]
    assert row["labels"] == first[1] + [IGNORE_INDEX] + second[1][1:]
    assert row["position_ids"] == [*range(len(first[0])), *range(len(second[0]))]
