"""How an argument is declared: `arg()` wraps `dataclasses.field` with the metadata tunesmith needs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

_MISSING = dataclasses.MISSING


@dataclasses.dataclass(frozen=True)
class ArgInfo:
    """Metadata of one argument (stored in the dataclass field's metadata under "arg")."""

    help: str
    aliases: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # spec files ("000".."004") that document the name or an alias
    choices: tuple[Any, ...] | None = None  # allowed values (after value aliases are applied)
    value_aliases: dict[Any, Any] | None = None  # e.g. {"adamw": "adamw_torch"}
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False  # True: value must be > minimum
    secret: bool = False  # never printed, logged or saved
    default_note: str = ""  # why this default won when dialects disagree
    obsolete: str = ""  # accepted but has no effect; says why and what to use instead


def arg(
    default: Any = _MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    aliases: Sequence[str] = (),
    sources: str | Sequence[str] = (),
    choices: Sequence[Any] | None = None,
    value_aliases: dict[Any, Any] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    secret: bool = False,
    default_note: str = "",
    obsolete: str = "",
) -> Any:
    """Declare an argument: its default (or `factory` for mutable defaults), help text and metadata.

    `sources` is a comma-separated string or list of spec file numbers, e.g. "001,003".
    """
    if isinstance(sources, str):
        sources = tuple(s for s in sources.split(",") if s)
    info = ArgInfo(
        help=help,
        aliases=tuple(aliases),
        sources=tuple(sources),
        choices=tuple(choices) if choices is not None else None,
        value_aliases=value_aliases,
        minimum=minimum,
        maximum=maximum,
        exclusive_minimum=exclusive_minimum,
        secret=secret,
        default_note=default_note,
        obsolete=obsolete,
    )
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"arg": info})
    return dataclasses.field(default=default, metadata={"arg": info})


def arg_info(field: dataclasses.Field) -> ArgInfo:
    """The ArgInfo of a dataclass field declared with `arg()`."""
    return field.metadata.get("arg") or ArgInfo(help="")
