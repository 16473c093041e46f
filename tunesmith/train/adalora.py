"""AdaLoRA's rank budget during training: the run's length becomes the schedule's total, and after every optimizer
step (before the gradients are dropped) peft's `update_and_allocate` scores and prunes the ranks, as
transformers.Trainer users call it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunesmith.train.callbacks import Callback
from tunesmith.utils.errors import ConfigError

if TYPE_CHECKING:
    from tunesmith.train.trainer import Trainer


class AdaLoraBudget(Callback):
    """Sets total_step and hooks `update_and_allocate` after each optimizer step."""

    def on_train_begin(self, trainer: Trainer) -> None:
        peft_model = getattr(trainer.model, "module", trainer.model)  # through DDP
        config = peft_model.peft_config["default"]
        total = trainer.plan.max_steps
        if config.tinit >= total - config.tfinal:
            raise ConfigError(
                f"adalora_tinit ({config.tinit}) + adalora_tfinal ({config.tfinal}) leave no budgeting phase in "
                f"{total} steps; lower them or train longer"
            )
        peft_model.base_model.rankallocator.set_total_step(total)
        tuner = peft_model.base_model

        def allocate(_optimizer: Any, _args: Any, _kwargs: Any) -> None:
            tuner.update_and_allocate(trainer.state.global_step)

        trainer.optimizer.register_step_post_hook(allocate)


def build_adalora_budget(cfg: Any) -> AdaLoraBudget | None:
    """The budget callback for finetuning_type adalora."""
    return AdaLoraBudget() if cfg.model.finetuning_type == "adalora" else None
