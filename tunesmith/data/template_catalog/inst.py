"""`[INST]` and header layouts: Llama 2/3, Mistral, Gemma, and the plain-text prompts (alpaca, vicuna ...)."""

from __future__ import annotations

from tunesmith.data.template_slots import BOS, CONTENT, EOS, SlotTemplate

_LLAMA3_ASSISTANT_HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"
_GEMMA = {
    "user": ("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
    "assistant": ("{{content}}<end_of_turn>\n",),
    "system": ("{{content}}\n\n",),
    "observation": ("<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
    "prefix": (BOS,),
    "system_in_user": True,
}
_MISTRAL = {  # tokenizer v3 (mistral); ministral (tekken) drops the spaces
    "user": ("[INST] {{content}}[/INST]",),
    "assistant": (" {{content}}", EOS),
    "system": ("{{content}}\n\n",),
    "function": ("[TOOL_CALLS] {{content}}", EOS),
    "observation": ('[TOOL_RESULTS] {"content": {{content}}}[/TOOL_RESULTS]',),
    "prefix": (BOS,),
    "tool_format": "mistral",
    "system_in_user": True,
}
_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

TEMPLATES = (
    SlotTemplate("empty", assistant=CONTENT),
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
        "breeze", user=("[INST] {{content}} [/INST] ",), assistant=CONTENT, prefix=(BOS,), efficient_eos=True
    ),
    SlotTemplate(
        "deepseek", user=("User: {{content}}\n\nAssistant:",), system=("{{content}}\n\n",), prefix=(BOS,)
    ),
    SlotTemplate(
        "deepseekcoder",
        user=("### Instruction:\n{{content}}\n### Response:",),
        assistant=("\n{{content}}\n<|EOT|>\n",),
        prefix=(BOS,),
        default_system=(
            "You are an AI programming assistant, utilizing the DeepSeek Coder model, "
            "developed by DeepSeek Company, and you only answer questions related to computer science. "
            "For politically sensitive questions, security and privacy issues, "
            "and other non-computer science questions, you will refuse to answer.\n"
        ),
    ),
    SlotTemplate(
        "falcon", user=("User: {{content}}\nFalcon:",), assistant=("{{content}}\n",), efficient_eos=True
    ),
    SlotTemplate("fewshot", assistant=("{{content}}\n\n",), efficient_eos=True),
    SlotTemplate(
        "index",
        user=("reserved_0{{content}}reserved_1",),
        assistant=CONTENT,
        system=("<unk>{{content}}",),
        efficient_eos=True,
    ),
    SlotTemplate(
        "openchat", user=("GPT4 Correct User: {{content}}", EOS, "GPT4 Correct Assistant:"), prefix=(BOS,)
    ),
    SlotTemplate(
        "solar",
        user=("### User:\n{{content}}\n\n### Assistant:\n",),
        assistant=CONTENT,
        system=("### System:\n{{content}}\n\n",),
        efficient_eos=True,
    ),
    SlotTemplate("vicuna", user=("USER: {{content}} ASSISTANT:",), default_system=_VICUNA_SYSTEM),
    SlotTemplate(
        "xuanyuan",
        user=("Human: {{content}} Assistant:",),
        default_system=(
            "以下是用户和人工智能助手之间的对话。用户以Human开头，人工智能助手以Assistant开头，"
            "会对人类提出的问题给出有帮助、高质量、详细和礼貌的回答，并且总是拒绝参与与不道德、"
            "不安全、有争议、政治敏感等相关的话题、问题和指示。\n"
        ),
    ),
    SlotTemplate(
        "llama2",
        user=(BOS, "[INST] {{content}} [/INST]"),
        system=("<<SYS>>\n{{content}}\n<</SYS>>\n\n",),
        system_in_user=True,
    ),
    SlotTemplate(
        "llama2_zh",
        user=(BOS, "[INST] {{content}} [/INST]"),
        system=("<<SYS>>\n{{content}}\n<</SYS>>\n\n",),
        default_system="You are a helpful assistant. 你是一个乐于助人的助手。",
        system_in_user=True,
    ),
    SlotTemplate(
        "llama3",
        user=(
            "<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>" + _LLAMA3_ASSISTANT_HEADER,
        ),
        assistant=("{{content}}<|eot_id|>",),
        system=("<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>",),
        function=("{{content}}<|eot_id|>",),
        observation=(
            "<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|>" + _LLAMA3_ASSISTANT_HEADER,
        ),
        prefix=(BOS,),
        stop_words=("<|eot_id|>", "<|eom_id|>"),
        replace_eos=True,
        tool_format="llama3",
    ),
    SlotTemplate("mistral", **_MISTRAL),
    SlotTemplate(
        "ministral",
        **{
            **_MISTRAL,
            "user": ("[INST]{{content}}[/INST]",),
            "assistant": ("{{content}}", EOS),
            "function": ("[TOOL_CALLS]{{content}}", EOS),
            "observation": ('[TOOL_RESULTS]{"content": {{content}}}[/TOOL_RESULTS]',),
        },
    ),
    SlotTemplate("gemma", **_GEMMA, stop_words=("<end_of_turn>",), replace_eos=True),
    SlotTemplate("gemma2", **_GEMMA, stop_words=("<eos>", "<end_of_turn>"), efficient_eos=True),
)
