"""Built-in chat templates, named and laid out as LLaMA-Factory's text templates (and MindSpeed-LLM's `gpt`).

tests/test_data_templates_lf.py checks each against the ids LLaMA-Factory's own code produces
(tests/facts/lf_templates.json).
"""

from __future__ import annotations

import dataclasses

from tunesmith.data.lf_template_names import LF_MULTIMODAL_TEMPLATES, LF_TEXT_TEMPLATES
from tunesmith.data.template_catalog import TEMPLATES
from tunesmith.data.template_slots import EOS, SlotTemplate, Token
from tunesmith.data.tool_formats import TOOL_FORMATS
from tunesmith.utils.errors import ConfigError

__all__ = [
    "BUILTIN_TEMPLATES",
    "TEMPLATE_ALIASES",
    "SlotTemplate",
    "Token",
    "get_template",
    "with_tool_format",
]

BUILTIN_TEMPLATES: dict[str, SlotTemplate] = {t.name: t for t in TEMPLATES}
# Other names users of LLaMA-Factory / ms-swift write for the same layouts.
TEMPLATE_ALIASES = {
    "qwen2": "qwen",
    "qwen2_5": "qwen",
    "qwen1_5": "qwen",
    "qwen3_6": "qwen3_5",
    "llama3_1": "llama3",
    "llama3_2": "llama3",
}


def get_template(name: str) -> SlotTemplate:
    """The built-in template `name` (or an alias of one); a ConfigError saying why otherwise."""
    key = TEMPLATE_ALIASES.get(name, name)
    if key in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[key]
    if name in LF_MULTIMODAL_TEMPLATES:
        raise ConfigError(
            f"template: {name!r} is LLaMA-Factory's template for a vision/audio-language model, which tunesmith "
            "does not train (it trains text-only causal LMs)"
        )
    if name in LF_TEXT_TEMPLATES:
        raise ConfigError(
            f"template: {name!r} is LLaMA-Factory's template, not built in here; leave template unset to use the "
            "tokenizer's own chat template"
        )
    known = ", ".join(sorted([*BUILTIN_TEMPLATES, *TEMPLATE_ALIASES]))
    raise ConfigError(
        f"template: unknown template {name!r}; built-in templates: {known} (or leave it unset "
        "to use the tokenizer's own chat template)"
    )


def with_tool_format(template: SlotTemplate, tool_format: str | None) -> SlotTemplate:
    """`tool_format` overrides the template's: function calls then end with EOS (unless the template ends the
    sequence with one, efficient_eos), as in LLaMA-Factory."""
    if tool_format is None:
        return template
    if tool_format not in TOOL_FORMATS:
        raise ConfigError(
            f"tool_format: unknown tool format {tool_format!r}; known: {', '.join(TOOL_FORMATS)}"
        )
    function = ("{{content}}",) if template.efficient_eos else ("{{content}}", EOS)
    return dataclasses.replace(template, tool_format=tool_format, function=function)
