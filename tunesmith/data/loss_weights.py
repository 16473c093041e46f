"""Per-token loss weights from ms-swift's weighted `loss_scale` schemes (`token_loss_weights`).

A scheme splits each answer's text into segments and gives each a weight; the segments are tokenized on their
own (as ms-swift tokenizes them) and every token carries its segment's weight. A weight of 0 takes the tokens out
of the loss (their label is ignored); the loss is the weighted sum of token cross-entropies over the step's valid
tokens (`tunesmith.train.loss`).

A rule maps patterns to weights, as ms-swift's loss_scale configs do:
- `[w_delimiter, w_content]` (two weights): the pattern is a literal delimiter; it gets the first weight and the
  text after it (up to the next delimiter) the second. Text before the first delimiter weighs 1.
- `[w]` (one weight, used when no key has two): the pattern is a regular expression; matching text weighs `w`,
  the rest 1 (a segment that starts with a match of a pattern takes that pattern's weight).
- `query` (agentflan): when a pattern occurs in the turn's user message, the whole answer weighs that weight.
Schemes chain with `+` (each splits the segments of the one before; weights multiply). Only the answer's
content is split: the template's end-of-answer tokens weigh 1, prompts too (when trained on).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunesmith.data.render import Piece
from tunesmith.utils.errors import ConfigError

Segment = tuple[str, float]

_REACT = {
    "Action:": (2.0, 2.0),
    "Action Input:": (2.0, 2.0),
    "Thought:": (1.0, 1.0),
    "Final Answer:": (1.0, 1.0),
    "Observation:": (2.0, 0.0),
}
_AGENT_ACTION = (1.0, 3.0)
BUILTIN: dict[str, dict[str, Any]] = {
    "react": {"response": _REACT},
    "alpha_umi": {"response": {**_REACT, "Next:": (2.0, 2.0)}},
    "qwen": {
        "response": {
            "✿FUNCTION✿:": (2.0, 2.0),
            "✿ARGS✿:": (2.0, 2.0),
            "✿RETURN✿:": (1.0, 1.0),
            "✿RESULT✿:": (2.0, 0.0),
        }
    },
    "hermes": {"response": {"<tool_call>.+?</tool_call>": (2.0,)}},
    "agentflan": {
        "response": {
            **{
                k: _AGENT_ACTION
                for k in (
                    "Name:",
                    "Action:",
                    "ACTION:",
                    "Tool:",
                    "Command",
                    "Arguments:",
                    "action input",
                    "ACTION_INPUT:",
                    "Action Input:",
                )
            },
            "Thought:": (1.0, 1.0),
            "Final Answer:": (1.0, 1.0),
            "Observation:": (2.0, 0.0),
        },
        "query": {
            "What is the tool you want to use": 3.0,
            "What are the required parameter names": 3.0,
            "What is the value of": 3.0,
            "What are the required parameter names for this tool": 3.0,
        },
    },
    "ignore_empty_think": {
        "response": {
            r"^<think>\s*</think>\s*": (0.0,),
            r"^<seed:think><seed:cot_budget_reflect>The current thinking budget is 0, so I will directly start "
            r"answering the question.</seed:cot_budget_reflect>\n</seed:think>\s*": (0.0,),
            r"^</think>\s*": (0.0,),
            r"^<\|channel>thought\n<channel\|>": (0.0,),
            r"^</mm:think>\s*": (0.0,),
        }
    },
    "ignore_think_prefix": {"response": {r"^<think>\n?": (0.0,)}},
}


@dataclasses.dataclass(frozen=True)
class Rule:
    """One scheme: answer patterns -> weights, and query patterns -> a weight for the whole answer."""

    response: Mapping[str, tuple[float, ...]]
    query: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def split(self, text: str, query: str | None) -> list[Segment]:
        """`text` as (segment, weight) pairs whose texts join back to `text`."""
        for pattern, weight in self.query.items():
            if query is not None and pattern in query:
                return [(text, weight)]
        literal = [k for k, v in self.response.items() if len(v) == 2]
        if literal:
            return self._split_literal(text, literal)
        return self._split_regex(text, list(self.response))

    def _split_literal(self, text: str, delimiters: list[str]) -> list[Segment]:
        pattern = re.compile("|".join(re.escape(d) for d in delimiters))
        out: list[Segment] = []
        start, key = 0, None
        for match in pattern.finditer(text):
            out += self._content(text[start : match.start()], key)
            key = match.group(0)
            out.append((key, self.response[key][0]))
            start = match.end()
        return out + self._content(text[start:], key)

    def _content(self, text: str, key: str | None) -> list[Segment]:
        if key is None:
            return [(text, 1.0)] if text else []
        return [(text, self.response[key][1])]

    def _split_regex(self, text: str, patterns: list[str]) -> list[Segment]:
        combined = re.compile("|".join(f"(?:{p})" for p in patterns), re.DOTALL)
        parts: list[str] = []
        start = 0
        for match in combined.finditer(text):
            parts += [text[start : match.start()], match.group(0)]
            start = match.end()
        parts.append(text[start:])
        return [(part, self._regex_weight(part, patterns)) for part in parts if part]

    def _regex_weight(self, part: str, patterns: list[str]) -> float:
        for p in patterns:
            if re.match(p, part, re.DOTALL):
                return self.response[p][0]
        return 1.0


@dataclasses.dataclass(frozen=True)
class WeightScheme:
    """Rules applied in turn (`hermes+ignore_empty_think`); `name` is what the config gave."""

    name: str
    rules: tuple[Rule, ...]

    def split(self, text: str, query: str | None = None) -> list[Segment]:
        """(segment, weight) pairs of an answer's text, the weights of chained rules multiplied."""
        segments: list[Segment] = [(text, 1.0)]
        for rule in self.rules:
            segments = [(s, w * v) for t, w in segments for s, v in rule.split(t, query)]
        return segments

    def fingerprint(self) -> str:
        """What the tokenized data depends on (for the data cache key)."""
        return repr(self.rules)


def parse_scheme(value: str) -> WeightScheme:
    """`react`, `hermes+ignore_empty_think`, or a JSON file of pattern -> weights (ms-swift's config layout)."""
    rules = []
    for part in value.split("+"):
        name = part.strip()
        if name in BUILTIN:
            rules.append(_rule(BUILTIN[name], name))
        elif name.endswith(".json"):
            rules.append(_rule(_read(name), name))
        else:
            raise ConfigError(
                f"token_loss_weights: {name!r} is neither a scheme ({', '.join(BUILTIN)}) nor a .json file of "
                "pattern -> weights; chain schemes with +"
            )
    return WeightScheme(value, tuple(rules))


def _read(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"token_loss_weights: no file {path}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"token_loss_weights: {path} is not JSON ({err})") from None


def _rule(spec: Mapping[str, Any], where: str) -> Rule:
    """A Rule from {pattern: [weights]} or {"response": {...}, "query": {...}}."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"token_loss_weights: {where} must map patterns to lists of weights")
    if "response" in spec and isinstance(spec["response"], Mapping):
        response, query = spec["response"], spec.get("query") or {}
    else:
        response, query = spec, {}
    rule = Rule(
        {str(k): _weights(v, where, k) for k, v in response.items()},
        {str(k): _weights(v, where, k, sizes=(1,))[0] for k, v in query.items()},
    )
    for pattern in rule.response:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ConfigError(
                f"token_loss_weights: {where}: pattern {pattern!r} is not a regex ({err})"
            ) from None
    return rule


def _weights(value: Any, where: str, key: str, sizes: tuple[int, ...] = (1, 2)) -> tuple[float, ...]:
    values = [value] if isinstance(value, int | float) and not isinstance(value, bool) else value
    ok = isinstance(values, list | tuple) and len(values) in sizes
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in values)
    if not ok:
        allowed = " or ".join(f"{n} weight(s)" for n in sizes)
        raise ConfigError(f"token_loss_weights: {where}: {key!r} needs {allowed} >= 0, got {value!r}")
    return tuple(float(v) for v in values)


def weigh_answer(
    pieces: list[Piece], tail: list[Piece], scheme: WeightScheme | None, query: str | None
) -> tuple[list[Piece], list[float]]:
    """An answer's pieces re-cut into the scheme's segments, with one weight per piece. The template's tail
    (end-of-turn tokens after the content) and token-id pieces weigh 1; no scheme: every piece weighs 1."""
    if scheme is None:
        return pieces, [1.0] * len(pieces)
    body, end = _strip_tail(pieces, tail)
    out: list[Piece] = []
    weights: list[float] = []
    for piece in body:
        for text, weight in [(piece, 1.0)] if isinstance(piece, int) else scheme.split(piece, query):
            out.append(text)
            weights.append(weight)
    return out + end, weights + [1.0] * len(end)


def _strip_tail(pieces: list[Piece], tail: list[Piece]) -> tuple[list[Piece], list[Piece]]:
    """(content pieces, tail pieces) when `pieces` end with `tail`, else (pieces, [])."""
    body, end = list(pieces), []
    for want in reversed(tail):
        have = body[-1] if body else None
        if isinstance(want, int) and have == want:
            end.insert(0, body.pop())
        elif isinstance(want, str) and isinstance(have, str) and have.endswith(want):
            body[-1] = have[: len(have) - len(want)]
            end.insert(0, want)
            if not body[-1]:
                body.pop()
        else:
            return list(pieces), []
    return body, end
