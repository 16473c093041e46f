"""Built-in chat templates (named and laid out as LLaMA-Factory's) and the tool-call text formats they use.

A template is a set of slots: strings with a `{{content}}` placeholder, and `Token`s that stand for one token id
(`bos_token`, `eos_token`, or a literal special token). Each string slot is tokenized on its own, as
LLaMA-Factory does, so the same data gives the same ids.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from tunesmith.utils.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Token:
    """A slot that is one token: `bos_token`, `eos_token` (template-aware) or a literal token string."""

    name: str


Slots = tuple[str | Token, ...]
EOS, BOS = Token("eos_token"), Token("bos_token")
THOUGHT_WORDS = ("<think>\n", "\n</think>\n\n")
TOOL_CALL_WORDS = ("<tool_call>", "</tool_call>")


@dataclasses.dataclass(frozen=True)
class SlotTemplate:
    """How each message kind is laid out; `None` slots fall back as in LLaMA-Factory (system -> bare content,
    observation -> user, function -> assistant)."""

    name: str
    user: Slots = ("{{content}}",)
    assistant: Slots = ("{{content}}", EOS)
    system: Slots | None = None
    observation: Slots | None = None
    function: Slots | None = None
    prefix: Slots = ()
    default_system: str = ""
    stop_words: tuple[str, ...] = ()
    replace_eos: bool = False  # the template's end-of-turn token (stop_words[0]) acts as EOS
    tool_format: str = "default"
    reasoning: bool = False  # add/strip <think> blocks by enable_thinking (qwen3 family)
    system_in_user: bool = False  # the system text opens the first user turn instead of its own slot (llama2)

    @property
    def system_slots(self) -> Slots:
        return self.system if self.system is not None else ("{{content}}",)

    @property
    def observation_slots(self) -> Slots:
        return self.observation if self.observation is not None else self.user

    @property
    def function_slots(self) -> Slots:
        return self.function if self.function is not None else self.assistant


_IM_USER = ("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",)
_IM_ASSISTANT = ("{{content}}<|im_end|>\n",)
_IM_SYSTEM = ("<|im_start|>system\n{{content}}<|im_end|>\n",)
_QWEN_OBSERVATION = (
    "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
)
_QWEN = {
    "user": _IM_USER,
    "assistant": _IM_ASSISTANT,
    "system": _IM_SYSTEM,
    "function": _IM_ASSISTANT,
    "observation": _QWEN_OBSERVATION,
    "tool_format": "qwen",
    "stop_words": ("<|im_end|>",),
    "replace_eos": True,
}
_LLAMA3_ASSISTANT_HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"

BUILTIN_TEMPLATES: dict[str, SlotTemplate] = {
    t.name: t
    for t in (
        SlotTemplate("empty", assistant=("{{content}}",)),
        SlotTemplate(
            "default",
            user=("Human: {{content}}", EOS, "\nAssistant:"),
            assistant=("{{content}}", EOS, "\n"),
            system=("System: {{content}}", EOS, "\n"),
        ),
        SlotTemplate(
            "alpaca",
            user=("### Instruction:\n{{content}}\n\n### Response:\n",),
            assistant=("{{content}}", EOS, "\n\n"),
            default_system=(
                "Below is an instruction that describes a task. "
                "Write a response that appropriately completes the request.\n\n"
            ),
        ),
        SlotTemplate(
            "chatml",
            user=_IM_USER,
            assistant=_IM_ASSISTANT,
            system=_IM_SYSTEM,
            observation=("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
            stop_words=("<|im_end|>", "<|im_start|>"),
            replace_eos=True,
        ),
        SlotTemplate(
            "qwen",
            default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
            **_QWEN,
        ),
        SlotTemplate("qwen3", reasoning=True, **_QWEN),
        SlotTemplate("qwen3_nothink", **_QWEN),
        SlotTemplate("qwen3_5", reasoning=True, **{**_QWEN, "tool_format": "qwen3_5"}),
        SlotTemplate("qwen3_5_nothink", **{**_QWEN, "tool_format": "qwen3_5"}),
        SlotTemplate(
            "llama2",
            user=(BOS, "[INST] {{content}} [/INST]"),
            system=("<<SYS>>\n{{content}}\n<</SYS>>\n\n",),
            system_in_user=True,
        ),
        SlotTemplate(
            "llama3",
            user=(
                "<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>"
                + _LLAMA3_ASSISTANT_HEADER,
            ),
            assistant=("{{content}}<|eot_id|>",),
            system=("<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>",),
            function=("{{content}}<|eot_id|>",),
            observation=(
                "<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|>"
                + _LLAMA3_ASSISTANT_HEADER,
            ),
            prefix=(BOS,),
            stop_words=("<|eot_id|>", "<|eom_id|>"),
            replace_eos=True,
            tool_format="llama3",
        ),
    )
}
# Other names users of LLaMA-Factory / ms-swift write for the same layouts.
TEMPLATE_ALIASES = {
    "qwen2": "qwen",
    "qwen2_5": "qwen",
    "qwen1_5": "qwen",
    "llama3_1": "llama3",
    "llama3_2": "llama3",
}


def get_template(name: str) -> SlotTemplate:
    """The built-in template `name` (or an alias of one); ConfigError listing the known names otherwise."""
    key = TEMPLATE_ALIASES.get(name, name)
    if key not in BUILTIN_TEMPLATES:
        known = ", ".join(sorted([*BUILTIN_TEMPLATES, *TEMPLATE_ALIASES]))
        raise ConfigError(
            f"template: unknown template {name!r}; built-in templates: {known} (or leave it unset "
            "to use the tokenizer's own chat template)"
        )
    return BUILTIN_TEMPLATES[key]


def with_tool_format(template: SlotTemplate, tool_format: str | None) -> SlotTemplate:
    """`tool_format` overrides the template's: function calls then end with EOS, as in LLaMA-Factory."""
    if tool_format is None:
        return template
    if tool_format not in TOOL_FORMATS:
        raise ConfigError(
            f"tool_format: unknown tool format {tool_format!r}; known: {', '.join(TOOL_FORMATS)}"
        )
    return dataclasses.replace(template, tool_format=tool_format, function=("{{content}}", EOS))


# ---- tool formats: the system text that lists the tools, and the text of an assistant's function calls ----

_DEFAULT_TOOL_PROMPT = (
    "You have access to the following tools:\n{tool_text}"
    "Use the following format if using a tool:\n```\n"
    "Action: tool name (one of [{tool_names}])\n"
    "Action Input: the input to the tool, in a JSON format representing the kwargs "
    '(e.g. ```{{"input": "hello world", "num_beams": 5}}```)\n```\n'
)
_QWEN_TOOL_PROMPT = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}"
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}'
    "\n</tool_call>"
)
_LLAMA3_TOOL_PROMPT = (
    "Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n"
    "You have access to the following functions. To call a function, please respond with JSON for a function call. "
    'Respond in the format {{"name": function name, "parameters": dictionary of argument name and its value}}. '
    "Do not use variables.\n\n{tool_text}"
)


_QWEN35_TOOL_PROMPT = (
    "\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>{tool_text}"
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n"
    "- Function calls MUST follow the specified format: "
    "an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language "
    "BEFORE the function call, but NOT after\n"
    "- If there is no function call available, answer the question like normal with your current knowledge "
    "and do not tell the user about function calls\n</IMPORTANT>"
)


def _as_function(tool: dict[str, Any]) -> dict[str, Any]:
    return tool.get("function", {}) if tool.get("type") == "function" else tool


def _wrapped(tool: dict[str, Any]) -> dict[str, Any]:
    return tool if tool.get("type") == "function" else {"type": "function", "function": tool}


def _default_tools(tools: list[dict[str, Any]]) -> str:
    text, names = "", []
    for tool in map(_as_function, tools):
        params = tool.get("parameters", {})
        args = ""
        for name, param in params.get("properties", {}).items():
            required = ", required" if name in params.get("required", []) else ""
            enum = ", should be one of [{}]".format(", ".join(param["enum"])) if param.get("enum") else ""
            items = (
                ", where each item should be {}".format(param["items"].get("type", ""))
                if param.get("items")
                else ""
            )
            args += f"  - {name} ({param.get('type', '')}{required}): {param.get('description', '')}{enum}{items}\n"
        text += f"> Tool Name: {tool['name']}\nTool Description: {tool.get('description', '')}\nTool Args:\n{args}\n"
        names.append(tool["name"])
    return _DEFAULT_TOOL_PROMPT.format(tool_text=text, tool_names=", ".join(names))


def _qwen_tools(tools: list[dict[str, Any]]) -> str:
    text = "".join("\n" + json.dumps(_wrapped(t), ensure_ascii=False) for t in tools)
    return _QWEN_TOOL_PROMPT.format(tool_text=text)


def _llama3_tools(tools: list[dict[str, Any]]) -> str:
    text = "".join(json.dumps(_wrapped(t), indent=4, ensure_ascii=False) + "\n\n" for t in tools)
    return _LLAMA3_TOOL_PROMPT.format(date=datetime.now().strftime("%d %b %Y"), tool_text=text)


def _qwen35_tools(tools: list[dict[str, Any]]) -> str:
    text = "".join("\n" + json.dumps(_as_function(t), ensure_ascii=False) for t in tools)
    return _QWEN35_TOOL_PROMPT.format(tool_text=text)


def _default_calls(calls: list[tuple[str, str]]) -> str:
    return "\n".join(f"Action: {name}\nAction Input: {args}" for name, args in calls)


def _qwen_calls(calls: list[tuple[str, str]]) -> str:
    texts = [json.dumps({"name": n, "arguments": json.loads(a)}, ensure_ascii=False) for n, a in calls]
    return "\n".join(f"<tool_call>\n{t}\n</tool_call>" for t in texts)


def _qwen35_calls(calls: list[tuple[str, str]]) -> str:
    """Qwen 3.5's XML calls: one <parameter=name> block per argument, non-strings as JSON."""
    texts = []
    for name, args in calls:
        params = "".join(
            f"\n<parameter={key}>\n{value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}"
            "\n</parameter>"
            for key, value in json.loads(args).items()
        )
        texts.append(f"<tool_call>\n<function={name}>{params}\n</function>\n</tool_call>")
    return "\n".join(texts)


def _llama3_calls(calls: list[tuple[str, str]]) -> str:
    objs = [{"name": n, "parameters": json.loads(a)} for n, a in calls]
    return json.dumps(objs[0] if len(objs) == 1 else objs, ensure_ascii=False)


TOOL_FORMATS = {
    "default": (_default_tools, _default_calls),
    "qwen": (_qwen_tools, _qwen_calls),
    "llama3": (_llama3_tools, _llama3_calls),
    "qwen3_5": (_qwen35_tools, _qwen35_calls),
}
