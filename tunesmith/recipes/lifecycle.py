"""Run lifecycle around the trainer: output_dir checks, resume, evaluation, best model, early stopping, signals."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from tunesmith.config import TunesmithConfig
from tunesmith.train.best_model import early_stopping_from
from tunesmith.train.callbacks import Callback
from tunesmith.train.checkpoint_find import check_output_dir, checkpoints, read_state, resolve_resume
from tunesmith.train.checkpoint_load import load_checkpoint
from tunesmith.train.control import EvalSaveControl
from tunesmith.train.evaluation import Evaluator, load_hook
from tunesmith.train.predict import predict
from tunesmith.train.signals import StopRequest
from tunesmith.train.trainer import Trainer
from tunesmith.utils import dist_env

logger = logging.getLogger("tunesmith")
LOG_FILE = "trainer_log.jsonl"


def prepare_output_dir(cfg: TunesmithConfig) -> Path | None:
    """Check `output_dir` (overwrite_output_dir), pick the checkpoint to resume from and drop the log lines the
    killed run wrote after it (they are trained again). Call before the reporter opens its files."""
    args = cfg.train
    check_output_dir(args)
    path = resolve_resume(args)
    if dist_env.rank() != 0:
        return path
    if path is not None:
        truncate_log(Path(args.output_dir) / LOG_FILE, read_state(path)["global_step"])
    elif args.overwrite_output_dir:
        clear_previous_run(Path(args.output_dir))
    return path


def clear_previous_run(output_dir: Path) -> None:
    """overwrite_output_dir on a fresh start: remove the previous run's checkpoints and step log, so that neither
    rotation nor a later `resume_from_checkpoint: auto` mixes the two runs."""
    old = [*checkpoints(output_dir), *output_dir.glob("checkpoint-*.tmp")]
    for folder in old:
        shutil.rmtree(folder)
    (output_dir / LOG_FILE).unlink(missing_ok=True)
    if old:
        logger.info(
            "overwrite_output_dir: removed %d checkpoints of the previous run in %s", len(old), output_dir
        )


def truncate_log(log: Path, step: int) -> None:
    """Keep only the lines of `log` up to optimizer step `step`."""
    if not log.is_file():
        return
    kept = [
        line
        for line in log.read_text().splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= step
    ]
    log.write_text("".join(line + "\n" for line in kept))


def lifecycle_callbacks(
    cfg: TunesmithConfig, eval_sets: dict[str, Any], tokenizer: Any, stop: StopRequest | None
) -> list[Callback]:
    """Evaluation/checkpoint control and, when asked, early stopping."""
    args = cfg.train
    evaluator = None
    if eval_sets and args.eval_strategy != "no" and args.do_eval is not False:
        sets = {name: ds.select_columns(["input_ids", "labels"]) for name, ds in eval_sets.items()}
        hook = load_hook(args.compute_metrics) if args.compute_metrics else None
        evaluator = Evaluator(sets, args, _pad_id(tokenizer), compute_metrics=hook)
    elif args.eval_strategy != "no":
        logger.warning(
            "eval_strategy %s but no evaluation data (eval_dataset or val_size): no evaluation",
            args.eval_strategy,
        )
    layout = (dist_env.rank(), dist_env.local_rank(), dist_env.world_size())
    callbacks: list[Callback] = [EvalSaveControl(args, evaluator, stop, *layout)]
    early = early_stopping_from(args)
    if early is not None:
        callbacks.append(early)
    return callbacks


def resume(trainer: Trainer, path: Path | None) -> None:
    """Restore `trainer` from checkpoint `path` (None: a fresh run)."""
    if path is not None:
        load_checkpoint(trainer, path, dist_env.rank())


def predict_after_training(
    cfg: TunesmithConfig, model: Any, tokenizer: Any, data: Any
) -> dict[str, float] | None:
    """After training (main process): `do_predict` evaluates the test split (`predict_loss`, ... in
    predict_results.json); `predict_with_generate` generates on the test split (do_predict) or the first eval set
    and writes generated_predictions.jsonl with BLEU/ROUGE scores."""
    args = cfg.train
    if dist_env.rank() != 0 or not (args.predict_with_generate or args.do_predict):
        return None
    test = data.test if args.do_predict and data.test is not None and len(data.test) else None
    rows = test if test is not None else next(iter(data.eval.values()), None)
    if rows is None:
        logger.warning("do_predict / predict_with_generate: no test or eval data to predict on")
        return None
    if args.predict_with_generate:
        result = predict(model, tokenizer, rows, args.output_dir, num_beams=cfg.data.eval_num_beams or 1)
    else:
        sets = {"test": rows.select_columns(["input_ids", "labels"])}
        result = Evaluator(sets, args, _pad_id(tokenizer), prefix="predict").evaluate(model)
        (Path(args.output_dir) / "predict_results.json").write_text(json.dumps(result, indent=2))
    logger.info("predictions in %s: %s", args.output_dir, result)
    return result


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
