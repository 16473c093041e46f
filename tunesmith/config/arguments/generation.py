"""GenerationArguments: Generation, export and serving: decoding options, merge/export, chat, the API server."""

from __future__ import annotations

from dataclasses import dataclass



@dataclass
class GenerationArguments:
    """Generation, export and serving: decoding options, merge/export, chat, the API server."""
