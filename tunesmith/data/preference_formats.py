"""Preference rows -> the internal conversation form plus the rejected answer (pairs) or the KTO label.

Accepted layouts: LLaMA-Factory `ranking: true` (alpaca `chosen`/`rejected` answer columns; sharegpt/openai
prompt turns with `chosen`/`rejected` message objects), LLaMA-Factory KTO (`kto_tag` column), TRL standard and
conversational `prompt`/`chosen`/`rejected` (also with the prompt implicit in full `chosen`/`rejected`
conversations) and unpaired `prompt`/`completion`/`label`, ms-swift `messages` + `rejected_response` /
`rejected_messages`.

A pair row has the conversation columns (`_messages` ends with the chosen answer) and `_rejected` /
`_rejected_role` (the rejected final answer); a KTO row has the conversation columns and `_kto_tag`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tunesmith.data.formats import (
    CONVERSATION_COLUMNS,
    DEFAULT_COLUMNS,
    DEFAULT_TAGS,
    detect_format,
    row_converter,
    where_of,
)
from tunesmith.data.registry import DatasetSpec
from tunesmith.utils.errors import ConfigError, DataError

PAIR_STAGES = ("dpo", "rm")
PREFERENCE_STAGES = ("dpo", "kto", "rm")
PAIR_COLUMNS = (*CONVERSATION_COLUMNS, "_rejected", "_rejected_role")
KTO_COLUMNS = (*CONVERSATION_COLUMNS, "_kto_tag")


def detect_preference_format(spec: DatasetSpec, column_names: list[str], first_row: dict, stage: str) -> None:
    """Fill `spec.formatting` and its columns from the columns of a preference dataset given by path."""
    cols = set(column_names)
    answer = "completion" if stage == "kto" else "chosen"
    if "prompt" in cols and answer in cols:  # TRL explicit prompt
        pref = {"kto_tag": "label"} if stage == "kto" else {"rejected": "rejected"}
        if isinstance(first_row.get("prompt"), list):
            spec.formatting = "openai"
            spec.columns = {"messages": "prompt", "chosen": answer, **pref, **spec.columns}
        else:
            spec.formatting = "alpaca"
            spec.columns = {"prompt": "prompt", "chosen": answer, **pref, **spec.columns}
    elif {"chosen", "rejected"} <= cols and not cols & {"messages", "conversations", "instruction"}:
        spec.formatting = "openai"  # TRL implicit prompt: two full conversations
        spec.columns = {"messages": "chosen", "rejected_messages": "rejected", **spec.columns}
    elif "messages" in cols and cols & {"rejected_response", "rejected_messages"}:  # ms-swift
        spec.formatting = "openai"
        key = "rejected" if "rejected_response" in cols else "rejected_messages"
        spec.columns = {
            key: "rejected_response" if key == "rejected" else "rejected_messages",
            **spec.columns,
        }
    else:  # LLaMA-Factory: an SFT layout plus chosen/rejected (or kto_tag) columns
        detect_format(spec, column_names, first_row, "sft")
        for key in ("chosen", "rejected", "kto_tag"):
            if key in cols:
                spec.columns.setdefault(key, key)
        if stage == "kto" and "label" in cols and "kto_tag" not in cols:  # ms-swift: messages + label
            spec.columns.setdefault("kto_tag", "label")
    for key in ("system", "tools"):
        if key in cols:
            spec.columns.setdefault(key, key)
    spec.ranking = stage in PAIR_STAGES


def preference_columns(spec: DatasetSpec, stage: str) -> dict[str, str]:
    """Column roles -> names: the format's defaults, LLaMA-Factory's `chosen`/`rejected` for ranking data."""
    columns = {**DEFAULT_COLUMNS[spec.formatting], **spec.columns}
    if stage in PAIR_STAGES and "rejected_messages" not in columns and not spec.auto_format:
        columns.setdefault("chosen", "chosen")
        columns.setdefault("rejected", "rejected")
    if stage == "kto" and not spec.auto_format:
        columns.setdefault("kto_tag", "kto_tag")
    if spec.formatting == "alpaca" and "chosen" in columns and "response" not in spec.columns:
        del columns["response"]  # the answers are in the chosen / rejected columns
    if stage in PAIR_STAGES and not ({"rejected", "rejected_messages"} & set(columns)):
        raise ConfigError(f"{spec.origin}: stage {stage} needs a rejected answer column (columns.rejected)")
    if stage == "kto" and "kto_tag" not in columns:
        raise ConfigError(
            f"{spec.origin}: stage kto needs a desirable/undesirable label column (columns.kto_tag)"
        )
    return columns


def check_preference_columns(spec: DatasetSpec, column_names: list[str], stage: str) -> None:
    """Every configured column must exist (the alpaca `query` column may be absent)."""
    present = set(column_names)
    for role, column in preference_columns(spec, stage).items():
        if column not in present and role != "query":
            raise DataError(
                f"{spec.path}: column {column!r} (columns.{role}) not found for stage {stage}; the data has "
                f"columns {sorted(present)} [{spec.origin}]"
            )


def make_preference_converter(spec: DatasetSpec, stage: str) -> Callable[[dict[str, list], list[int]], dict]:
    """A batched `datasets.map` function: raw preference rows -> pair rows (dpo, rm) or KTO rows."""
    if spec.formatting not in ("alpaca", "sharegpt", "openai"):
        raise ConfigError(f"{spec.origin}: formatting {spec.formatting!r} cannot hold preference data")
    columns = preference_columns(spec, stage)
    tags = {**DEFAULT_TAGS.get(spec.formatting, {}), **spec.tags}
    convert_row = row_converter(spec.formatting)
    names = KTO_COLUMNS if stage == "kto" else PAIR_COLUMNS

    def variant(row: dict, answer: str, where: Any) -> tuple[list[dict], str, str]:
        raw, cols = _variant(row, columns, tags, spec.formatting, answer)
        return convert_row(raw, cols, tags, where)

    def convert(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in names}
        for pos, index in enumerate(indices):
            where = where_of(spec, index)
            row = {k: v[pos] for k, v in batch.items()}
            messages, system, tools = variant(row, "chosen", where)
            values: list[Any] = [messages, system, tools, where.label]
            if stage == "kto":
                values.append(_kto_tag(row.get(columns["kto_tag"]), columns["kto_tag"], where))
            else:
                rejected, r_system, _ = variant(row, "rejected", where)
                if rejected[:-1] != messages[:-1] or r_system != system:
                    raise where(columns["messages"], "chosen and rejected must follow the same prompt")
                values += [rejected[-1]["content"], rejected[-1]["role"]]
            for name, value in zip(names, values, strict=True):
                out[name].append(value)
        return out

    return convert


def _variant(
    row: dict, columns: dict[str, str], tags: dict, formatting: str, answer: str
) -> tuple[dict, dict[str, str]]:
    """The raw row with the chosen (or rejected) answer in place, and the columns to read it with."""
    if formatting == "alpaca":
        key = answer if answer in columns else "response"
        return row, {**columns, "response": columns[key]}
    field = columns["messages"]
    base = list(row.get(field) or [])
    if answer == "rejected" and "rejected_messages" in columns:
        turns = row.get(columns["rejected_messages"])
    elif answer == "chosen" and "chosen" not in columns:
        turns = base  # the conversation already ends with the chosen answer (ms-swift, TRL implicit prompt)
    else:
        prompt = base if "chosen" in columns else base[:-1]
        turns = prompt + _as_turns(row.get(columns[answer]), tags)
    return {**row, field: turns}, columns


def _as_turns(value: Any, tags: dict) -> list:
    """An answer given as a message object, a list of messages or a plain string -> a list of turns."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return value
    return [{tags["role_tag"]: tags["assistant_tag"], tags["content_tag"]: value}]


def _kto_tag(value: Any, column: str, where: Any) -> bool:
    if not isinstance(value, bool):
        raise where(column, f"kto_tag must be true (desirable) or false (undesirable), got {value!r}")
    return value
