"""Tool-call text formats (named as LLaMA-Factory's `tool_format`s): the system text that lists the tools, and
the text of an assistant's function calls. Each format is a pair of functions: tools -> text, calls -> text."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tunesmith.utils.errors import DataError

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


_GLM4_TOOL_PROMPT = (
    "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，"
    "你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具{tool_text}"
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


def _mistral_tools(tools: list[dict[str, Any]]) -> str:
    return (
        f"[AVAILABLE_TOOLS] {json.dumps([_wrapped(t) for t in tools], ensure_ascii=False)}[/AVAILABLE_TOOLS]"
    )


def _glm4_tools(tools: list[dict[str, Any]]) -> str:
    text = "".join(
        f"\n\n## {tool['name']}\n\n{json.dumps(tool, indent=4, ensure_ascii=False)}\n"
        "在调用上述函数时，请使用 Json 格式表示调用的参数。"
        for tool in map(_as_function, tools)
    )
    return _GLM4_TOOL_PROMPT.format(tool_text=text)


def _phi4_mini_tools(tools: list[dict[str, Any]]) -> str:
    """Phi-4-mini's template wraps the tools' JSON as given (here: as the data reader wrote it)."""
    return f"<|tool|>{json.dumps(tools, ensure_ascii=False)}<|/tool|>"


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


def _mistral_calls(calls: list[tuple[str, str]]) -> str:
    return json.dumps([{"name": n, "arguments": json.loads(a)} for n, a in calls], ensure_ascii=False)


def _glm4_calls(calls: list[tuple[str, str]]) -> str:
    if len(calls) > 1:
        raise DataError("the glm4 tool format has no parallel function calls: one call per turn")
    name, args = calls[0]
    return f"{name}\n{args}"


TOOL_FORMATS = {
    "default": (_default_tools, _default_calls),
    "qwen": (_qwen_tools, _qwen_calls),
    "llama3": (_llama3_tools, _llama3_calls),
    "qwen3_5": (_qwen35_tools, _qwen35_calls),
    "mistral": (_mistral_tools, _mistral_calls),
    "glm4": (_glm4_tools, _glm4_calls),
    "phi4_mini": (_phi4_mini_tools, _default_calls),
}
