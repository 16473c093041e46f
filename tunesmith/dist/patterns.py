"""Module name patterns used by the parallel engines: `model.layers.{}`, `model.layers.{*}.mlp.experts`, `*.q_proj`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from torch import nn

from tunesmith.utils.errors import ConfigError


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Compile a module pattern: `{}`/`{*}` match one layer index, `*` matches any dotted run of names."""
    out = []
    for token in re.split(r"(\{\*?\}|\*)", pattern):
        if token in ("{}", "{*}"):
            out.append(r"\d+")
        elif token == "*":
            out.append(r".+")
        else:
            out.append(re.escape(token))
    return re.compile("".join(out) + r"\Z")


def match_modules(
    model: nn.Module, patterns: Sequence[str], key: str, *, required: bool = True
) -> list[tuple[str, nn.Module]]:
    """Modules of `model` whose qualified name matches one of `patterns`, in model order.

    Raises ConfigError naming `key` when a pattern matches nothing and `required` is set.
    """
    regexes = [(p, pattern_regex(p)) for p in patterns]
    found: list[tuple[str, nn.Module]] = []
    used: set[str] = set()
    for name, module in model.named_modules():
        hit = next((p for p, rx in regexes if name and rx.match(name)), None)
        if hit is not None:
            found.append((name, module))
            used.add(hit)
    missing = [p for p in patterns if p not in used]
    if required and missing:
        raise ConfigError(
            f"{key}: pattern {missing[0]!r} matches no module of {type(model).__name__}{_hint(model)}"
        )
    return found


def _hint(model: nn.Module) -> str:
    names = [n for n, _ in model.named_children()]
    return f" (top-level modules: {', '.join(names)})" if names else ""


def names_matching(names: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The names (e.g. parameter names) that match one of `patterns`."""
    regexes = [pattern_regex(p) for p in patterns]
    return [n for n in names if any(rx.match(n) for rx in regexes)]
