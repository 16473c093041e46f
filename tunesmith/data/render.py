"""Render a conversation into (prompt, answer) piece lists per turn, with a built-in or the tokenizer's template.

A piece is a string (tokenized on its own) or an int (one token id). Turn t's prompt holds everything between
answer t-1 and answer t (system, tools, user or tool-result turn, the assistant header); its answer is the span
trained on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any, Protocol

from transformers import PreTrainedTokenizerBase

from tunesmith.data.formats import ASSISTANT, FUNCTION, OBSERVATION, USER
from tunesmith.data.template_slots import THOUGHT_WORDS, SlotTemplate, Token
from tunesmith.data.templates import get_template, with_tool_format
from tunesmith.data.tool_formats import TOOL_FORMATS
from tunesmith.utils.errors import ConfigError, DataError

logger = logging.getLogger("tunesmith")
Piece = str | int
Turn = tuple[list[Piece], list[Piece]]


def _between(words: tuple[str, str]) -> re.Pattern[str]:
    return re.compile(f"{re.escape(words[0])}(.*?){re.escape(words[1])}", re.DOTALL)


class Renderer(Protocol):
    """Turns a conversation into per-turn (prompt pieces, answer pieces)."""

    fingerprint: str
    closing_eos: int | None  # the EOS that ends the whole sequence (efficient_eos templates), else None

    def turns(
        self, messages: list[dict[str, str]], system: str, tools: str, one_turn: bool = False
    ) -> list[Turn]: ...


def build_renderer(data: Any, tokenizer: PreTrainedTokenizerBase) -> Renderer:
    """`data.template` names a built-in; unset, the tokenizer's own chat template is used (or `empty`)."""
    if data.template:
        template = with_tool_format(get_template(data.template), data.tool_format)
        if template.efficient_eos and data.train_on_prompt:
            raise ConfigError(
                f"train_on_prompt: template {template.name!r} ends the sequence with one EOS instead of one per "
                "answer (LLaMA-Factory's efficient_eos), which cannot train on prompts; unset train_on_prompt"
            )
        return SlotRenderer(template, tokenizer, data.default_system, data.enable_thinking, data.mask_history)
    if isinstance(getattr(tokenizer, "chat_template", None), str):
        if data.tool_format is not None:
            raise ConfigError(
                "tool_format: needs a built-in template; the tokenizer's chat template lays out tools"
            )
        return JinjaRenderer(tokenizer, data.default_system, data.enable_thinking)
    logger.warning("template is not set and the tokenizer has no chat template: using the 'empty' template")
    return SlotRenderer(
        get_template("empty"), tokenizer, data.default_system, data.enable_thinking, data.mask_history
    )


def strip_thought(content: str, words: tuple[str, str] = THOUGHT_WORDS) -> str:
    """Remove thought blocks (`<think>...</think>` by default) and the newlines after them."""
    return _between(words).sub("", content).lstrip("\n")


def _has_thought(content: str, words: tuple[str, str]) -> bool:
    return words[0].strip() in content or words[1].strip() in content


def _with_thinking(
    messages: list[dict[str, str]],
    enable_thinking: bool | None,
    keep_last_only: bool,
    words: tuple[str, str] = THOUGHT_WORDS,
) -> list[dict]:
    """enable_thinking False strips every thought; mask_history strips thoughts of all but the last answer."""
    out = [dict(m) for m in messages]
    last = len(out) - 1
    for i in range(1, len(out), 2):
        if enable_thinking is False or (keep_last_only and i != last):
            out[i]["content"] = strip_thought(out[i]["content"], words)
    return out


class SlotRenderer:
    """A built-in template laid out slot by slot, as LLaMA-Factory's `Template` does."""

    def __init__(
        self,
        template: SlotTemplate,
        tokenizer: PreTrainedTokenizerBase,
        default_system: str | None,
        enable_thinking: bool | None,
        mask_history: bool,
    ) -> None:
        self.template = template
        self.default_system = template.default_system if default_system is None else default_system
        self.enable_thinking, self.mask_history = enable_thinking, mask_history
        self.tool_texts = TOOL_FORMATS.get(template.tool_format)
        self.ids = _special_ids(template, tokenizer)
        self.closing_eos = self.ids["eos_token"] if template.efficient_eos else None
        self.opening = _added_prefix(tokenizer) if template.auto_bos else []
        self._thought, self._tool_call = _between(template.thought_words), _between(template.tool_call_words)
        self.fingerprint = _digest(
            repr((template, self.default_system, enable_thinking, mask_history, self.ids, self.opening))
        )

    def turns(
        self, messages: list[dict[str, str]], system: str, tools: str, one_turn: bool = False
    ) -> list[Turn]:
        """Per-turn (prompt, answer) pieces; reasoning templates add an empty thought where a turn has none.
        `one_turn` (preference and KTO rows, LLaMA-Factory's encode_oneturn): only the last answer counts, so
        earlier answers lose their thoughts and get no empty one, as with mask_history."""
        t = self.template
        history_only = t.reasoning and (self.mask_history or one_turn)
        messages = _with_thinking(messages, self.enable_thinking, history_only, t.thought_words)
        encoded = [self._message(i, m, system, tools) for i, m in enumerate(messages)]
        pairs = self._framed([(encoded[i], encoded[i + 1]) for i in range(0, len(encoded), 2)])
        if t.reasoning:
            indices = [len(pairs) - 1] if history_only else range(len(pairs))
            for k in indices:
                if not _has_thought(messages[2 * k + 1]["content"], t.thought_words):
                    empty = t.empty_thought_text
                    if self.enable_thinking:  # trained on: the model learns to emit an empty thought
                        pairs[k] = (pairs[k][0], [empty, *pairs[k][1]])
                    else:  # part of the prompt, not trained on
                        pairs[k] = ([*pairs[k][0], empty], pairs[k][1])
        return pairs

    def _framed(self, pairs: list[Turn]) -> list[Turn]:
        """The separator before every later prompt, the closing after the last answer, the tokenizer's opening
        (auto_bos) before everything."""
        if not pairs:
            return pairs
        separator = self._fill(self.template.separator, "")
        pairs = [pairs[0]] + [([*separator, *prompt], answer) for prompt, answer in pairs[1:]]
        pairs[-1] = (pairs[-1][0], [*pairs[-1][1], *self._fill(self.template.closing, "")])
        pairs[0] = ([*self.opening, *pairs[0][0]], pairs[0][1])
        return pairs

    def answer_tail(self) -> list[Piece]:
        """The pieces the template puts after an answer's content (its end-of-turn tokens)."""
        return self._fill(self.template.assistant, "")

    def _message(self, index: int, message: dict[str, str], system: str, tools: str) -> list[Piece]:
        t = self.template
        pieces: list[Piece] = []
        role, content = message["role"], message["content"]
        if index == 0:
            pieces += self._fill(t.prefix, "")
            system = system or self.default_system
            if system or tools:
                tool_text = self._tool_format()[0](json.loads(tools)) if tools else ""
                system_pieces = self._fill(t.system_slots, system + tool_text)
                if not t.system_in_user:
                    pieces += system_pieces
                elif role == USER:  # llama2: `[INST] <<SYS>>...<</SYS>> question [/INST]`
                    content = "".join(p for p in system_pieces if isinstance(p, str)) + content
        if role == USER:
            return pieces + self._fill(t.user, content)
        if role == ASSISTANT:
            return pieces + self._fill(t.assistant, content)
        if role == OBSERVATION:
            return pieces + self._fill(t.observation_slots, content)
        return pieces + self._fill(t.function_slots, self._function_text(content))

    def _fill(self, slots: tuple, content: str) -> list[Piece]:
        pieces: list[Piece] = []
        for slot in slots:
            if isinstance(slot, Token):
                if self.ids.get(slot.name) is not None:
                    pieces.append(self.ids[slot.name])
            else:
                text = slot.replace("{{content}}", content, 1)
                if text:
                    pieces.append(text)
        return pieces

    def _tool_format(self) -> tuple:
        """(tools -> text, calls -> text) of the template's tool format; DataError if it is not built in."""
        if self.tool_texts is None:
            raise DataError(
                f"template {self.template.name!r} lays out tools and function calls in LLaMA-Factory's "
                f"{self.template.tool_format!r} tool format, which is not built in here; set tool_format to one "
                f"of {', '.join(TOOL_FORMATS)}, or use data without tools"
            )
        return self.tool_texts

    def _function_text(self, content: str) -> str:
        """A function-call turn's JSON (optionally after a thought or inside the tool-call words) in the tool
        format."""
        calls_text = self._tool_format()[1]
        call = self._tool_call.search(content)
        if call:
            return content.replace(call.group(0), "") + calls_text(_parse_calls(call.group(1)))
        thought = self._thought.search(content)
        body = content.replace(thought.group(0), "") if thought else content
        return (thought.group(0) if thought else "") + calls_text(_parse_calls(body))


def _parse_calls(text: str) -> list[tuple[str, str]]:
    """(name, arguments as JSON) per call; OpenAI-style arguments given as a JSON string are decoded first."""
    try:
        calls = json.loads(text)
        calls = calls if isinstance(calls, list) else [calls]
        return [(c["name"], json.dumps(_decoded(c["arguments"]), ensure_ascii=False)) for c in calls]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DataError(
            f"function call turn must be JSON with name and arguments, got {text[:80]!r}"
        ) from None


def _decoded(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments


def _special_ids(template: SlotTemplate, tokenizer: PreTrainedTokenizerBase) -> dict[str, int | None]:
    vocab = tokenizer.get_vocab()
    needed = {s.name for slots in _all_slots(template) for s in slots if isinstance(s, Token)} - {
        "bos_token",
        "eos_token",
    }
    if template.replace_eos:
        needed.add(template.stop_words[0])
    missing = sorted(n for n in needed if n not in vocab)
    if missing:
        raise ConfigError(
            f"template {template.name!r} needs the token(s) {missing}, which the tokenizer does not have; "
            "use this model's template (or none, for its own chat template), or add them with add_special_tokens"
        )
    eos = vocab[template.stop_words[0]] if template.replace_eos else tokenizer.eos_token_id
    return {"bos_token": tokenizer.bos_token_id, "eos_token": eos, **{n: vocab[n] for n in needed}}


def _added_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids the tokenizer's own encoding puts before a text (its BOS, if it adds one), as ms-swift's
    auto_add_bos finds them."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    return full[: full.index(plain[0])] if len(plain) == 1 and plain[0] in full else []


def _all_slots(t: SlotTemplate) -> list[tuple]:
    return [
        t.user,
        t.assistant,
        t.system_slots,
        t.observation_slots,
        t.function_slots,
        t.prefix,
        t.separator,
        t.closing,
    ]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class JinjaRenderer:
    """The tokenizer's own chat template; turn boundaries come from rendering growing prefixes of the chat."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, default_system: str | None, enable_thinking: bool | None
    ):
        self.tokenizer, self.default_system, self.enable_thinking = tokenizer, default_system, enable_thinking
        self.closing_eos = None
        self.fingerprint = _digest(repr((tokenizer.chat_template, default_system, enable_thinking)))

    def turns(
        self, messages: list[dict[str, str]], system: str, tools: str, one_turn: bool = False
    ) -> list[Turn]:
        """Per-turn (prompt text, answer text): the prompt ends with the generation prompt of the template (which
        lays out earlier answers' thoughts itself, so `one_turn` changes nothing here)."""
        messages = _with_thinking(messages, self.enable_thinking, keep_last_only=False)
        chat = (
            [{"role": "system", "content": system or self.default_system}]
            if system or self.default_system
            else []
        )
        answers = []
        for m in messages:
            if m["role"] in (ASSISTANT, FUNCTION):
                answers.append(len(chat))
            chat.append(_hf_message(m))
        kwargs: dict[str, Any] = {"tools": json.loads(tools) if tools else None}
        if self.enable_thinking is not None:
            kwargs["enable_thinking"] = self.enable_thinking
        out, done = [], ""
        for k in answers:
            prompt = self._render(chat[:k], True, kwargs)
            full = self._render(chat[: k + 1], False, kwargs)
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise ConfigError(
                    "the tokenizer's chat template renders earlier turns differently once later turns follow, so "
                    "the trained spans cannot be found; set `template` to a built-in (e.g. qwen3, chatml, llama3)"
                )
            out.append(([prompt[len(done) :]], [full[len(prompt) :]]))
            done = full
        return out

    def answer_tail(self) -> list[Piece]:
        """The text the chat template puts after an answer's content, found with a probe conversation."""
        probe = "\x00tunesmith-probe\x00"
        (_, answer), *_ = self.turns(
            [{"role": USER, "content": "?"}, {"role": ASSISTANT, "content": probe}], "", ""
        )
        text = answer[0]
        rest = text[text.index(probe) + len(probe) :] if probe in text else ""
        return [rest] if rest else []

    def _render(self, chat: list[dict], generation_prompt: bool, kwargs: dict[str, Any]) -> str:
        return self.tokenizer.apply_chat_template(
            chat, tokenize=False, add_generation_prompt=generation_prompt, **kwargs
        )


def _hf_message(message: dict[str, str]) -> dict[str, Any]:
    role, content = message["role"], message["content"]
    if role in (USER, ASSISTANT):
        return {"role": role, "content": content}
    if role == OBSERVATION:
        return {"role": "tool", "content": content}
    calls = [
        {"type": "function", "function": {"name": n, "arguments": json.loads(a)}}
        for n, a in _parse_calls(content)
    ]
    return {"role": "assistant", "content": "", "tool_calls": calls}
