"""ms-swift's own layouts where they differ from every LLaMA-Factory template: named `swift_<ms-swift name>`, so
they never clash with LLaMA-Factory's names. ms-swift ends an answer with its end token alone (the newline after it
opens the next turn, untrained: `separator`), some of its templates carry another default system, and many open
with the BOS the tokenizer's own encoding adds (`auto_bos`, its auto_add_bos).

tests/test_swift_templates.py checks each against the ids ms-swift's own code produces
(tests/facts/swift_templates.json).
"""

from __future__ import annotations

import dataclasses

from tunesmith.data.template_catalog import chatml, inst, tagged
from tunesmith.data.template_slots import BOS, EOS, SlotTemplate

_LLAMA2_SYSTEM = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of answering "
    "something not correct. If you don't know the answer to a question, please don't share false information."
)
_GEMMA_TURN = {
    "user": ("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
    "assistant": ("{{content}}<end_of_turn>",),
    "separator": ("\n",),
    "prefix": (BOS,),
    "stop_words": ("<end_of_turn>",),
    "replace_eos": True,
}


def _like(name: str, base: SlotTemplate, **changes: object) -> SlotTemplate:
    return dataclasses.replace(base, name=name, **changes)


_BY_NAME = {t.name: t for t in (*chatml.TEMPLATES, *inst.TEMPLATES, *tagged.TEMPLATES)}
_THINK = ("<think>", "</think>")

_GLM4 = SlotTemplate(  # the next turn's <|user|> ends an answer: its label, and the one closing the sequence
    "swift_glm4",
    user=("<|user|>\n{{content}}<|assistant|>\n",),
    assistant=("{{content}}",),
    system=("<|system|>\n{{content}}",),
    prefix=("[gMASK]<sop>",),
    stop_words=("<|user|>", "<|observation|>"),
    replace_eos=True,
    efficient_eos=True,
    tool_format="glm4",
    auto_bos=True,
)

TEMPLATES = (
    SlotTemplate(
        "swift_default",
        user=("### Human:\n{{content}}\n\n### Assistant:\n",),
        assistant=("{{content}}",),
        system=("{{content}}\n\n",),
        separator=("\n\n",),
        closing=(EOS,),
        default_system="You are a helpful assistant.",
        auto_bos=True,
    ),
    _like("swift_chatml", _BY_NAME["chatml"], auto_bos=True),
    _like("swift_qwen", _BY_NAME["qwen"], default_system="You are a helpful assistant."),
    _like("swift_yi_coder", _BY_NAME["qwen"], default_system="You are a helpful assistant.", auto_bos=True),
    _like("swift_phi4", _BY_NAME["phi4"], auto_bos=True),
    _like("swift_llama", _BY_NAME["llama2"], default_system=_LLAMA2_SYSTEM),
    SlotTemplate(
        "swift_gemma",
        **_GEMMA_TURN,
        system=("<start_of_turn>system\n{{content}}<end_of_turn>\n",),
    ),
    SlotTemplate(
        "swift_gemma3_text",
        **_GEMMA_TURN,
        system=("{{content}}\n\n",),
        system_in_user=True,
    ),
    SlotTemplate(
        "swift_phi3",
        user=("<|user|>\n{{content}}<|end|>\n<|assistant|>\n",),
        assistant=("{{content}}<|end|>",),
        system=("<|system|>\n{{content}}<|end|>\n",),
        separator=("\n",),
        stop_words=("<|end|>",),
        replace_eos=True,
        auto_bos=True,
    ),
    SlotTemplate(
        "swift_zephyr",
        user=("<|user|>\n{{content}}</s>\n<|assistant|>\n",),
        assistant=("{{content}}</s>",),
        system=("<|system|>\n{{content}}</s>\n",),
        separator=("\n",),
    ),
    _GLM4,
    _like("swift_chatglm4", _GLM4, prefix=()),
    _like("swift_glm4_5", _GLM4, reasoning=True, thought_words=_THINK, empty_thought="<think></think>\n"),
    _like(
        "swift_deepseek_v3_1",
        _BY_NAME["deepseek3"],
        reasoning=True,
        thought_words=_THINK,
        empty_thought="</think>",
    ),
)
