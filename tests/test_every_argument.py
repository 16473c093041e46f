"""Every argument takes effect somewhere, or is refused/obsolete with a message: none is only parsed."""

from __future__ import annotations

import re
from pathlib import Path

from tunesmith.config.schema import fields_by_name

PACKAGE = Path(__file__).resolve().parents[1] / "tunesmith"
# Files of the config layer that only declare or list arguments (their mention is not a use).
DECLARING = {"arguments", "catalog.py", "schema.py", "fields.py", "serialize.py", "loader.py", "sources.py"}
# Arguments with a single allowed value or a behaviour tunesmith always has, and why.
ALWAYS = {
    "dataloader_type": "only 'single' exists (choices), which is how the batcher reads",
    "eval_accumulation_steps": "evaluation moves each batch's outputs to the CPU at once, the most frugal setting",
}


def engine_source() -> str:
    parts = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).parts
        if rel[0] == "config" and (rel[1] in DECLARING):
            continue
        parts.append(path.read_text(encoding="utf-8"))
    return "\n".join(parts)


def test_every_argument_is_used_refused_or_obsolete():
    source = engine_source()
    unused = [
        name
        for name, entry in fields_by_name().items()
        if not entry.info.obsolete and name not in ALWAYS and not re.search(rf"\b{re.escape(name)}\b", source)
    ]
    assert unused == []
