"""A tokenizer for the run that has the special tokens the config's chat template writes (`<|eot_id|>` for
llama3, `[INST]` ...): a copy of the tiny model's tokenizer with them added. The template stays as written."""

from __future__ import annotations

from pathlib import Path

from tunesmith.data.templates import Token, get_template
from tunesmith.utils.builtin import resolve_builtin
from tunesmith.utils.errors import ConfigError

FOLDER = "tokenizer"


def template_tokens(name: str) -> set[str]:
    """The special tokens template `name` writes besides BOS/EOS (its stop word too when it replaces EOS);
    empty for a name tunesmith does not know (the run then says so itself)."""
    try:
        template = get_template(name)
    except (ConfigError, KeyError, ValueError):
        return set()
    slots = (
        template.user,
        template.assistant,
        template.system_slots,
        template.observation_slots,
        template.function_slots,
        template.prefix,
        template.separator,
        template.closing,
    )
    needed = {s.name for group in slots for s in group if isinstance(s, Token)} - {"bos_token", "eos_token"}
    if template.replace_eos:
        needed.add(template.stop_words[0])
    return needed


def tokenizer_for(template: str, root: Path) -> tuple[str, list[str]] | None:
    """A tokenizer folder under `root` with the tokens `template` needs added, and those tokens; None when the
    tiny tokenizer has them all."""
    from transformers import AutoTokenizer

    tiny = AutoTokenizer.from_pretrained(str(resolve_builtin("builtin:tiny")))
    missing = sorted(t for t in template_tokens(template) if t not in tiny.get_vocab())
    if not missing:
        return None
    tiny.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    folder = root / FOLDER
    tiny.save_pretrained(str(folder))
    return str(folder), missing
