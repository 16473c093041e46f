"""The built-in templates, one module per family of layouts; each module's `TEMPLATES` is a tuple of
`SlotTemplate`s named as LLaMA-Factory's (MindSpeed-LLM's for `gpt`; `swift_*` for ms-swift's own layouts)."""

from __future__ import annotations

from tunesmith.data.template_catalog import chatml, inst, swift, tagged
from tunesmith.data.template_slots import SlotTemplate

TEMPLATES: tuple[SlotTemplate, ...] = (
    *inst.TEMPLATES,
    *chatml.TEMPLATES,
    *tagged.TEMPLATES,
    *swift.TEMPLATES,
)
