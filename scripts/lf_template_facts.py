"""Write tests/facts/lf_templates.json: the (input_ids, labels) LLaMA-Factory's own code gives for each built-in
template tunesmith shares with it, on fixed conversations, with the tiny test tokenizer.

LLaMA-Factory is not installed: its released wheel is unpacked into a temporary folder and only its template,
formatter, tool and supervised-processor modules are imported (its `mm_plugin` module, which needs torchaudio and
vision packages, is replaced by a stub that keeps text as is, as its base plugin does without media).

    pip download --no-deps llamafactory==0.9.5 -d /tmp/lf
    .venv/bin/python scripts/lf_template_facts.py --wheel /tmp/lf/llamafactory-0.9.5-py3-none-any.whl \
        [--head-src /tmp/lf_head/src]   # a newer LLaMA-Factory source tree: its extra template names too
        [--mindspeed-src /tmp/ms --mindspeed-rev <commit>]   # MindSpeed-LLM's FSDP2 templates (its `gpt`)

The file also lists every LLaMA-Factory template name with its multimodal plugin (None for text templates), from
which tunesmith/data/lf_template_names.py is written (printed with --print-names).
"""

from __future__ import annotations

import argparse
import copy
import enum
import importlib
import inspect
import json
import re
import sys
import tempfile
import types
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import tiny_tokenizer  # noqa: E402
from template_cases import MULTI, SINGLE  # noqa: E402

from tunesmith.data.template_slots import Token  # noqa: E402
from tunesmith.data.templates import BUILTIN_TEMPLATES, TEMPLATE_ALIASES, get_template  # noqa: E402
from tunesmith.data.tool_formats import TOOL_FORMATS  # noqa: E402

FACTS = ROOT / "tests" / "facts" / "lf_templates.json"
TODAY = datetime(2026, 1, 2)  # llama3's tool prompt writes today's date: a fixed one on both sides
BOS_TOKEN = "<|tiny_bos|>"  # the tiny tokenizer has no BOS: one is added so BOS slots show
TOOLS = [
    {
        "name": "add",
        "description": "Add two numbers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer", "description": "first"}, "b": {"type": "integer"}},
            "required": ["a"],
        },
    }
]
CALL = json.dumps({"name": "add", "arguments": {"a": 1, "b": 2}})
TOOL_TURNS = [
    {"role": "user", "content": "What is 1+2?"},
    {"role": "function", "content": CALL},
    {"role": "observation", "content": "3"},
    {"role": "assistant", "content": "It is 3."},
]
CONVERSATIONS = {"single": SINGLE, "multi": MULTI, "tools": TOOL_TURNS}
TOOLS_JSON = json.dumps(TOOLS, ensure_ascii=False)
PAIR = {"prompt": MULTI[:-1], "chosen": "Rome.", "rejected": "Milan, I believe, or perhaps Turin."}
_PAIR_DEFAULTS = {"system": "", "mask_history": False, "enable_thinking": True, "tool_format": None}
PAIR_CASES = [
    {"name": "pair", **_PAIR_DEFAULTS, "cutoff_len": 1024},
    {"name": "pair_cutoff", **_PAIR_DEFAULTS, "system": "Be brief.", "cutoff_len": 30},
]
THOUGHTS = [
    {"role": "user", "content": "Q1"},
    {"role": "assistant", "content": "{open}hmm{close}A1"},
    {"role": "user", "content": "Q2"},
    {"role": "assistant", "content": "A2"},
]


def cases(template: Any, lf_template: Any) -> list[dict[str, Any]]:
    """The conversations (a key of CONVERSATIONS, or the messages themselves) and data arguments every template is
    encoded with: tools only where tunesmith has the template's tool format, thoughts (in LLaMA-Factory's
    thought words) for reasoning templates."""
    out: list[dict[str, Any]] = [
        {"name": "single", "conversation": "single"},
        {"name": "multi_system", "conversation": "multi", "system": "Be brief."},
        {"name": "multi_cutoff", "conversation": "multi", "system": "Be brief.", "cutoff_len": 40},
        {"name": "multi_mask_history", "conversation": "multi", "mask_history": True},
    ]
    if template.tool_format in TOOL_FORMATS:
        out.append({"name": "tools", "conversation": "tools", "tools": True})
        out.append({"name": "tools_system", "conversation": "tools", "system": "Be brief.", "tools": True})
    if template.tool_format not in TOOL_FORMATS or template.name == "chatml":  # a tool_format override
        out.append({"name": "tools_as_qwen", "conversation": "tools", "tools": True, "tool_format": "qwen"})
    if template.reasoning:
        words = dict(zip(("open", "close"), lf_template.thought_words, strict=True))
        thoughts = [{**m, "content": m["content"].format(**words)} for m in THOUGHTS]
        for thinking in (True, False, None):
            out.append({"name": f"thinking_{thinking}", "messages": thoughts, "enable_thinking": thinking})
        out.append({"name": "thinking_mask_history", "messages": thoughts, "mask_history": True})
    defaults = {
        "system": "",
        "tools": False,
        "tool_format": None,
        "cutoff_len": 1024,
        "mask_history": False,
        "enable_thinking": True,
    }
    return [{**defaults, **case} for case in out]


def special_tokens(template: Any) -> list[str]:
    """The tokens added to the tiny tokenizer for `template`: its stop words and literal token slots (a real
    model's tokenizer has them as special tokens)."""
    slots = (template.user, template.assistant, template.system_slots, template.observation_slots)
    literal = {
        s.name
        for group in (*slots, template.function_slots, template.prefix)
        for s in group
        if isinstance(s, Token)
    }
    return sorted((set(template.stop_words) | literal) - {"bos_token", "eos_token"})


def tokenizer_for(tokens: list[str]) -> Any:
    tok = tiny_tokenizer()
    tok.add_special_tokens({"bos_token": BOS_TOKEN})
    tok.add_tokens(tokens, special_tokens=True)
    return tok


def load_lf(src: Path) -> tuple[Any, dict[str, Any]]:
    """LLaMA-Factory's template module and supervised processor class from the source tree `src` (holding
    `llamafactory/`), without running its package `__init__`s."""
    for name in list(sys.modules):
        if name == "llamafactory" or name.startswith("llamafactory."):
            del sys.modules[name]
    for name in ("llamafactory", "llamafactory.data", "llamafactory.extras", "llamafactory.data.processor"):
        module = types.ModuleType(name)
        module.__path__ = [str(src / name.replace(".", "/"))]
        sys.modules[name] = module
    sys.modules["llamafactory.data.mm_plugin"] = _mm_stub()
    sys.path.insert(0, str(src))
    try:
        template = importlib.import_module("llamafactory.data.template")
        supervised = importlib.import_module("llamafactory.data.processor.supervised")
    finally:
        sys.path.remove(str(src))
    importlib.import_module("llamafactory.data.tool_utils").datetime = FixedDate
    pairwise = importlib.import_module("llamafactory.data.processor.pairwise")
    return template, {"sft": supervised.SupervisedDatasetProcessor, "pair": pairwise.PairwiseDatasetProcessor}


class FixedDate(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # noqa: ARG003
        return TODAY


def load_mindspeed(src: Path) -> tuple[Any, dict[str, Any]]:
    """MindSpeed-LLM's FSDP2 template module and SFT processor from the tree `src` (holding `mindspeed_llm/`);
    its converter and argument modules (datasets, torch.distributed, yaml) are replaced by the two names the
    template imports from them."""
    for name in (
        "mindspeed_llm",
        "mindspeed_llm.fsdp2",
        "mindspeed_llm.fsdp2.data",
        "mindspeed_llm.fsdp2.utils",
        "mindspeed_llm.fsdp2.data.processor",
    ):
        module = types.ModuleType(name)
        module.__path__ = [str(src / name.replace(".", "/"))]
        sys.modules[name] = module
    converter = types.ModuleType("mindspeed_llm.fsdp2.data.converter")
    converter.Role = enum.Enum(
        "Role", {k.upper(): k for k in ("user", "assistant", "system", "function", "observation")}, type=str
    )
    arguments = types.ModuleType("mindspeed_llm.fsdp2.utils.arguments")
    arguments.DataArguments = object
    sys.modules.update({converter.__name__: converter, arguments.__name__: arguments})
    sys.path.insert(0, str(src))
    try:
        template = importlib.import_module("mindspeed_llm.fsdp2.data.template")
        sft = importlib.import_module("mindspeed_llm.fsdp2.data.processor.sft_processor")
    finally:
        sys.path.remove(str(src))
    return template, {"sft": sft.SFTDatasetProcessor}


def _mm_stub() -> types.ModuleType:
    class Plugin:
        def __init__(self, name: str, **tokens: Any) -> None:
            self.name = name

        def process_messages(self, messages, images, videos, audios, processor):  # text kept as is
            return copy.deepcopy(messages)

        def process_token_ids(self, input_ids, labels, images, videos, audios, tokenizer, processor):
            return input_ids, labels

    module = types.ModuleType("llamafactory.data.mm_plugin")
    module.get_mm_plugin = lambda name, **tokens: Plugin(name, **tokens)
    return module


def lf_processor(lf: Any, processor_cls: Any, name: str, case: dict[str, Any], tokens: list[str]) -> Any:
    """LLaMA-Factory's processor of `processor_cls` for template `name` and the case's data arguments."""
    tok = tokenizer_for(tokens)
    data_args = types.SimpleNamespace(
        template=name,
        train_on_prompt=False,
        mask_history=case["mask_history"],
        cutoff_len=case["cutoff_len"],
        tool_format=case["tool_format"],
        default_system=None,
        enable_thinking=case["enable_thinking"],
        preserve_thinking=False,
    )
    registered = lf.TEMPLATES[name]
    lf.TEMPLATES[name] = copy.deepcopy(registered)  # it sets tool_format etc. on the registered template
    try:
        template = lf.get_template_and_fix_tokenizer(tok, data_args)
    finally:
        lf.TEMPLATES[name] = registered
    return _call(processor_cls, template=template, tokenizer=tok, processor=None, data_args=data_args)


def _call(function: Any, **kwargs: Any) -> Any:
    """Call with the keyword arguments `function` takes (MindSpeed-LLM's processors take no media)."""
    accepted = inspect.signature(function).parameters
    return function(**{k: v for k, v in kwargs.items() if k in accepted})


def encode(lf: Any, processors: dict[str, Any], name: str, case: dict[str, Any], tokens: list[str]) -> dict:
    processor = lf_processor(lf, processors["sft"], name, case, tokens)
    messages = case.get("messages") or CONVERSATIONS[case["conversation"]]
    input_ids, labels = _call(
        processor._encode_data_example,
        prompt=messages[:-1],
        response=messages[-1:],
        system=case["system"],
        tools=TOOLS_JSON if case["tools"] else "",
        images=[],
        videos=[],
        audios=[],
    )
    return {**case, "input_ids": input_ids, "labels": labels}


def encode_pair(
    lf: Any, processors: dict[str, Any], name: str, case: dict[str, Any], tokens: list[str]
) -> dict:
    """A preference pair: the multi-turn conversation's last answer, and a longer rejected one."""
    processor = lf_processor(lf, processors["pair"], name, case, tokens)
    answers = [{"role": "assistant", "content": PAIR[key]} for key in ("chosen", "rejected")]
    encoded = processor._encode_data_example(
        prompt=PAIR["prompt"],
        response=answers,
        system=case["system"],
        tools="",
        images=[],
        videos=[],
        audios=[],
    )
    keys = ("input_ids", "labels", "rejected_input_ids", "rejected_labels")
    return {**case, **dict(zip(keys, encoded, strict=True))}


def _compact_lists(text: str) -> str:
    """Lists of numbers on one line each (the ids), the rest indented."""
    return re.sub(
        r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text
    )


def template_names(lf: Any) -> dict[str, str | None]:
    return {
        name: (None if t.mm_plugin.name == "base" else t.mm_plugin.name) for name, t in lf.TEMPLATES.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wheel", required=True, type=Path, help="the llamafactory wheel (pip download)")
    parser.add_argument("--head-src", type=Path, help="a newer LLaMA-Factory source tree (src/ folder)")
    parser.add_argument("--mindspeed-src", type=Path, help="a MindSpeed-LLM tree: its FSDP2 templates too")
    parser.add_argument("--mindspeed-rev", help="the MindSpeed-LLM commit of --mindspeed-src, to record")
    parser.add_argument("--print-names", action="store_true", help="print lf_template_names.py's sets")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(args.wheel) as wheel:
            wheel.extractall(tmp)
        lf, processors = load_lf(Path(tmp))
        version = importlib.import_module("llamafactory.extras.env").VERSION
        names = template_names(lf)
        facts: dict[str, Any] = {}
        for name in sorted({*BUILTIN_TEMPLATES, *TEMPLATE_ALIASES} & set(lf.TEMPLATES)):
            template = get_template(name)
            tokens = special_tokens(template)
            rows = [
                encode(lf, processors, name, case, tokens) for case in cases(template, lf.TEMPLATES[name])
            ]
            pairs = [encode_pair(lf, processors, name, case, tokens) for case in PAIR_CASES]
            facts[name] = {"special_tokens": tokens, "cases": rows, "pairs": pairs}
    head_names: dict[str, str | None] = {}
    head_version = None
    if args.head_src:
        head, _ = load_lf(args.head_src)
        head_names = template_names(head)
        head_version = importlib.import_module("llamafactory.extras.env").VERSION
    mindspeed: dict[str, Any] = {}
    if args.mindspeed_src:
        ms, ms_processors = load_mindspeed(args.mindspeed_src)
        for name in sorted(set(BUILTIN_TEMPLATES) & set(ms.TEMPLATES)):
            template, tokens = get_template(name), special_tokens(get_template(name))
            # without mask_history: MindSpeed keeps the earlier answers' thoughts there (and adds empty ones), where
            # LLaMA-Factory drops them; tunesmith follows LLaMA-Factory
            shared = [c for c in cases(template, ms.TEMPLATES[name]) if not c["mask_history"]]
            rows = [encode(ms, ms_processors, name, c, tokens) for c in shared]
            mindspeed[name] = {"special_tokens": tokens, "cases": rows}
    out = {
        "llamafactory_version": version,
        "llamafactory_head_version": head_version,
        "bos_token": BOS_TOKEN,
        "conversations": CONVERSATIONS,
        "tools": TOOLS_JSON,
        "pair": PAIR,
        "template_names": {**head_names, **names},
        "templates": facts,
        "mindspeed_rev": args.mindspeed_rev,
        "mindspeed_templates": mindspeed,
    }
    FACTS.parent.mkdir(parents=True, exist_ok=True)
    FACTS.write_text(_compact_lists(json.dumps(out, ensure_ascii=False, indent=1)) + "\n")
    print(f"wrote {FACTS}: {len(facts)} templates, LLaMA-Factory {version}")
    if args.print_names:
        built = {*BUILTIN_TEMPLATES, *TEMPLATE_ALIASES}
        multimodal = sorted(n for n, p in out["template_names"].items() if p and n not in built)
        text = sorted(n for n, p in out["template_names"].items() if not p and n not in built)
        print("LF_MULTIMODAL_TEMPLATES =", multimodal)
        print("LF_TEXT_TEMPLATES =", text)


if __name__ == "__main__":
    main()
