"""Raw rows (alpaca, sharegpt, openai messages, plain text) -> one internal conversation form.

A conversation row has `_messages` (alternating user/observation and assistant/function turns, ending with an
assistant or function turn; `role` is one of user, assistant, observation, function), `_system` and `_tools`
(a JSON string, "" when none). A pre-training row has `_text`.
"""

from __future__ import annotations

import functools
import json
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.data.loaders import BUILDERS
from tunesmith.data.registry import DatasetSpec
from tunesmith.utils.errors import ConfigError, DataError

USER, ASSISTANT, OBSERVATION, FUNCTION = "user", "assistant", "observation", "function"
PROMPT_ROLES, ANSWER_ROLES = (USER, OBSERVATION), (ASSISTANT, FUNCTION)
CONVERSATION_COLUMNS = ("_messages", "_system", "_tools", "_where")
ROW_COLUMN = "_row"  # a row's position in its file(s), kept through sampling for error messages

DEFAULT_COLUMNS = {
    "alpaca": {"prompt": "instruction", "query": "input", "response": "output"},
    "sharegpt": {"messages": "conversations"},
    "openai": {"messages": "messages"},
    "text": {"text": "text"},
}
DEFAULT_TAGS = {
    "sharegpt": {
        "role_tag": "from",
        "content_tag": "value",
        "user_tag": "human",
        "assistant_tag": "gpt",
        "observation_tag": "observation",
        "function_tag": "function_call",
        "system_tag": "system",
    },
    "openai": {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
        "observation_tag": "tool",
        "function_tag": "function_call",
        "system_tag": "system",
    },
}
_OPTIONAL_DEFAULTS = {"query"}  # default columns that may be absent from a file


def detect_format(spec: DatasetSpec, column_names: list[str], first_row: dict[str, Any], stage: str) -> None:
    """Fill `spec.formatting` (and columns/tags) from the columns of a dataset given as a bare path or hub id."""
    cols = set(column_names)
    if stage == "pt" or cols == {"text"}:
        spec.formatting = "text"
    elif "messages" in cols:
        spec.formatting = "openai"
    elif "conversations" in cols:
        spec.formatting = "sharegpt"
        turns = first_row.get("conversations") or [{}]
        if "role" in turns[0]:  # ms-swift style sharegpt: role/content with user/assistant
            spec.tags = {**DEFAULT_TAGS["openai"], **spec.tags}
    elif {"query", "response"} <= cols:  # ms-swift query/response/history
        spec.formatting = "alpaca"
        history = {"history": "history"} if "history" in cols else {}
        spec.columns = {"prompt": "query", "response": "response", **history, **spec.columns}
    elif {"instruction", "output"} <= cols:
        spec.formatting = "alpaca"
    else:
        raise DataError(
            f"{spec.path}: cannot tell the data format from columns {sorted(cols)}; expected messages (openai), "
            "conversations (sharegpt), instruction/output (alpaca), query/response or text; or register it in "
            "dataset_info.json with formatting and columns"
        )
    for role in ("system", "tools"):
        if role in cols and spec.formatting != "text":
            spec.columns.setdefault(role, role)


def resolved_columns(spec: DatasetSpec, stage: str) -> dict[str, str]:
    """Column roles -> column names, with the format's defaults filled in."""
    if stage == "pt":
        return {"text": spec.columns.get("text") or spec.columns.get("prompt") or "text"}
    return {**DEFAULT_COLUMNS[spec.formatting], **spec.columns}


def check_columns(spec: DatasetSpec, column_names: list[str], stage: str) -> None:
    """Every configured column must exist in the data; a DataError names the missing one."""
    present = set(column_names)
    for role, column in resolved_columns(spec, stage).items():
        is_default = spec.columns.get(role) is None
        if column not in present and not (is_default and role in _OPTIONAL_DEFAULTS):
            raise DataError(
                f"{spec.path}: column {column!r} (columns.{role}) not found; the data has columns "
                f"{sorted(present)} [{spec.origin}]"
            )


def make_converter(spec: DatasetSpec, stage: str) -> Callable[[dict[str, list], list[int]], dict[str, list]]:
    """A batched `datasets.map` function: raw columns -> `_messages/_system/_tools` (or `_text` for stage pt)."""
    columns = resolved_columns(spec, stage)
    if stage == "pt":
        return lambda batch, idx: {
            "_text": [_text(spec, columns, v, i) for v, i in zip(batch[columns["text"]], idx, strict=True)]
        }
    convert_row = {"alpaca": _alpaca, "sharegpt": _sharegpt, "openai": _openai}.get(spec.formatting)
    if convert_row is None:
        raise ConfigError(f"{spec.origin}: formatting {spec.formatting!r} is for stage pt only")
    tags = {**DEFAULT_TAGS.get(spec.formatting, {}), **spec.tags}

    def convert(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in CONVERSATION_COLUMNS}
        for pos, index in enumerate(batch.get(ROW_COLUMN, indices)):
            where = _Where(spec, index)
            messages, system, tools = convert_row({k: v[pos] for k, v in batch.items()}, columns, tags, where)
            for name, value in zip(CONVERSATION_COLUMNS, (messages, system, tools, where.label), strict=True):
                out[name].append(value)
        return out

    return convert


class _Where:
    """Names a row of a dataset in error messages: the file and its physical line for JSON Lines (blank lines
    counted, the file of a folder found), else the record number."""

    def __init__(self, spec: DatasetSpec, index: int) -> None:
        self.spec, self.index = spec, index

    @property
    def label(self) -> str:
        found = physical_line(self.spec, self.index)
        return found if found is not None else f"{self.spec.path} row {self.index + 1}"

    def __call__(self, field: str, problem: str) -> DataError:
        return DataError(f"{self.label}, field {field!r}: {problem}")


def physical_line(spec: DatasetSpec, index: int) -> str | None:
    """`file line N` of record `index` of a local JSON Lines spec (one file or a folder of them), else None."""
    if spec.source != "file" or not Path(spec.path).exists():
        return None
    stat = Path(spec.path).stat()
    tables = _jsonl_lines(spec.path, (stat.st_size, stat.st_mtime_ns))
    for path, lines in tables:
        if index < len(lines):
            return f"{path} line {lines[index]}"
        index -= len(lines)
    return None


@functools.lru_cache(maxsize=8)
def _jsonl_lines(spec_path: str, version: tuple[int, int]) -> tuple[tuple[str, array], ...]:
    """Per JSON Lines file of a spec: the physical line number of each record (blank lines hold none); `version`
    (size and time of the path) makes an edited file a new cache entry."""
    root = Path(spec_path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    if not files or any(p.suffix.lower() != ".jsonl" for p in files if p.suffix.lower() in BUILDERS):
        return ()
    tables = []
    for path in (p for p in files if p.suffix.lower() == ".jsonl"):
        with path.open("rb") as f:
            lines = array("L", (n for n, line in enumerate(f, start=1) if line.strip()))
        tables.append((str(path), lines))
    return tuple(tables)


def _string(value: Any, field: str, where: _Where, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise where(
            field, f"expected a string, got {type(value).__name__ if value is not None else 'nothing'}"
        )
    return value


def _tools(row: dict[str, Any], columns: dict[str, str], where: _Where) -> str:
    column = columns.get("tools")
    value = row.get(column) if column else None
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise where(column, f"tools must be a JSON list of function schemas ({e.msg})") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(tool, dict) for tool in value):
        raise where(column, "tools must be a JSON list of function schemas (objects)")
    return json.dumps(value, ensure_ascii=False) if value else ""


def _text(spec: DatasetSpec, columns: dict[str, str], value: Any, index: int) -> str:
    return _string(value, columns["text"], _Where(spec, index))


def _alpaca(row: dict, columns: dict[str, str], tags: dict, where: _Where) -> tuple[list[dict], str, str]:
    messages: list[dict[str, str]] = []
    history_col = columns.get("history")
    history = row.get(history_col) if history_col else None
    for turn in history or []:
        if not isinstance(turn, (list, tuple)) or len(turn) != 2:
            raise where(history_col, "history must be a list of [prompt, response] pairs")
        messages.append({"role": USER, "content": _string(turn[0], history_col, where)})
        messages.append({"role": ASSISTANT, "content": _string(turn[1], history_col, where)})
    parts = []
    for column in (columns.get(key) for key in ("prompt", "query")):
        value = row.get(column) if column else None
        if (
            value is not None and value != ""
        ):  # an empty instruction or input is left out; 0 or a list is not text
            parts.append(_string(value, column, where))
    messages.append({"role": USER, "content": "\n".join(parts)})
    messages.append(
        {"role": ASSISTANT, "content": _string(row.get(columns["response"]), columns["response"], where)}
    )
    system = (
        _string(row.get(columns["system"]), columns["system"], where, required=False)
        if "system" in columns
        else ""
    )
    return messages, system, _tools(row, columns, where)


def _turns_and_system(
    row: dict, columns: dict[str, str], tags: dict, where: _Where, noun: str
) -> tuple[str, list, str, int]:
    """The conversation column, its turns after a leading system turn, the system prompt (from that turn or the
    system column) and how many turns were taken off the front (error messages count them too)."""
    field = columns["messages"]
    turns = row.get(field)
    if not isinstance(turns, list) or not turns:
        raise where(field, f"expected a non-empty list of {noun}")
    system, turns = _leading_system(turns, tags, field, where)
    if not system and columns.get("system"):
        system = _string(row.get(columns["system"]), columns["system"], where, required=False)
    return field, turns, system, len(row[field]) - len(turns)


def _sharegpt(row: dict, columns: dict[str, str], tags: dict, where: _Where) -> tuple[list[dict], str, str]:
    field, turns, system, offset = _turns_and_system(row, columns, tags, where, "turns")
    role_of = {tags["user_tag"]: USER, tags["assistant_tag"]: ASSISTANT}
    role_of.update({tags["observation_tag"]: OBSERVATION, tags["function_tag"]: FUNCTION})
    messages = []
    for i, turn in enumerate(turns, start=offset):
        tag = _field(turn, tags["role_tag"], f"{field}[{i}]", where)
        if tag not in role_of:
            raise where(
                f"{field}[{i}].{tags['role_tag']}", f"unknown role {tag!r}; allowed: {', '.join(role_of)}"
            )
        content = _string(_field(turn, tags["content_tag"], f"{field}[{i}]", where), f"{field}[{i}]", where)
        messages.append({"role": role_of[tag], "content": content})
    check_alternation(messages, field, tags["role_tag"], where, offset)
    return messages, system, _tools(row, columns, where)


def _openai(row: dict, columns: dict[str, str], tags: dict, where: _Where) -> tuple[list[dict], str, str]:
    field, turns, system, offset = _turns_and_system(row, columns, tags, where, "messages")
    role_of = {tags["user_tag"]: USER, tags["assistant_tag"]: ASSISTANT, tags["function_tag"]: FUNCTION}
    messages: list[dict[str, str]] = []
    tool_results: list[str] = []
    for i, turn in enumerate(turns, start=offset):
        tag = _field(turn, tags["role_tag"], f"{field}[{i}]", where)
        _refuse_turn_loss(turn, f"{field}[{i}]", where)
        content = turn.get(tags["content_tag"]) or ""
        if tag in (tags["assistant_tag"], tags["function_tag"]) and turn.get("tool_calls"):
            content, tag = (
                json.dumps([c["function"] for c in turn["tool_calls"]], ensure_ascii=False),
                tags["function_tag"],
            )
        content = _string(content, f"{field}[{i}].{tags['content_tag']}", where)
        if tag == tags["observation_tag"]:
            tool_results.append(content)
            continue
        if tag not in role_of:
            allowed = ", ".join([*role_of, tags["observation_tag"]])
            raise where(f"{field}[{i}].{tags['role_tag']}", f"unknown role {tag!r}; allowed: {allowed}")
        if tool_results:
            messages.append(
                {"role": OBSERVATION, "content": "\n</tool_response>\n<tool_response>\n".join(tool_results)}
            )
            tool_results = []
        messages.append({"role": role_of[tag], "content": content})
    if tool_results:
        messages.append(
            {"role": OBSERVATION, "content": "\n</tool_response>\n<tool_response>\n".join(tool_results)}
        )
    check_alternation(messages, field, tags["role_tag"], where, offset)
    return messages, system, _tools(row, columns, where)


def _refuse_turn_loss(turn: dict, field: str, where: _Where) -> None:
    """ms-swift's per-message `loss` / `loss_scale` keys would change which tokens train: not read here, so an
    error rather than dropped."""
    for key in ("loss", "loss_scale"):
        if turn.get(key) is not None:
            raise where(
                f"{field}.{key}",
                "per-message loss switches and scales are not supported; mask turns with mask_history / "
                "train_on_prompt, weight them with token_loss_weights (ms-swift --loss_scale), or drop the key",
            )


def row_converter(formatting: str) -> Callable[..., tuple[list[dict], str, str]]:
    """The function turning one raw row of `formatting` into (messages, system, tools) (see make_converter)."""
    return {"alpaca": _alpaca, "sharegpt": _sharegpt, "openai": _openai}[formatting]


def where_of(spec: DatasetSpec, index: int) -> _Where:
    """Names row `index` of `spec` in error messages (`.label`) and builds DataErrors for a field."""
    return _Where(spec, index)


def _field(turn: Any, key: str, field: str, where: _Where) -> Any:
    if not isinstance(turn, dict) or turn.get(key) is None:
        raise where(
            field, f"each turn needs a {key!r} key (set tags.role_tag / tags.content_tag if named otherwise)"
        )
    return turn[key]


def _leading_system(turns: list, tags: dict, field: str, where: _Where) -> tuple[str, list]:
    first = turns[0]
    if isinstance(first, dict) and first.get(tags["role_tag"]) == tags["system_tag"]:
        return _string(first.get(tags["content_tag"]), f"{field}[0]", where), turns[1:]
    return "", turns


def check_alternation(
    messages: list[dict[str, str]], field: str, role_tag: str, where: _Where, offset: int = 0
) -> None:
    """Turns must alternate prompt (user/observation) and answer (assistant/function), ending with an answer."""
    for i, message in enumerate(messages):
        expected = PROMPT_ROLES if i % 2 == 0 else ANSWER_ROLES
        if message["role"] not in expected:
            raise where(
                f"{field}[{i + offset}].{role_tag}",
                f"a {message['role']} turn where a {' or '.join(expected)} turn is expected (turns must alternate)",
            )
    if len(messages) % 2:
        raise where(field, "the conversation must end with an assistant (or function call) turn")
