"""Conversations -> `input_ids` / `labels` (masking, truncation); plain text -> pre-training blocks.

Labels are the token id where supervised and IGNORE_INDEX elsewhere, not shifted. Truncation follows
LLaMA-Factory: turns are taken in order (last turn first with `mask_history`), and each turn's remaining budget
is split between prompt and answer by `infer_seqlen`.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any

from transformers import PreTrainedTokenizerBase

from tunesmith.data.loss_weights import WeightScheme, parse_scheme, weigh_answer
from tunesmith.data.render import Piece, Renderer
from tunesmith.data.self_cognition import check_names, fill
from tunesmith.data.truncation import cut_document, truncate
from tunesmith.utils.errors import ConfigError, DataError

IGNORE_INDEX = -100
Batch = dict[str, list]


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Tokenize each text on its own, without special tokens added (one batched call)."""
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def encode_pieces(tokenizer: PreTrainedTokenizerBase, groups: list[list[Piece]]) -> list[list[int]]:
    """Each group of pieces -> ids; every distinct string is tokenized once for the whole batch."""
    return [list(chain.from_iterable(group)) for group in piece_ids(tokenizer, groups)]


def piece_ids(tokenizer: PreTrainedTokenizerBase, groups: list[list[Piece]]) -> list[list[list[int]]]:
    """The ids of every piece of every group (each distinct string tokenized once for the whole batch)."""
    unique = list(dict.fromkeys(p for group in groups for p in group if isinstance(p, str)))
    ids = dict(zip(unique, encode_texts(tokenizer, unique), strict=True))
    return [[[p] if isinstance(p, int) else ids[p] for p in group] for group in groups]


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """Split a budget of `cutoff_len` tokens between a prompt and its answer (LLaMA-Factory's rule).

    A short answer (< half the budget) is kept whole; else a short prompt is kept whole; else both shrink in
    proportion to their lengths. The prompt gets what the answer leaves.
    """
    if target_len * 2 < cutoff_len:
        max_target = cutoff_len
    elif source_len * 2 < cutoff_len:
        max_target = cutoff_len - source_len
    else:
        max_target = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target = min(max_target, target_len)
    new_source = min(max(cutoff_len - new_target, 0), source_len)
    return new_source, new_target


def supervise(
    turns: list[tuple[list[int], list[int]]],
    cutoff_len: int,
    train_on_prompt: bool,
    mask_history: bool,
    closing_eos: int | None = None,
) -> tuple[list[int], list[int]]:
    """Concatenate turns within `cutoff_len`, masking prompts (unless train_on_prompt) and, with mask_history,
    every answer but the last. `closing_eos` (LLaMA-Factory's efficient_eos): that one token, budgeted first,
    ends the sequence and is trained on, and it is the label of the first prompt token of every turn taken after
    the first (turns are taken last first with mask_history, as LLaMA-Factory does)."""
    input_ids: list[int] = []
    labels: list[int] = []
    total = 0 if closing_eos is None else 1
    ordered = turns[::-1] if mask_history else turns  # with mask_history the last turn has the budget first
    for k, (source, target) in enumerate(ordered):
        if total >= cutoff_len:
            break
        source_len, target_len = infer_seqlen(len(source), len(target), cutoff_len - total)
        source, target = source[:source_len], target[:target_len]
        total += source_len + target_len
        source_labels = source if train_on_prompt else [IGNORE_INDEX] * source_len
        if closing_eos is not None and k != 0 and source_len and not train_on_prompt:
            source_labels = [closing_eos, *source_labels[1:]]
        target_labels = [IGNORE_INDEX] * target_len if mask_history and k != 0 else target
        if mask_history:
            input_ids = source + target + input_ids
            labels = source_labels + target_labels + labels
        else:
            input_ids += source + target
            labels += source_labels + target_labels
    if closing_eos is not None:
        input_ids.append(closing_eos)
        labels.append(closing_eos)
    return input_ids, labels


def make_sft_processor(
    renderer: Renderer, tokenizer: PreTrainedTokenizerBase, data: Any
) -> Callable[[Batch], Batch]:
    """A batched map function: `_messages/_system/_tools/_where` -> `input_ids/labels`; rows left with no
    supervised token are dropped (the caller counts them), as are over-long ones with truncation_strategy delete."""
    if data.truncation_strategy == "split":
        raise ConfigError(
            "truncation_strategy: split cuts pre-training documents (stage: pt); for conversations use delete, "
            "left or right"
        )

    check_names(data.model_name, data.model_author)
    names = (data.model_name, data.model_author) if data.model_name or data.model_author else None
    scheme = parse_scheme(data.token_loss_weights) if data.token_loss_weights else None
    tail = renderer.answer_tail() if scheme is not None and hasattr(renderer, "answer_tail") else []

    def process(batch: Batch) -> Batch:
        if names is not None:
            batch = {**batch, "_messages": [fill(m, *names) for m in batch["_messages"]]}
        out: Batch = {"input_ids": [], "labels": []}
        if scheme is not None:
            out["loss_weights"] = []
        for sources, targets, weights in _encode_rows(renderer, tokenizer, batch, scheme, tail):
            kept = _supervised(list(zip(sources, targets, strict=True)), weights, data, renderer.closing_eos)
            if kept is None or all(label == IGNORE_INDEX for label in kept[1]):
                continue
            out["input_ids"].append(kept[0])
            out["labels"].append(kept[1])
            if scheme is not None:
                out["loss_weights"].append(kept[2])
        return out

    return process


def _encode_rows(
    renderer: Renderer,
    tokenizer: PreTrainedTokenizerBase,
    batch: Batch,
    scheme: WeightScheme | None,
    tail: list[Piece],
) -> list[tuple[list[list[int]], list[list[int]], list[list[float]] | None]]:
    """Per row: the prompt ids and the answer ids of every turn, and (with a scheme) each answer token's
    weight."""
    groups: list[list[Piece]] = []
    answer_weights: list[list[float]] = []
    shape: list[int] = []
    for i, messages in enumerate(batch["_messages"]):
        turns = _render(renderer, batch, i)
        shape.append(len(turns))
        for k, (prompt, answer) in enumerate(turns):
            pieces, weights = weigh_answer(answer, tail, scheme, messages[2 * k]["content"])
            groups += [prompt, pieces]
            answer_weights.append(weights)
    encoded = iter(piece_ids(tokenizer, groups))
    per_weight = iter(answer_weights)
    rows = []
    for n in shape:
        sources, targets, weights = [], [], []
        for _ in range(n):
            prompt, answer = next(encoded), next(encoded)
            sources.append(list(chain.from_iterable(prompt)))
            targets.append(list(chain.from_iterable(answer)))
            piece_weights = next(per_weight)
            if scheme is not None:
                weights.append([w for ids, w in zip(answer, piece_weights, strict=True) for _ in ids])
        rows.append((sources, targets, weights if scheme is not None else None))
    return rows


def _supervised(
    ids_turns: list[tuple[list[int], list[int]]],
    answer_weights: list[list[float]] | None,
    data: Any,
    closing_eos: int | None,
) -> tuple[list[int], list[int], list[float] | None] | None:
    """(input_ids, labels, weights) of one row within cutoff_len (None: deleted by truncation_strategy). A
    token of weight 0 is not supervised; unsupervised tokens weigh 0."""
    strategy = data.truncation_strategy
    budget = (
        data.cutoff_len
        if strategy is None
        else sum(len(s) + len(t) for s, t in ids_turns) + (closing_eos is not None)
    )
    input_ids, labels = supervise(ids_turns, budget, data.train_on_prompt, data.mask_history, closing_eos)
    if answer_weights is None:
        if strategy is None:
            return input_ids, labels, None
        kept = truncate(input_ids, labels, data.cutoff_len, strategy)
        return None if kept is None else (*kept, None)
    # the same cut applied to the weights: supervise only looks at lengths (prompt tokens weigh 1)
    weight_turns = [([1.0] * len(s), w) for (s, _), w in zip(ids_turns, answer_weights, strict=True)]
    weight_eos = None if closing_eos is None else 1.0  # the closing EOS weighs 1, as a prompt token
    _, weights = supervise(weight_turns, budget, data.train_on_prompt, data.mask_history, weight_eos)  # type: ignore[arg-type]
    if strategy is not None:
        kept = truncate(input_ids, labels, data.cutoff_len, strategy)
        if kept is None:
            return None
        input_ids, labels = kept
        weights = truncate(weights, weights, data.cutoff_len, strategy)[1]  # type: ignore[index,arg-type]
    weights = [0.0 if label == IGNORE_INDEX else float(w) for w, label in zip(weights, labels, strict=True)]
    labels = [IGNORE_INDEX if w == 0 else label for w, label in zip(weights, labels, strict=True)]
    return input_ids, labels, weights


def _render(renderer: Renderer, batch: Batch, i: int) -> list[tuple[list[Piece], list[Piece]]]:
    try:
        return renderer.turns(batch["_messages"][i], batch["_system"][i], batch["_tools"][i])
    except DataError as err:
        raise DataError(f"{batch['_where'][i]}: {err}") from None


def make_pt_processor(
    tokenizer: PreTrainedTokenizerBase, data: Any, eos_id: int | None, concatenate: bool = True
) -> Callable[[Batch], Batch]:
    """A batched map function for `_text` documents, each followed by EOS. `concatenate`: one stream cut into
    `cutoff_len` blocks (the last, shorter block of each batch is kept); else one example per document, cut at
    `cutoff_len` (LLaMA-Factory's pre-training with packing turned off). Every token is a label."""
    bos_id = tokenizer.bos_token_id if getattr(tokenizer, "add_bos_token", False) else None
    eos = [eos_id] if eos_id is not None else []

    def process(batch: Batch) -> Batch:
        docs = [doc + eos for doc in encode_texts(tokenizer, [t for t in batch["_text"] if t])]
        if concatenate:
            stream = list(chain.from_iterable(docs))
            blocks = [stream[i : i + data.cutoff_len] for i in range(0, len(stream), data.cutoff_len)]
            if (
                bos_id is not None
            ):  # as LLaMA-Factory: each block starts with BOS (it replaces the first token)
                blocks = [[bos_id, *block[1:]] for block in blocks]
        else:
            blocks = [([bos_id] if bos_id is not None else []) + doc for doc in docs]
            blocks = [
                b for block in blocks for b in cut_document(block, data.cutoff_len, data.truncation_strategy)
            ]
        return {"input_ids": blocks, "labels": [list(b) for b in blocks]}

    return process


def pretrain_eos_id(tokenizer: PreTrainedTokenizerBase, template: str | None) -> int | None:
    """The document separator: the tokenizer's EOS (Llama 3's `<|end_of_text|>` with the llama3 template)."""
    if template in ("llama3", "llama3_1", "llama3_2"):
        return tokenizer.get_vocab().get("<|end_of_text|>", tokenizer.eos_token_id)
    return tokenizer.eos_token_id
