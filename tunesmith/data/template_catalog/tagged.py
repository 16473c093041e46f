"""Layouts with their own role tags or tokens: GLM, gpt-oss, Granite, Phi, DeepSeek-V3, Seed, MiniMax ..."""

from __future__ import annotations

from tunesmith.data.template_slots import BOS, CONTENT, EOS, SlotTemplate, Token

_GLM4 = {
    "user": ("<|user|>\n{{content}}<|assistant|>",),
    "assistant": ("\n{{content}}",),
    "system": ("<|system|>\n{{content}}",),
    "function": CONTENT,
    "observation": ("<|observation|>\n{{content}}<|assistant|>",),
    "prefix": ("[gMASK]<sop>",),
    "stop_words": ("<|user|>", "<|observation|>"),
    "tool_format": "glm4",
    "efficient_eos": True,
}
_SEED_USER = (BOS, "user\n{{content}}", EOS, BOS, "assistant\n")
_SEED_SYSTEM = (BOS, "system\n{{content}}", EOS)
_GPT_OSS = {
    "user": ("<|start|>user<|message|>{{content}}<|end|><|start|>assistant",),
    "system": ("<|start|>system<|message|>{{content}}<|end|>",),
    "default_system": "You are ChatGPT, a large language model trained by OpenAI.",
    "thought_words": (
        "<|channel|>analysis<|message|>",
        "<|end|><|start|>assistant<|channel|>final<|message|>",
    ),
    "efficient_eos": True,
    "reasoning": True,
}

TEMPLATES = (
    SlotTemplate(
        "bailing",
        user=("<role>HUMAN</role>{{content}}<role>ASSISTANT</role>",),
        assistant=CONTENT,
        system=("<role>SYSTEM</role>{{content}}",),
        observation=("<role>OBSERVATION</role>{{content}}<role>ASSISTANT</role>",),
        stop_words=("<|endoftext|>",),
        efficient_eos=True,
    ),
    SlotTemplate(
        "bailing_v2",
        user=("<role>HUMAN</role>{{content}}<|role_end|><role>ASSISTANT</role>",),
        assistant=("{{content}}<|role_end|>",),
        system=("<role>SYSTEM</role>{{content}}<|role_end|>",),
        observation=(
            "<role>OBSERVATION</role>\n<tool_response>\n{{content}}\n</tool_response><|role_end|>"
            "<role>ASSISTANT</role>",
        ),
        stop_words=("<|endoftext|>",),
        tool_format="ling",
        efficient_eos=True,
    ),
    SlotTemplate(
        "chatglm3",
        user=(Token("<|user|>"), "\n", "{{content}}", Token("<|assistant|>")),
        assistant=("\n", "{{content}}"),
        system=(Token("<|system|>"), "\n", "{{content}}"),
        function=CONTENT,
        observation=(Token("<|observation|>"), "\n", "{{content}}", Token("<|assistant|>")),
        prefix=(Token("[gMASK]"), Token("sop")),
        stop_words=("<|user|>", "<|observation|>"),
        tool_format="glm4",
        efficient_eos=True,
    ),
    SlotTemplate(
        "cohere",
        user=(
            "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|>"
            "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
        ),
        system=("<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|>",),
        prefix=(BOS,),
    ),
    SlotTemplate("deepseek3", user=("<｜User｜>{{content}}<｜Assistant｜>",), prefix=(BOS,)),
    SlotTemplate("deepseekr1", user=("<｜User｜>{{content}}<｜Assistant｜>",), prefix=(BOS,), reasoning=True),
    SlotTemplate(
        "ernie_nothink",
        user=("User: {{content}}\nAssistant: ",),
        assistant=("{{content}}<|end_of_sentence|>",),
        system=("{{content}}\n",),
        prefix=("<|begin_of_sentence|>",),
        stop_words=("<|end_of_sentence|>",),
    ),
    SlotTemplate(
        "exaone",
        user=("[|user|]{{content}}\n[|assistant|]",),
        assistant=("{{content}}", EOS, "\n"),
        system=("[|system|]{{content}}[|endofturn|]\n",),
    ),
    SlotTemplate("glm4", **_GLM4),
    SlotTemplate("glm4_moe", **{**_GLM4, "tool_format": "glm4_moe"}, reasoning=True),
    SlotTemplate(
        "glm4_7",
        **{**_GLM4, "tool_format": "glm4_moe"},
        reasoning=True,
        thought_words=("<think>", "</think>"),
        empty_thought="</think>",
    ),
    SlotTemplate("glmz1", **_GLM4, reasoning=True),
    SlotTemplate(
        "aeva",
        **{**_GLM4, "tool_format": "glm4_moe"},
        default_system=(
            "You are an AI assistant named Aeva created by Zongzhi Lou. "
            "Your answer should be friendly, unbiased, faithful, informative and detailed."
        ),
        reasoning=True,
        thought_words=("<think>", "</think>"),
        empty_thought="</think>",
    ),
    SlotTemplate("gpt_oss", assistant=CONTENT, **_GPT_OSS),
    SlotTemplate(
        "gpt", assistant=("{{content}}<|end|>",), **_GPT_OSS
    ),  # MindSpeed-LLM's: answers end with <|end|>
    SlotTemplate(
        "granite3",
        user=(
            "<|start_of_role|>user<|end_of_role|>{{content}}<|end_of_text|>\n"
            "<|start_of_role|>assistant<|end_of_role|>",
        ),
        assistant=("{{content}}<|end_of_text|>\n",),
        system=("<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n",),
    ),
    SlotTemplate(
        "granite4",
        user=(
            "<|start_of_role|>user<|end_of_role|>{{content}}<|end_of_text|>\n"
            "<|start_of_role|>assistant<|end_of_role|>",
        ),
        assistant=("{{content}}<|end_of_text|>\n",),
        system=("<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n",),
        function=("{{content}}<|end_of_text|>\n",),
        observation=(
            "<|start_of_role|>tool<|end_of_role|>{{content}}<|end_of_text|>\n<|start_of_role|>assistant\n",
        ),
        stop_words=("<|end_of_text|>",),
        default_system="You are Granite, developed by IBM. You are a helpful AI assistant.",
    ),
    SlotTemplate(
        "hunyuan",
        user=("{{content}}<|extra_0|>",),
        assistant=("{{content}}<|eos|>",),
        system=("{{content}}<|extra_4|>",),
        prefix=("<|startoftext|>",),
        stop_words=("<|eos|>",),
    ),
    SlotTemplate(
        "hunyuan_small",
        user=("<｜hy_User｜>{{content}}<｜hy_place▁holder▁no▁8｜>",),
        assistant=("{{content}}<｜hy_place▁holder▁no▁2｜>",),
        system=("{{content}}<｜hy_place▁holder▁no▁3｜>",),
        prefix=("<｜hy_begin▁of▁sentence｜>",),
        stop_words=("<｜hy_place▁holder▁no▁2｜>",),
    ),
    SlotTemplate(
        "hy3",
        user=("<｜hy_User｜>{{content}}<｜hy_Assistant｜>",),
        assistant=("{{content}}<｜hy_eos｜>",),
        prefix=(BOS,),
        stop_words=("<｜hy_eos｜>",),
        replace_eos=True,
        reasoning=True,
        thought_words=("<think>", "</think>"),
    ),
    SlotTemplate(
        "minimax1",
        user=(
            "<beginning_of_sentence>user name=user\n{{content}}<end_of_sentence>\n"
            "<beginning_of_sentence>ai name=assistant\n",
        ),
        assistant=("{{content}}<end_of_sentence>\n",),
        system=("<beginning_of_sentence>system ai_setting=assistant\n{{content}}<end_of_sentence>\n",),
        function=("{{content}}<end_of_sentence>\n",),
        observation=(
            "<beginning_of_sentence>tool name=tools\n{{content}}<end_of_sentence>\n"
            "<beginning_of_sentence>ai name=assistant\n",
        ),
        default_system="You are a helpful assistant.",
        stop_words=("<end_of_sentence>",),
        tool_format="minimax1",
    ),
    SlotTemplate(
        "minimax2",
        user=("]~b]user\n{{content}}[e~[\n]~b]ai\n",),
        assistant=("{{content}}[e~[\n",),
        system=("]~!b[]~b]system\n{{content}}[e~[\n",),
        function=("{{content}}[e~[\n",),
        observation=("]~b]tool\n<response>{{content}}</response>[e~[\n]~b]ai\n",),
        default_system="You are a helpful assistant. Your name is MiniMax-M2.1 and is built by MiniMax.",
        stop_words=("[e~[",),
        tool_format="minimax2",
        reasoning=True,
    ),
    SlotTemplate("olmo", user=("<|user|>\n{{content}}<|assistant|>\n",), prefix=(EOS,)),
    SlotTemplate(
        "openchat-3.6",
        user=(
            "<|start_header_id|>GPT4 Correct User<|end_header_id|>\n\n{{content}}<|eot_id|>"
            "<|start_header_id|>GPT4 Correct Assistant<|end_header_id|>\n\n",
        ),
        prefix=(BOS,),
        stop_words=("<|eot_id|>",),
    ),
    SlotTemplate(
        "phi",
        user=("<|user|>\n{{content}}<|end|>\n<|assistant|>\n",),
        assistant=("{{content}}<|end|>\n",),
        system=("<|system|>\n{{content}}<|end|>\n",),
        stop_words=("<|end|>",),
        replace_eos=True,
    ),
    SlotTemplate(  # LLaMA-Factory's prefix here is a set holding "<|endoftext|>", which its encoder skips
        "phi_small",
        user=("<|user|>\n{{content}}<|end|>\n<|assistant|>\n",),
        assistant=("{{content}}<|end|>\n",),
        system=("<|system|>\n{{content}}<|end|>\n",),
        stop_words=("<|end|>",),
        replace_eos=True,
    ),
    SlotTemplate(
        "phi4_mini",
        user=("<|user|>{{content}}<|end|><|assistant|>",),
        assistant=("{{content}}<|end|>",),
        system=("<|system|>{{content}}<|end|>",),
        stop_words=("<|end|>",),
        replace_eos=True,
        tool_format="phi4_mini",
    ),
    SlotTemplate(
        "seed_coder",
        user=_SEED_USER,
        system=_SEED_SYSTEM,
        default_system=(
            "You are an AI programming assistant, utilizing the Seed-Coder model, developed by ByteDance Seed, "
            "and you only answer questions related to computer science. For politically sensitive questions, "
            "security and privacy issues, and other non-computer science questions, you will refuse to answer.\n\n"
        ),
    ),
    SlotTemplate(
        "seed_oss",
        user=_SEED_USER,
        system=_SEED_SYSTEM,
        function=(BOS, "\n{{content}}", EOS),
        tool_format="seed_oss",
        reasoning=True,
        thought_words=("<seed:think>", "</seed:think>"),
    ),
    SlotTemplate(
        "starchat",
        user=("<|user|>\n{{content}}<|end|>\n<|assistant|>",),
        assistant=("{{content}}<|end|>\n",),
        system=("<|system|>\n{{content}}<|end|>\n",),
        stop_words=("<|end|>",),
    ),
    SlotTemplate(
        "telechat2",
        user=("<_user>{{content}}<_bot>",),
        system=("<_system>{{content}}",),
        default_system=(
            "你是中国电信星辰语义大模型，英文名是TeleChat，你是由中电信人工智能科技有限公司和中国电信人工智能研究院"
            "（TeleAI）研发的人工智能助手。"
        ),
    ),
    SlotTemplate(
        "youtu",
        user=("<|User|>{{content}}<|Assistant|>",),
        assistant=("{{content}}<|end_of_text|>",),
        system=CONTENT,
        function=CONTENT,
        observation=("<tool_response>\n{{content}}\n</tool_response><|Assistant|>",),
        prefix=(BOS,),
        stop_words=("<|end_of_text|>",),
        replace_eos=True,
        reasoning=True,
    ),
    SlotTemplate(
        "yuan", user=("{{content}}", Token("<sep>")), assistant=("{{content}}<eod>\n",), stop_words=("<eod>",)
    ),
    SlotTemplate(
        "zephyr",
        user=("<|user|>\n{{content}}", EOS, "<|assistant|>\n"),
        system=("<|system|>\n{{content}}", EOS),
        default_system="You are Zephyr, a helpful assistant.",
    ),
)
