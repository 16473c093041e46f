"""The vocabulary of a dialect table: how one peer name is taken (alias, conversion, fixed behaviour, refusal)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

# A conversion: the raw value the user wrote -> {tunesmith key: value}. Keys are canonical names or their
# aliases; a value of None in the result means "leave that argument at its default".
Converter = Callable[[Any], Mapping[str, Any]]
# A home default computed from other values: `get(name)` returns the resolved value of canonical argument `name`.
DefaultFn = Callable[[Callable[[str], Any]], Any]


@dataclasses.dataclass(frozen=True)
class Entry:
    """How a dialect takes one of its names.

    kind: `alias` (same meaning as canonical `target`), `convert` (`fn` maps the value onto tunesmith arguments;
    `note` says what it becomes), `fixed` (tunesmith always behaves as `value` asks: accepted when equal, else
    refused with `note`), `refuse` (cannot take effect here: `note` says why and what to use instead).
    """

    kind: str
    target: str = ""
    fn: Converter | None = None
    note: str = ""
    value: Any = None
    contextual: bool = False  # `fn(value, context)`: context maps the config's other keys to their raw values

    def describe(self) -> str:
        """One line for `tunesmith args` and `tunesmith plan`."""
        if self.kind == "alias":
            return f"alias of {self.target}"
        if self.kind == "convert":
            return f"converted: {self.note}"
        if self.kind == "fixed":
            return f"always {self.value!r} here: {self.note}"
        return f"refused: {self.note}"


def truthy(value: Any) -> bool:
    """A flag's value as written in YAML (true) or on a command line ("true", "yes", "1")."""
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "1"))


def alias(target: str) -> Entry:
    """The name means canonical argument `target`."""
    return Entry("alias", target=target)


def convert(fn: Converter, note: str) -> Entry:
    """The value is converted by `fn` onto tunesmith arguments; `note` says onto which."""
    return Entry("convert", fn=fn, note=note)


def convert_in_context(fn: Callable[[Any, Mapping[str, Any]], Mapping[str, Any]], note: str) -> Entry:
    """Like `convert`, for a name whose meaning depends on the config's other keys (their raw values)."""
    return Entry("convert", fn=fn, note=note, contextual=True)


def fixed(value: Any, note: str) -> Entry:
    """tunesmith always behaves as `name: value` asks; another value is refused with `note`."""
    return Entry("fixed", value=value, note=note)


def refuse(note: str, default: Any = None) -> Entry:
    """Cannot take effect here; `note` says why and what to use instead. Written with the peer's `default` (or
    a value that asks for nothing: false, null, empty) it is accepted, since it changes nothing there either."""
    return Entry("refuse", note=note, value=default)


def inert(note: str) -> Entry:
    """Accepted with any value because it changes nothing here; `note` says why (listed by `tunesmith args`)."""
    return convert(lambda value: {}, f"no effect here: {note}")


def refuse_all(names: str, note: str, default: Any = None) -> dict[str, Entry]:
    """The same refusal for several space-separated names."""
    return {name: refuse(note, default) for name in names.split()}


def rename_values(target: str, mapping: Mapping[Any, Any], note: str = "") -> Entry:
    """An alias whose values are spelled differently: `mapping` turns each peer value into tunesmith's."""

    def fn(value: Any) -> dict[str, Any]:
        key = value.lower() if isinstance(value, str) else value
        return {target: mapping.get(key, value)}

    return convert(fn, note or f"{target} ({', '.join(f'{k} -> {v}' for k, v in mapping.items())})")


@dataclasses.dataclass(frozen=True)
class HomeDefault:
    """A default of the dialect's own system that differs from tunesmith's: a value or a function of others."""

    value: Any = None
    fn: DefaultFn | None = None
    why: str = ""

    def resolve(self, get: Callable[[str], Any]) -> Any:
        """The default's value, given the resolved values of the other arguments."""
        return self.fn(get) if self.fn is not None else self.value


@dataclasses.dataclass(frozen=True)
class Dialect:
    """One peer system's names (beyond tunesmith's canonical names and aliases), markers and defaults."""

    name: str  # the value of the `dialect:` key
    system: str  # shown to users, e.g. "LLaMA-Factory v0"
    names: Mapping[str, Entry]
    markers: frozenset[str]  # keys that only this system writes: their presence detects the dialect
    defaults: Mapping[str, HomeDefault] = dataclasses.field(default_factory=dict)
    # tunesmith names (canonical or alias) that mean something else in this system: its entry wins over ours.
    overrides: frozenset[str] = frozenset()


def _number(context: Mapping[str, Any], key: str, default: float) -> float:
    value = context.get(key)
    return default if value is None else float(value)


def adam_muon(context: Mapping[str, Any]) -> dict[str, Any]:
    """Muon as LLaMA-Factory v0 and ms-swift (Moonlight's) build it: the AdamW part takes adam_beta1/2 and
    adam_epsilon (transformers' defaults), weight_decay applies to every parameter."""
    muon = {
        "name": "muon",
        "adamw_beta1": _number(context, "adam_beta1", 0.9),
        "adamw_beta2": _number(context, "adam_beta2", 0.999),
        "adamw_eps": _number(context, "adam_epsilon", 1e-8),
        "decay_all": True,
    }
    return {"optim_config": muon}
