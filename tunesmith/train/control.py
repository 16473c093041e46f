"""The callback that evaluates, tracks the best model, saves checkpoints and honours stop signals after each step."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.train import rng
from tunesmith.train.callbacks import Callback
from tunesmith.train.checkpoint import CheckpointSaver, trainer_state_dict
from tunesmith.train.checkpoint_find import PREFIX, STATE_FILE
from tunesmith.train.checkpoint_load import load_model_weights
from tunesmith.train.evaluation import Evaluator
from tunesmith.train.schedule_points import should_evaluate, should_save
from tunesmith.train.signals import StopRequest, TrainingInterrupted, interrupted_message

if TYPE_CHECKING:
    from tunesmith.train.trainer import Trainer

logger = logging.getLogger("tunesmith")


class EvalSaveControl(Callback):
    """After each optimizer step: evaluate when due, update the best model, save when due (or on a new best with
    `save_strategy: best`), and on SIGTERM/SIGINT save and stop. At the end, load the best model when asked."""

    def __init__(
        self,
        args: Any,
        evaluator: Evaluator | None = None,
        stop: StopRequest | None = None,
        rank: int = 0,
        local_rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.args, self.evaluator, self.stop = args, evaluator, stop
        self.saver = CheckpointSaver(args, rank, local_rank, world_size)

    def on_train_begin(self, trainer: Trainer) -> None:
        """`eval_on_start`: one evaluation before the first step."""
        if self.args.eval_on_start and self.evaluator is not None and trainer.state.global_step == 0:
            self.evaluate(trainer)

    def on_step_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """Evaluate, save, stop, as the arguments and signals say."""
        s, a, total = trainer.state, self.args, trainer.plan.max_steps
        epoch_end = trainer.epoch_length is not None and s.micro_batches_done == trainer.epoch_length
        improved = False
        if self.evaluator is not None and should_evaluate(s.global_step, epoch_end, s.epoch, a, total):
            improved = trainer.best.update(self.evaluate(trainer), s.global_step)
        save = should_save(s.global_step, epoch_end, s.epoch_index, a, total) or (
            a.save_strategy == "best" and improved
        )
        interrupted = self.stop is not None and self.stop.requested
        if save or interrupted:
            if improved:
                trainer.best.best_checkpoint = str(Path(a.output_dir) / f"{PREFIX}{s.global_step}")
            path = self.saver.save(trainer)
        if interrupted:
            self.saver.wait()
            raise TrainingInterrupted(interrupted_message(self.stop.signal, s.global_step, str(path)))

    def evaluate(self, trainer: Trainer) -> dict[str, float]:
        """Run the evaluator (random generators untouched), log its metrics and tell the callbacks."""
        with rng.preserved():
            metrics = self.evaluator.evaluate(trainer.model)
        step = trainer.state.global_step
        row = {"epoch": round(trainer.state.epoch, 4), **metrics}
        trainer.state.log_history.append({"step": step, **row})
        trainer.reporter.log(row, step)
        for cb in trainer.callbacks:
            hook = getattr(cb, "on_evaluate", None)
            if hook is not None:
                hook(trainer, metrics)
        return metrics

    def on_train_end(self, trainer: Trainer) -> None:
        """Finish background writes; write output_dir/trainer_state.json (the whole log history, which
        LLaMA-Factory-style plots read); `load_best_model_at_end`: load the best checkpoint's weights. `do_eval` with
        eval_strategy `no` evaluates once here, at the end (as HF's example scripts do)."""
        if self.evaluator is not None and self.args.eval_strategy == "no" and self.args.do_eval:
            self.evaluate(trainer)
        self.saver.wait()
        if self.saver.write_shared:
            state = json.dumps(trainer_state_dict(trainer), indent=2, default=str)
            (Path(self.args.output_dir) / STATE_FILE).write_text(state)
        best = trainer.best.best_checkpoint
        if self.args.load_best_model_at_end and best:
            load_model_weights(trainer, Path(best))
            logger.info(
                "loaded the best model (%s = %s at step %s) from %s",
                trainer.best.metric,
                trainer.best.best_metric,
                trainer.best.best_step,
                best,
            )
