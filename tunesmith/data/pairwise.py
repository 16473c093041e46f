"""Preference rows -> token ids: the same prompt before the chosen and the rejected answer (pairs), or one
labelled example (KTO).

A processed pair keeps the chosen sequence as `input_ids` / `labels` (so lengths, statistics and export work as for
SFT) and the rejected one as `rejected_input_ids` / `rejected_labels`; labels are the answer's tokens and -100 on the
prompt. Truncation follows LLaMA-Factory: `infer_seqlen(prompt, longer answer, cutoff_len)` gives the prompt and
answer budgets, the prompt keeps its start and both answers are cut to the same budget.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any

from transformers import PreTrainedTokenizerBase

from tunesmith.data.render import Renderer
from tunesmith.data.tokenize import IGNORE_INDEX, encode_pieces, infer_seqlen
from tunesmith.utils.errors import ConfigError, DataError

Batch = dict[str, list]
PAIR_KEYS = ("input_ids", "labels", "rejected_input_ids", "rejected_labels")


def check_pair_data_args(data: Any) -> None:
    """Masking options of SFT that preference data cannot honour (the prompt is never trained on)."""
    for name in ("train_on_prompt", "mask_history"):
        if getattr(data, name):
            raise ConfigError(
                f"{name}: not used by the preference stages (dpo, kto, rm), which score only the final answer; "
                "unset it"
            )


def split_prompt(turns: list[tuple[list[int], list[int]]]) -> tuple[list[int], list[int]]:
    """(prompt ids: every turn before the last answer, the last answer's ids)."""
    prompt = list(chain.from_iterable(s + t for s, t in turns[:-1])) + turns[-1][0]
    return prompt, turns[-1][1]


def _closing_eos(renderer: Renderer) -> list[int]:
    """The EOS an efficient_eos template puts after the answer (before truncation, as LLaMA-Factory does)."""
    return [] if renderer.closing_eos is None else [renderer.closing_eos]


def truncate_pair(
    prompt: list[int], chosen: list[int], rejected: list[int], cutoff_len: int
) -> tuple[list[int], list[int], list[int]]:
    """LLaMA-Factory's pair truncation: the answers share one budget (sized on the longer one)."""
    source_len, target_len = infer_seqlen(len(prompt), max(len(chosen), len(rejected)), cutoff_len)
    return prompt[:source_len], chosen[:target_len], rejected[:target_len]


def make_pair_processor(
    renderer: Renderer, tokenizer: PreTrainedTokenizerBase, data: Any
) -> Callable[[Batch], Batch]:
    """A batched map function: pair rows (`_messages`, `_rejected`, ...) -> the four id/label columns; pairs
    left with an empty answer after truncation are dropped (the caller counts them)."""
    check_pair_data_args(data)
    closing = _closing_eos(renderer)

    def process(batch: Batch) -> Batch:
        rows = range(len(batch["_messages"]))
        rendered = [_render_pair(renderer, batch, i) for i in rows]
        flat = [pieces for pair in rendered for turns in pair for turn in turns for pieces in turn]
        encoded = iter(encode_pieces(tokenizer, flat))
        out: Batch = {key: [] for key in PAIR_KEYS}
        for chosen_turns, rejected_turns in rendered:
            c_turns = [(next(encoded), next(encoded)) for _ in chosen_turns]
            r_turns = [(next(encoded), next(encoded)) for _ in rejected_turns]
            prompt, chosen = split_prompt(c_turns)
            r_prompt, rejected = split_prompt(r_turns)
            chosen, rejected = chosen + closing, rejected + closing
            if r_prompt != prompt:
                raise DataError("the template renders the prompt differently before the rejected answer")
            prompt, chosen, rejected = truncate_pair(prompt, chosen, rejected, data.cutoff_len)
            if not chosen or not rejected:
                continue
            masked = [IGNORE_INDEX] * len(prompt)
            for key, value in zip(
                PAIR_KEYS,
                (prompt + chosen, masked + chosen, prompt + rejected, masked + rejected),
                strict=True,
            ):
                out[key].append(value)
        return out

    return process


def _render_pair(renderer: Renderer, batch: Batch, i: int) -> tuple[list, list]:
    messages, system, tools = batch["_messages"][i], batch["_system"][i], batch["_tools"][i]
    rejected = [*messages[:-1], {"role": batch["_rejected_role"][i], "content": batch["_rejected"][i]}]
    try:
        return renderer.turns(messages, system, tools, True), renderer.turns(rejected, system, tools, True)
    except DataError as err:
        raise DataError(f"{batch['_where'][i]}: {err}") from None


def make_kto_processor(
    renderer: Renderer, tokenizer: PreTrainedTokenizerBase, data: Any
) -> Callable[[Batch], Batch]:
    """A batched map function: KTO rows (`_messages` ending with the completion, `_kto_tag`) -> `input_ids`,
    `labels` (the completion supervised) and `kto_tag`; the prompt/completion budget as for SFT turns."""
    check_pair_data_args(data)
    closing = _closing_eos(renderer)

    def process(batch: Batch) -> Batch:
        rendered = [_render_one(renderer, batch, i) for i in range(len(batch["_messages"]))]
        flat = [pieces for turns in rendered for turn in turns for pieces in turn]
        encoded = iter(encode_pieces(tokenizer, flat))
        out: Batch = {"input_ids": [], "labels": [], "kto_tag": []}
        for turns, tag in zip(rendered, batch["_kto_tag"], strict=True):
            prompt, completion = split_prompt([(next(encoded), next(encoded)) for _ in turns])
            completion = completion + closing
            source_len, target_len = infer_seqlen(len(prompt), len(completion), data.cutoff_len)
            prompt, completion = prompt[:source_len], completion[:target_len]
            if completion:
                out["input_ids"].append(prompt + completion)
                out["labels"].append([IGNORE_INDEX] * len(prompt) + completion)
                out["kto_tag"].append(bool(tag))
        return out

    return process


def _render_one(renderer: Renderer, batch: Batch, i: int) -> list:
    try:
        return renderer.turns(batch["_messages"][i], batch["_system"][i], batch["_tools"][i], True)
    except DataError as err:
        raise DataError(f"{batch['_where'][i]}: {err}") from None
