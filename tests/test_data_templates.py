"""Built-in templates render the ids and labels LLaMA-Factory's templates of the same name produce.

Expected ids are written out slot by slot from the templates' documented layout: each string slot is tokenized on
its own (without special tokens added), special slots are one token, prompts are -100, answers are trained on.
"""

from __future__ import annotations

import json

import pytest
from helpers import tiny_tokenizer, write_json

from tunesmith.config import load_config
from tunesmith.data.pipeline import build_datasets
from tunesmith.data.render import build_renderer
from tunesmith.data.tokenize import IGNORE_INDEX, encode_pieces, supervise
from tunesmith.utils.errors import ConfigError

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))


def cfg_for(tmp_path, rows, formatting="sharegpt", **args):
    """A config whose single dataset is `rows`, written to a JSON file in a dataset_info.json registry."""
    write_json(tmp_path / "d.json", rows)
    write_json(tmp_path / "dataset_info.json", {"d": {"file_name": "d.json", "formatting": formatting}})
    overrides = ["model=builtin:tiny", "dataset=d", f"dataset_dir={tmp_path}", "cutoff_len=1024"]
    return load_config(None, overrides + [f"{k}={v}" for k, v in args.items()])


def enc(tok, text):
    return tok.encode(text, add_special_tokens=False)


def run(cfg, tok):
    return build_datasets(cfg, tok).train[0]


def expect(tok, *parts):
    """parts: (text or [ids], trained?) -> (input_ids, labels)."""
    ids, labels = [], []
    for piece, trained in parts:
        piece_ids = piece if isinstance(piece, list) else enc(tok, piece)
        ids += piece_ids
        labels += piece_ids if trained else [IGNORE_INDEX] * len(piece_ids)
    return ids, labels


def llama3_tokenizer():
    tok = tiny_tokenizer()
    tok.add_special_tokens({"bos_token": "<|begin_of_text|>"})
    tok.add_tokens(
        ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>"], special_tokens=True
    )
    return tok


MULTI_TURN = [
    {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Capital of France?"},
            {"from": "gpt", "value": "Paris."},
            {"from": "human", "value": "And of Spain?"},
            {"from": "gpt", "value": "Madrid."},
        ]
    }
]


def test_qwen_multi_turn_sharegpt_every_label_by_hand(tmp_path, tokenizer):
    row = run(cfg_for(tmp_path, MULTI_TURN, template="qwen"), tokenizer)
    im_start, im_end, nl = 1, 2, enc(tokenizer, "\n")
    assert nl == [201]

    def span(text):
        return enc(tokenizer, text)

    prompt1 = span("<|im_start|>system\nBe brief.<|im_end|>\n") + span(
        "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    answer1 = span("Paris.<|im_end|>\n")
    prompt2 = span("<|im_start|>user\nAnd of Spain?<|im_end|>\n<|im_start|>assistant\n")
    answer2 = span("Madrid.<|im_end|>\n")
    assert row["input_ids"] == prompt1 + answer1 + prompt2 + answer2
    # position by position: prompts are -100, each answer (its text, <|im_end|> and the newline) is trained on
    labels = row["labels"]
    cursor = 0
    for ids, trained in ((prompt1, False), (answer1, True), (prompt2, False), (answer2, True)):
        for offset, token in enumerate(ids):
            assert labels[cursor + offset] == (token if trained else IGNORE_INDEX), (cursor + offset, token)
        cursor += len(ids)
    assert cursor == len(labels)
    assert prompt1[0] == im_start and answer1[-2:] == [im_end, 201] and answer2[-2:] == [im_end, 201]
    assert (
        tokenizer.decode([t for t in labels if t != IGNORE_INDEX]) == "Paris.<|im_end|>\nMadrid.<|im_end|>\n"
    )


def test_qwen_uses_its_default_system_and_default_system_overrides_it(tmp_path, tokenizer):
    rows = [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}]
    row = run(cfg_for(tmp_path, rows, template="qwen"), tokenizer)
    assert (row["input_ids"], row["labels"]) == expect(
        tokenizer,
        (f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n", False),
        ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", False),
        ("Hello<|im_end|>\n", True),
    )
    row = run(
        cfg_for(tmp_path, rows, template="qwen2_5", default_system="Be kind.", overwrite_cache=True),
        tokenizer,
    )
    assert tokenizer.decode(row["input_ids"]).startswith("<|im_start|>system\nBe kind.<|im_end|>\n")


def test_chatml_has_no_default_system_and_tool_turns(tmp_path, tokenizer):
    rows = [
        {
            "conversations": [
                {"from": "human", "value": "Hi"},
                {"from": "gpt", "value": "Hello"},
                {"from": "observation", "value": "42"},
                {"from": "gpt", "value": "It is 42."},
            ]
        }
    ]
    row = run(cfg_for(tmp_path, rows, template="chatml"), tokenizer)
    assert (row["input_ids"], row["labels"]) == expect(
        tokenizer,
        ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", False),
        ("Hello<|im_end|>\n", True),
        ("<|im_start|>tool\n42<|im_end|>\n<|im_start|>assistant\n", False),
        ("It is 42.<|im_end|>\n", True),
    )


ALPACA_ROW = [{"instruction": "Add", "input": "1 and 2", "output": "3"}]


def test_alpaca_template_places_eos_after_each_answer(tmp_path, tokenizer):
    row = run(cfg_for(tmp_path, ALPACA_ROW, formatting="alpaca", template="alpaca"), tokenizer)
    system = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    eos = [tokenizer.eos_token_id]
    assert (row["input_ids"], row["labels"]) == expect(
        tokenizer,
        (system, False),
        ("### Instruction:\nAdd\n1 and 2\n\n### Response:\n", False),
        ("3", True),
        (eos, True),
        ("\n\n", True),
    )


def test_default_template_eos_in_prompt_and_answer(tmp_path, tokenizer):
    row = run(
        cfg_for(tmp_path, ALPACA_ROW, formatting="alpaca", template="default", default_system="S"), tokenizer
    )
    eos = [tokenizer.eos_token_id]
    assert (row["input_ids"], row["labels"]) == expect(
        tokenizer,
        ("System: S", False),
        (eos, False),
        ("\n", False),
        ("Human: Add\n1 and 2", False),
        (eos, False),
        ("\nAssistant:", False),
        ("3", True),
        (eos, True),
        ("\n", True),
    )


def test_empty_template_is_bare_text_without_eos(tmp_path, tokenizer):
    row = run(cfg_for(tmp_path, ALPACA_ROW, formatting="alpaca", template="empty"), tokenizer)
    assert (row["input_ids"], row["labels"]) == expect(tokenizer, ("Add\n1 and 2", False), ("3", True))


def test_llama3_bos_prefix_headers_and_eot(tmp_path):
    tok = llama3_tokenizer()
    rows = [{"instruction": "Hi", "output": "Hello", "system": "Sys"}]
    write_json(tmp_path / "d.json", rows)
    info = {
        "d": {
            "file_name": "d.json",
            "columns": {"prompt": "instruction", "response": "output", "system": "system"},
        }
    }
    write_json(tmp_path / "dataset_info.json", info)
    cfg = load_config(None, ["model=builtin:tiny", "dataset=d", f"dataset_dir={tmp_path}", "template=llama3"])
    row = run(cfg, tok)
    assert (row["input_ids"], row["labels"]) == expect(
        tok,
        ([tok.bos_token_id], False),
        ("<|start_header_id|>system<|end_header_id|>\n\nSys<|eot_id|>", False),
        (
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            False,
        ),
        ("Hello<|eot_id|>", True),
    )


def test_template_needing_missing_tokens_is_a_clear_error(tmp_path, tokenizer):
    with pytest.raises(ConfigError, match=r"llama3.*<\|eot_id\|>"):
        run(cfg_for(tmp_path, ALPACA_ROW, formatting="alpaca", template="llama3"), tokenizer)
    with pytest.raises(ConfigError, match="unknown template 'nope'.*qwen"):
        run(cfg_for(tmp_path, ALPACA_ROW, formatting="alpaca", template="nope"), tokenizer)


def test_tokenizer_chat_template_matches_transformers_rendering(tmp_path, tokenizer):
    """No `template`: the tokenizer's Jinja template. The ids equal apply_chat_template's, and the trained
    tokens are exactly its {% generation %} assistant mask plus the newline that closes each answer."""
    row = run(cfg_for(tmp_path, MULTI_TURN), tokenizer)
    chat = [{"role": "system", "content": "Be brief."}]
    for turn in MULTI_TURN[0]["conversations"][1:]:
        chat.append({"role": "user" if turn["from"] == "human" else "assistant", "content": turn["value"]})
    reference = tokenizer.apply_chat_template(
        chat, tokenize=True, return_assistant_tokens_mask=True, return_dict=True
    )
    assert row["input_ids"] == reference["input_ids"]
    ours = [label != IGNORE_INDEX for label in row["labels"]]
    theirs = [bool(m) for m in reference["assistant_masks"]]
    extra = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a and not b]
    assert all(b <= a for a, b in zip(ours, theirs, strict=True))
    assert [row["input_ids"][i] for i in extra] == [201, 201]  # the "\n" after each <|im_end|>


def pieces_ids(tok, data_args, messages, system="", tools=""):
    renderer = build_renderer(data_args, tok)
    turns = renderer.turns(messages, system, tools)
    flat = encode_pieces(tok, [p for turn in turns for p in turn])
    pairs = [(flat[2 * i], flat[2 * i + 1]) for i in range(len(turns))]
    return supervise(pairs, 1024, False, data_args.mask_history, renderer.closing_eos)


def data_args(**kw):
    cfg = load_config(None, ["model=builtin:tiny"] + [f"{k}={v}" for k, v in kw.items()])
    return cfg.data


TWO_TURNS_THINK = [
    {"role": "user", "content": "Q1"},
    {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nA1"},
    {"role": "user", "content": "Q2"},
    {"role": "assistant", "content": "A2"},
]
EMPTY_THOUGHT = "<think>\n\n</think>\n\n"


def test_qwen3_enable_thinking_true_trains_on_empty_thought(tokenizer):
    ids, labels = pieces_ids(tokenizer, data_args(template="qwen3", enable_thinking=True), TWO_TURNS_THINK)
    assert (ids, labels) == expect(
        tokenizer,
        ("<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n", False),
        ("<think>\nhmm\n</think>\n\nA1<|im_end|>\n", True),
        ("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n", False),
        (EMPTY_THOUGHT, True),
        ("A2<|im_end|>\n", True),
    )


def test_qwen3_enable_thinking_false_strips_thoughts_and_puts_empty_thought_in_prompt(tokenizer):
    ids, labels = pieces_ids(tokenizer, data_args(template="qwen3", enable_thinking=False), TWO_TURNS_THINK)
    assert (ids, labels) == expect(
        tokenizer,
        ("<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n", False),
        (EMPTY_THOUGHT, False),
        ("A1<|im_end|>\n", True),
        ("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n", False),
        (EMPTY_THOUGHT, False),
        ("A2<|im_end|>\n", True),
    )


def test_qwen3_enable_thinking_none_keeps_existing_thoughts(tokenizer):
    args = data_args(template="qwen3")
    args.enable_thinking = None
    ids, labels = pieces_ids(tokenizer, args, TWO_TURNS_THINK)
    assert (ids, labels) == expect(
        tokenizer,
        ("<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n", False),
        ("<think>\nhmm\n</think>\n\nA1<|im_end|>\n", True),
        ("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n", False),
        (EMPTY_THOUGHT, False),
        ("A2<|im_end|>\n", True),
    )


TOOLS = [{"name": "add", "description": "Add numbers", "parameters": {"type": "object", "properties": {}}}]


def test_qwen_tool_format_lists_tools_in_system_and_formats_calls(tokenizer):
    messages = [
        {"role": "user", "content": "1+2?"},
        {"role": "function", "content": json.dumps({"name": "add", "arguments": {"a": 1, "b": 2}})},
        {"role": "observation", "content": "3"},
        {"role": "assistant", "content": "3"},
    ]
    ids, labels = pieces_ids(
        tokenizer, data_args(template="qwen3_nothink"), messages, tools=json.dumps(TOOLS)
    )
    tool_json = json.dumps({"type": "function", "function": TOOLS[0]})
    system = (
        "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tool_json}"
        "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}'
        "\n</tool_call>"
    )
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    assert (ids, labels) == expect(
        tokenizer,
        (f"<|im_start|>system\n{system}<|im_end|>\n", False),
        ("<|im_start|>user\n1+2?<|im_end|>\n<|im_start|>assistant\n", False),
        (f"{call}<|im_end|>\n", True),
        ("<|im_start|>user\n<tool_response>\n3\n</tool_response><|im_end|>\n<|im_start|>assistant\n", False),
        ("3<|im_end|>\n", True),
    )


def test_tool_format_override_uses_default_action_format(tokenizer):
    messages = [
        {"role": "user", "content": "1+2?"},
        {"role": "function", "content": json.dumps({"name": "add", "arguments": {"a": 1}})},
    ]
    ids, labels = pieces_ids(tokenizer, data_args(template="chatml", tool_format="default"), messages)
    answer = tokenizer.decode([t for t in labels if t != IGNORE_INDEX])
    assert answer == 'Action: add\nAction Input: {"a": 1}<|im_end|>'  # tool_format override: content + EOS
    with pytest.raises(ConfigError, match="unknown tool format 'xml'"):
        build_renderer(data_args(template="chatml", tool_format="xml"), tokenizer)


def test_qwen3_mask_history_strips_history_thoughts_and_trains_last_answer(tokenizer):
    ids, labels = pieces_ids(tokenizer, data_args(template="qwen3", mask_history=True), TWO_TURNS_THINK)
    assert (ids, labels) == expect(
        tokenizer,
        ("<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n", False),
        ("A1<|im_end|>\n", False),  # history: thought removed, no empty thought added, not trained
        ("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n", False),
        (EMPTY_THOUGHT, True),
        ("A2<|im_end|>\n", True),
    )


def test_llama2_puts_the_system_inside_the_first_inst_and_bos_before_each():
    tokenizer = tiny_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "<s>"})
    messages = [
        {"role": m["from"].replace("human", "user").replace("gpt", "assistant"), "content": m["value"]}
        for m in MULTI_TURN[0]["conversations"][1:]
    ]
    ids, labels = pieces_ids(tokenizer, data_args(template="llama2"), messages, system="Be brief.")
    bos, eos = [tokenizer.bos_token_id], [tokenizer.eos_token_id]
    assert (ids, labels) == expect(
        tokenizer,
        (bos, False),
        ("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nCapital of France? [/INST]", False),
        ("Paris.", True),
        (eos, True),
        (bos, False),  # later turns: no system
        ("[INST] And of Spain? [/INST]", False),
        ("Madrid.", True),
        (eos, True),
    )
    no_system, _ = pieces_ids(tokenizer, data_args(template="llama2"), messages[:2])
    assert (
        no_system
        == bos + enc(tokenizer, "[INST] Capital of France? [/INST]") + enc(tokenizer, "Paris.") + eos
    )


def test_qwen3_5_lists_tools_as_json_and_writes_calls_as_xml_parameters(tokenizer):
    messages = [
        {"role": "user", "content": "1+2?"},
        {"role": "function", "content": json.dumps({"name": "add", "arguments": {"a": 1, "b": "two"}})},
        {"role": "observation", "content": "3"},
        {"role": "assistant", "content": "3"},
    ]
    ids, labels = pieces_ids(
        tokenizer, data_args(template="qwen3_5_nothink"), messages, tools=json.dumps(TOOLS)
    )
    system_text = tokenizer.decode(ids[: ids.index(tokenizer.convert_tokens_to_ids("<|im_end|>"))])
    assert system_text.startswith(
        "<|im_start|>system\n\n\n# Tools\n\nYou have access to the following functions:"
    )
    assert f"<tools>\n{json.dumps(TOOLS[0])}\n</tools>" in system_text
    call = "<tool_call>\n<function=add>\n<parameter=a>\n1\n</parameter>\n<parameter=b>\ntwo\n</parameter>\n</function>\n</tool_call>"
    answers = tokenizer.decode([t for t in labels if t != IGNORE_INDEX])
    assert answers == f"{call}<|im_end|>\n3<|im_end|>\n"
    thinking, _ = pieces_ids(tokenizer, data_args(template="qwen3_5"), messages[:2])
    assert EMPTY_THOUGHT in tokenizer.decode(thinking)  # the reasoning variant, as qwen3


def test_efficient_eos_one_closing_eos_that_also_labels_each_later_prompt_start(tokenizer):
    """glm4 (LLaMA-Factory's efficient_eos): answers carry no EOS; one EOS closes the sequence and is the label of
    the first token of the second turn's prompt (the model learns to stop after the first answer too)."""
    messages = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "A2"},
    ]
    ids, labels = pieces_ids(tokenizer, data_args(template="glm4"), messages)
    eos = tokenizer.eos_token_id
    prompt1 = enc(tokenizer, "[gMASK]<sop>") + enc(tokenizer, "<|user|>\nQ1<|assistant|>")
    answer1 = enc(tokenizer, "\nA1")
    ids_expected, labels_expected = expect(
        tokenizer,
        (prompt1, False),
        (answer1, True),
        ("<|user|>\nQ2<|assistant|>", False),
        ("\nA2", True),
        ([eos], True),
    )
    labels_expected[len(prompt1) + len(answer1)] = eos  # the second prompt's first token: trained to stop
    assert (ids, labels) == (ids_expected, labels_expected)
