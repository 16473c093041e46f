"""What a built-in chat template is made of: slots (strings with a `{{content}}` placeholder, and `Token`s that
stand for one token id) per message kind, plus the few switches of LLaMA-Factory's `Template` classes.

Each string slot is tokenized on its own, as LLaMA-Factory does, so the same data gives the same ids.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Token:
    """A slot that is one token: `bos_token`, `eos_token` (template-aware) or a literal token string."""

    name: str


Slots = tuple[str | Token, ...]
EOS, BOS = Token("eos_token"), Token("bos_token")
CONTENT: Slots = ("{{content}}",)  # the content alone
THOUGHT_WORDS = ("<think>\n", "\n</think>\n\n")
TOOL_CALL_WORDS = ("<tool_call>", "</tool_call>")


@dataclasses.dataclass(frozen=True)
class SlotTemplate:
    """How each message kind is laid out; `None` slots fall back as in LLaMA-Factory (system -> bare content,
    observation -> user, function -> assistant)."""

    name: str
    user: Slots = CONTENT
    assistant: Slots = ("{{content}}", EOS)
    system: Slots | None = None
    observation: Slots | None = None
    function: Slots | None = None
    prefix: Slots = ()
    separator: Slots = ()  # opens every prompt after the first, untrained (ms-swift's chat_sep after its end token)
    closing: Slots = ()  # ends the last answer only, trained (ms-swift's suffix where earlier answers end without it)
    default_system: str = ""
    stop_words: tuple[str, ...] = ()
    replace_eos: bool = False  # the template's end-of-turn token (stop_words[0]) acts as EOS
    tool_format: str = "default"
    reasoning: bool = False  # add/strip thought blocks by enable_thinking (qwen3 family)
    thought_words: tuple[str, str] = THOUGHT_WORDS  # how a thought opens and closes
    empty_thought: str | None = None  # the empty thought, when not open + close (GLM-4.7: the close alone)
    tool_call_words: tuple[str, str] = TOOL_CALL_WORDS  # wrap the calls inside a function turn's content
    system_in_user: bool = False  # the system text opens the first user turn instead of its own slot (llama2)
    # one EOS ends the whole sequence (not each answer); it is the label of each later turn's first prompt token
    efficient_eos: bool = False
    auto_bos: bool = False  # the sequence opens with what the tokenizer's own encoding puts first (ms-swift)

    @property
    def system_slots(self) -> Slots:
        return self.system if self.system is not None else CONTENT

    @property
    def observation_slots(self) -> Slots:
        return self.observation if self.observation is not None else self.user

    @property
    def function_slots(self) -> Slots:
        return self.function if self.function is not None else self.assistant

    @property
    def empty_thought_text(self) -> str:
        return self.empty_thought if self.empty_thought is not None else "".join(self.thought_words)
