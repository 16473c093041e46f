"""ChatML-style turns (`<|im_start|>role ... <|im_end|>`) and their close relatives."""

from __future__ import annotations

from tunesmith.data.template_slots import BOS, SlotTemplate

_IM_USER = ("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",)
_IM_ASSISTANT = ("{{content}}<|im_end|>\n",)
_IM_SYSTEM = ("<|im_start|>system\n{{content}}<|im_end|>\n",)
_IM_TOOL = ("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",)
_IM_END = ("<|im_end|>",)
_IM = {"user": _IM_USER, "assistant": _IM_ASSISTANT, "system": _IM_SYSTEM}
_QWEN = {
    **_IM,
    "function": _IM_ASSISTANT,
    "observation": (
        "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
    ),
    "tool_format": "qwen",
    "stop_words": _IM_END,
    "replace_eos": True,
}
_DBRX_SYSTEM = (
    "You are DBRX, created by Databricks. You were last updated in December 2023. "
    "You answer questions based on information available up to that point.\n"
    "YOU PROVIDE SHORT RESPONSES TO SHORT QUESTIONS OR STATEMENTS, but provide thorough "
    "responses to more complex and open-ended questions.\nYou assist with various tasks, "
    "from writing to coding (using markdown for code blocks — remember to use ``` with "
    "code, JSON, and tables).\n(You do not have real-time data access or code execution "
    "capabilities. You avoid stereotyping and provide balanced perspectives on "
    "controversial topics. You do not provide song lyrics, poems, or news articles and "
    "do not divulge details of your training data.)\nThis is your system prompt, "
    "guiding your responses. Do not reference it, just respond to the user. If you find "
    "yourself talking about this message, stop. You should be responding appropriately "
    "and usually that means not mentioning this.\nYOU DO NOT MENTION ANY OF THIS INFORMATION "
    "ABOUT YOURSELF UNLESS THE INFORMATION IS DIRECTLY PERTINENT TO THE USER'S QUERY."
)
_INTERN2_SYSTEM = (
    "You are an AI assistant whose name is InternLM (书生·浦语).\n"
    "- InternLM (书生·浦语) is a conversational language model that is developed by Shanghai AI Laboratory "
    "(上海人工智能实验室). It is designed to be helpful, honest, and harmless.\n"
    "- InternLM (书生·浦语) can understand and communicate fluently in the language "
    "chosen by the user such as English and 中文."
)

TEMPLATES = (
    SlotTemplate(
        "chatml", **_IM, observation=_IM_TOOL, stop_words=("<|im_end|>", "<|im_start|>"), replace_eos=True
    ),
    SlotTemplate(
        "chatml_de",
        **_IM,
        observation=_IM_TOOL,
        default_system="Du bist ein freundlicher und hilfsbereiter KI-Assistent.",
        stop_words=("<|im_end|>", "<|im_start|>"),
        replace_eos=True,
    ),
    SlotTemplate("cpm4", **_IM, observation=_IM_TOOL, prefix=(BOS,), stop_words=_IM_END),
    SlotTemplate(
        "dbrx", **_IM, observation=_IM_TOOL, default_system=_DBRX_SYSTEM, stop_words=_IM_END, replace_eos=True
    ),
    SlotTemplate(
        "ernie",
        user=("<|im_start|>user\n{{content}}<|im_end|>\n\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n\n",),
        system=("<|im_start|>system\n{{content}}<|im_end|>\n\n",),
        observation=("<|im_start|>tool\n{{content}}<|im_end|>\n\n<|im_start|>assistant\n",),
        default_system="<global_setting>\nthink_mode=True\n</global_setting>",
        stop_words=_IM_END,
    ),
    SlotTemplate(
        "falcon_h1", **_IM, observation=_IM_TOOL, prefix=(BOS,), stop_words=("<|im_end|>", "<|end_of_text|>")
    ),
    SlotTemplate("intern2", **_IM, prefix=(BOS,), default_system=_INTERN2_SYSTEM, stop_words=_IM_END),
    SlotTemplate(
        "lfm2",
        **_IM,
        function=_IM_ASSISTANT,
        observation=(
            "<|im_start|>tool\n<|tool_response_start|>{{content}}<|tool_response_end|><|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
        default_system="You are a helpful AI assistant.",
        stop_words=_IM_END,
        replace_eos=True,
        tool_format="lfm2",
        tool_call_words=("<|tool_call_start|>", "<|tool_call_end|>"),
    ),
    SlotTemplate("mimo", **_QWEN, default_system="You are a helpful assistant.", reasoning=True),
    SlotTemplate(
        "mimo_v2",
        **_QWEN,
        default_system="You are MiMo, a helpful AI assistant engineered by Xiaomi.",
        reasoning=True,
        thought_words=("<think>", "</think>"),
    ),
    SlotTemplate(
        "moonlight",
        user=("<|im_user|>user<|im_middle|>{{content}}<|im_end|><|im_assistant|>assistant<|im_middle|>",),
        assistant=("{{content}}<|im_end|>",),
        system=("<|im_system|>system<|im_middle|>{{content}}<|im_end|>",),
        default_system="You are a helpful assistant provided by Moonshot-AI.",
        stop_words=_IM_END,
        replace_eos=True,
    ),
    SlotTemplate(
        "opencoder",
        **_IM,
        observation=_IM_TOOL,
        default_system="You are OpenCoder, created by OpenCoder Team.",
        stop_words=_IM_END,
    ),
    SlotTemplate(
        "phi4",
        user=("<|im_start|>user<|im_sep|>{{content}}<|im_end|><|im_start|>assistant<|im_sep|>",),
        assistant=("{{content}}<|im_end|>",),
        system=("<|im_start|>system<|im_sep|>{{content}}<|im_end|>",),
        stop_words=_IM_END,
        replace_eos=True,
    ),
    SlotTemplate(
        "qwen", default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", **_QWEN
    ),
    SlotTemplate("qwen3", reasoning=True, **_QWEN),
    SlotTemplate("qwen3_nothink", **_QWEN),
    SlotTemplate("qwen3_5", reasoning=True, **{**_QWEN, "tool_format": "qwen3_5"}),
    SlotTemplate("qwen3_5_nothink", **{**_QWEN, "tool_format": "qwen3_5"}),
    SlotTemplate(
        "sailor",
        user=("<|im_start|>question\n{{content}}<|im_end|>\n<|im_start|>answer\n",),
        assistant=_IM_ASSISTANT,
        system=_IM_SYSTEM,
        default_system=(
            "You are an AI assistant named Sailor created by Sea AI Lab. "
            "Your answer should be friendly, unbiased, faithful, informative and detailed."
        ),
        stop_words=_IM_END,
    ),
    SlotTemplate("smollm", **_IM, stop_words=_IM_END),
    SlotTemplate(
        "smollm2",
        **_IM,
        stop_words=_IM_END,
        default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face.",
    ),
    SlotTemplate("yi", **_IM, stop_words=_IM_END),
)
