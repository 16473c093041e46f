"""Hooks into the training loop, and the built-in callback that saves the model when a run gives up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.model import save_pretrained_output

if TYPE_CHECKING:
    from tunesmith.train.trainer import Trainer


class Callback:
    """Hooks into the loop; override what you need. `on_abort` returns a note for the error (e.g. a saved path)."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first step (of this process: after a resume, the state is already restored)."""

    def on_step_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """After each optimizer step (metrics of that step, logged or not)."""

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """After an evaluation (its `eval_*` metrics)."""

    def on_abort(self, trainer: Trainer, reason: str) -> str | None:
        """Before the run stops on an error it detected."""
        return None

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last step."""


class SaveOnAbort(Callback):
    """Saves the model (or adapter) and tokenizer to `output_dir/checkpoint-<step>-aborted` when the loop gives up.

    `save(model, tokenizer, path)` does the writing; the default suits one process, the distributed recipe passes
    one that gathers a sharded model and writes from the main process."""

    def __init__(
        self, tokenizer: Any, output_dir: str | Path, save: Callable[..., None] | None = None
    ) -> None:
        self.tokenizer, self.output_dir = tokenizer, Path(output_dir)
        self.save = save or save_pretrained_output

    def on_abort(self, trainer: Trainer, reason: str) -> str:
        """Save and say where."""
        path = self.output_dir / f"checkpoint-{trainer.state.global_step}-aborted"
        self.save(trainer.model, self.tokenizer, path)
        return f"the model at that point was saved to {path}"
