"""Write tests/facts/swift_templates.json: the (input_ids, labels) ms-swift's own template code gives for the text
templates its users write with `--template`, on fixed conversations, with the tiny test tokenizer.

ms-swift is not installed: its released wheel is unpacked into a temporary folder and only `swift.template` is
imported (the `swift` package's `__init__` is skipped; the few `modelscope` and `json_repair` names its utilities
import are stubbed: hub access, which the templates do not use, raises). Each row is encoded as `swift sft` does:
`Template.encode` in training mode, `loss_scale` default (and last_round), no truncation.

    pip download --no-deps ms-swift==4.6.0 -d /tmp/swift
    .venv/bin/python scripts/swift_template_facts.py --wheel /tmp/swift/ms_swift-4.6.0-py3-none-any.whl

The tokenizer gets, per template, the special tokens the template writes, and as BOS / EOS the literal tokens its
prefix / suffix write where they are a model's BOS / EOS (`<s>`, `<bos>`, `</s>` ...), as the real model's tokenizer
has them. The file also lists every ms-swift template name as text or multimodal.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import re
import sys
import tempfile
import types
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from helpers import tiny_tokenizer  # noqa: E402
from template_cases import MULTI, SINGLE  # noqa: E402
from tokenizers import processors  # noqa: E402

FACTS = ROOT / "tests" / "facts" / "swift_templates.json"
# The text templates users of ms-swift write (those that exist in the release).
NAMES = [
    "default",
    "chatml",
    "qwen",
    "qwen2_5",
    "qwen3",
    "qwen3_thinking",
    "qwen3_nothinking",
    "qwq",
    "llama",
    "llama3",
    "glm4",
    "glm4_5",
    "chatglm4",
    "deepseek",
    "deepseek_r1",
    "deepseek_v3_1",
    "gemma",
    "gemma3_text",
    "phi3",
    "phi4",
    "yi_coder",
    "internlm2",
    "zephyr",
]
TOKEN = re.compile(r"<\|[^<>|\s]+\|>|<｜[^<>\s]+?｜>|</?[a-z_]+>|\[/?[A-Z_]+\]|\[gMASK\]")
MODEL_BOS = ("<s>", "<bos>", "<|begin_of_text|>", "<｜begin▁of▁sentence｜>")
MODEL_EOS = ("</s>", "<｜end▁of▁sentence｜>")
# Models whose tokenizer adds its BOS itself (ms-swift's auto_add_bos templates then open with it): InternLM2's
# <s>, in every case.
TOKENIZER_BOS = {"internlm2": "<s>"}
TINY_BOS = "<|tiny_bos|>"  # the tiny tokenizer has none: one is added so BOS slots show
THOUGHTS = [
    {"role": "user", "content": "Q1"},
    {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nA1"},
    {"role": "user", "content": "Q2"},
    {"role": "assistant", "content": "A2"},
]
CONVERSATIONS = {"single": SINGLE, "multi": MULTI, "thoughts": THOUGHTS}
# (case, conversation, system, loss_scale): system None is "not given" (the template's default system applies).
CASES = [
    ("single", "single", None, "default"),
    ("multi_system", "multi", "Be brief.", "default"),
    ("multi", "multi", None, "default"),
    ("multi_last_round", "multi", "Be brief.", "last_round"),
]
THINKING_CASES = [
    ("thoughts", "thoughts", None, "default"),
    ("thoughts_system", "thoughts", "Be brief.", "default"),
    ("thoughts_last_round", "thoughts", None, "last_round"),
]


def load_swift(src: Path) -> Any:
    """`swift.template` from the unpacked wheel `src`, without running `swift/__init__.py`."""
    for name in ("modelscope", "modelscope.hub", "modelscope.hub.utils", "modelscope.utils"):
        _stub(name)
    _stub("modelscope.hub.utils.utils", get_cache_dir=lambda *a, **k: str(src / "cache"))
    _stub("modelscope.utils.logger", get_logger=_ms_logger)
    _stub("modelscope.hub.api", HubApi=_Unused, ModelScopeConfig=_Unused)
    _stub("modelscope.hub.file_download", model_file_download=_Unused)
    _stub("json_repair", repair_json=_Unused, loads=_Unused)
    swift = _stub("swift")
    swift.__path__ = [str(src / "swift")]
    sys.path.insert(0, str(src))
    try:
        return importlib.import_module("swift.template")
    finally:
        sys.path.remove(str(src))


def _stub(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


class _Unused:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("hub access is not available to the template facts")


def _ms_logger(*args: Any, **kwargs: Any) -> logging.Logger:
    logger = logging.getLogger("modelscope")
    logger.addHandler(logging.NullHandler())
    return logger


def special_tokens(meta: Any) -> list[str]:
    """The literal special tokens a template's parts and stop words write."""
    found: set[str] = set()
    for key in ("prefix", "prompt", "chat_sep", "suffix", "system_prefix"):
        for part in getattr(meta, key) or []:
            if isinstance(part, str):
                found |= set(TOKEN.findall(part))
    found |= {w for w in meta.stop_words or [] if isinstance(w, str) and TOKEN.fullmatch(w)}
    return sorted(found)


def model_tokens(meta: Any) -> dict[str, str]:
    """BOS / EOS as the model's tokenizer has them: the literal ones the template writes, else the tiny ones."""
    first = meta.prefix[0] if meta.prefix and isinstance(meta.prefix[0], str) else ""
    last = meta.suffix[-1] if meta.suffix and isinstance(meta.suffix[-1], str) else ""
    bos = next((t for t in MODEL_BOS if first.startswith(t)), TINY_BOS)
    out = {"bos_token": TOKENIZER_BOS.get(meta.template_type, bos)}
    if last in MODEL_EOS:
        out["eos_token"] = last
    return out


def tokenizer_for(tokens: list[str], specials: dict[str, str], adds_bos: bool) -> Any:
    """The tiny tokenizer with the template's tokens; `adds_bos`: encoding with special tokens starts with BOS."""
    tok = tiny_tokenizer()
    tok.add_special_tokens(specials)
    tok.add_tokens(tokens, special_tokens=True)
    if adds_bos:
        bos = (tok.bos_token, tok.bos_token_id)
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos[0]} $A", pair=f"{bos[0]} $A $B", special_tokens=[bos]
        )
    return tok


def encode(
    swift: Any, name: str, tok: Any, messages: list[dict], system: str | None, loss_scale: str
) -> dict[str, list[int]]:
    """ms-swift's training encoding of one row (what `swift sft --loss_scale LOSS_SCALE` feeds the model)."""
    tok.model_info = types.SimpleNamespace(
        config=None, task_type="causal_lm", max_model_len=None, model_dir=None
    )
    tok.model_meta = types.SimpleNamespace(is_multimodal=False)
    meta = swift.TEMPLATE_MAPPING[name]
    template = meta.template_cls(tok, meta, None, None, loss_scale=loss_scale)
    template.set_mode("train")
    head = [] if system is None else [{"role": "system", "content": system}]
    out = template.encode({"messages": head + messages})
    return {"input_ids": out["input_ids"], "labels": out["labels"]}


def template_facts(swift: Any, name: str) -> dict[str, Any]:
    """The template's cases; an auto_add_bos template (the sequence opens with what the tokenizer's encoding puts
    first) is also encoded with a tokenizer that adds its BOS (`tokenizer_adds_bos`)."""
    meta = swift.TEMPLATE_MAPPING[name]
    tokens, specials = special_tokens(meta), model_tokens(meta)
    reasoning = bool(meta.is_thinking or meta.non_thinking_prefix)
    cases = [(*c, name in TOKENIZER_BOS) for c in CASES + (THINKING_CASES if reasoning else [])]
    if meta.auto_add_bos and name not in TOKENIZER_BOS:
        cases += [(f"{c[0]}_tokenizer_bos", *c[1:], True) for c in CASES[:2]]
    rows = []
    for case, conversation, system, loss_scale, adds_bos in cases:
        tok = tokenizer_for(tokens, specials, adds_bos)
        encoded = encode(swift, name, tok, CONVERSATIONS[conversation], system, loss_scale)
        row = {"name": case, "conversation": conversation, "system": system, "loss_scale": loss_scale}
        rows.append({**row, "tokenizer_adds_bos": adds_bos, **encoded})
    return {
        "special_tokens": tokens,
        **specials,
        "auto_add_bos": meta.auto_add_bos,
        "default_system": meta.default_system,
        "reasoning": reasoning,
        "cases": rows,
    }


def template_kinds(swift: Any) -> dict[str, str]:
    """Every registered name: `text` (ms-swift's LLMTemplateType), `reward` or `multimodal`."""
    constant = importlib.import_module("swift.template.constant")
    kinds = {}
    for kind, cls in (
        ("text", "LLMTemplateType"),
        ("reward", "RMTemplateType"),
        ("multimodal", "MLLMTemplateType"),
    ):
        names = {v for k, v in vars(getattr(constant, cls)).items() if not k.startswith("_")}
        kinds |= {n: kind for n in names if n in swift.TEMPLATE_MAPPING and n not in kinds}
    return dict(sorted(kinds.items()))


def _compact_lists(text: str) -> str:
    """Lists of numbers on one line each (the ids), the rest indented."""
    return re.sub(
        r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wheel", required=True, type=Path, help="the ms-swift wheel (pip download)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(args.wheel) as wheel:
            wheel.extractall(tmp)
        swift = load_swift(Path(tmp))
        version = importlib.import_module("swift.version").__version__
        facts = {name: template_facts(swift, name) for name in NAMES}
        kinds = template_kinds(swift)
    out = {
        "swift_version": version,
        "conversations": CONVERSATIONS,
        "template_kinds": kinds,
        "templates": facts,
    }
    FACTS.parent.mkdir(parents=True, exist_ok=True)
    FACTS.write_text(_compact_lists(json.dumps(out, ensure_ascii=False, indent=1)) + "\n")
    print(f"wrote {FACTS}: {len(facts)} templates, ms-swift {version}")


if __name__ == "__main__":
    main()
