"""Chat with a finished run's model from the board, through tunesmith.infer (loading, prompt template, generation).

The model of the last run chatted with stays loaded; one answer is generated at a time.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tunesmith.board import heavy
from tunesmith.utils.errors import DataError

MAX_NEW_TOKENS = 512  # the most one board answer may ask for
DEFAULT_NEW_TOKENS = 96


class ChatModels:
    """Loads a run's model on first use (keeping only the latest) and answers conversations with it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.path: Path | None = None
        self.loaded: Any = None

    def answer(self, run_dir: Path, messages: Any, max_new_tokens: Any = None) -> dict[str, Any]:
        """The assistant's reply to `messages` ([{role, content}], the last from the user)."""
        if not isinstance(messages, list) or not messages:
            raise DataError("chat: send messages as a list of {role, content}, the last from the user")
        tokens = _new_tokens(max_new_tokens)
        with self.lock:
            with heavy.LOCK:
                from tunesmith.infer.prompts import PromptBuilder
                from tunesmith.model.generation import decoding_from, generate, with_overrides

                loaded = self._load(run_dir)
            prompt = PromptBuilder(loaded.cfg, loaded.tokenizer).chat(messages)
            decoding = decoding_from(
                loaded.model, loaded.tokenizer, loaded.cfg.generation, int(loaded.cfg.train.seed)
            )
            result = generate(
                loaded.model, loaded.tokenizer, [prompt], with_overrides(decoding, max_new_tokens=tokens)
            )
        return {"role": "assistant", "content": result[0].text, "model": loaded.name}

    def _load(self, run_dir: Path) -> Any:
        if self.path != run_dir:
            from tunesmith.infer.loading import inference_config, load_for_inference

            self.loaded, self.path = None, None  # free the previous model first
            self.loaded = load_for_inference(inference_config(str(run_dir), []))
            self.path = run_dir
        return self.loaded


def _new_tokens(value: Any) -> int:
    if value is None:
        return DEFAULT_NEW_TOKENS
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_NEW_TOKENS:
        raise DataError(f"chat: max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS}")
    return value
