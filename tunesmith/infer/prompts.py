"""Conversations -> prompt token ids, rendered with the same template the training data used (the config's
`template`, else the tokenizer's chat template), ending with the assistant header the model answers after."""

from __future__ import annotations

from typing import Any

from tunesmith.data.formats import ASSISTANT, USER
from tunesmith.data.render import build_renderer
from tunesmith.data.tokenize import encode_pieces, encode_texts
from tunesmith.utils.errors import DataError

ROLES = ("system", USER, ASSISTANT)


class PromptBuilder:
    """Renders chat messages (`{"role", "content"}`; roles system, user, assistant) and plain text prompts."""

    def __init__(self, cfg: Any, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.renderer = build_renderer(cfg.data, tokenizer)

    def chat(self, messages: list[dict[str, str]], system: str = "") -> list[int]:
        """Ids of the conversation `messages` (the last one from the user) plus the assistant header."""
        system, turns = _split_system(messages, system)
        if not turns or turns[-1]["role"] != USER:
            raise DataError("the last message must come from the user")
        for i, message in enumerate(turns):
            if message["role"] != (USER if i % 2 == 0 else ASSISTANT):
                raise DataError(
                    f"message {i}: roles must alternate user, assistant, user, ... after the system one"
                )
        # as LLaMA-Factory's chat (encode_oneturn): earlier answers of a reasoning template lose their thoughts
        rendered = self.renderer.turns(
            [*turns, {"role": ASSISTANT, "content": ""}], system, "", one_turn=True
        )
        pieces = [p for prompt, answer in rendered[:-1] for p in (*prompt, *answer)] + list(rendered[-1][0])
        return encode_pieces(self.tokenizer, [pieces])[0]

    def text(self, prompt: str) -> list[int]:
        """Ids of a plain completion prompt (no template, no special tokens added)."""
        return encode_texts(self.tokenizer, [prompt])[0]


def _split_system(messages: list[dict[str, str]], system: str) -> tuple[str, list[dict[str, str]]]:
    """The system prompt (a leading system message wins over `system`) and the other messages, checked."""
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise DataError(f"message {i}: needs a role among {', '.join(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise DataError(f"message {i}: content must be a string")
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], list(messages[1:])
    return system, list(messages)
