"""Run lifecycle around the trainer: resume, evaluation, best model, early stopping, predictions."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import TunesmithConfig
from tunesmith.train.best_model import early_stopping_from
from tunesmith.train.callbacks import Callback
from tunesmith.train.checkpoint_load import load_checkpoint, load_model_weights
from tunesmith.train.control import EvalSaveControl
from tunesmith.train.evaluation import Evaluator, load_hook
from tunesmith.train.predict import predict, prediction_decoding
from tunesmith.train.signals import StopRequest
from tunesmith.train.trainer import Trainer
from tunesmith.utils import dist_env
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")


def lifecycle_callbacks(
    cfg: TunesmithConfig,
    eval_sets: dict[str, Any],
    tokenizer: Any,
    stop: StopRequest | None,
    make_evaluator: Callable[[dict[str, Any]], Any] | None = None,
) -> list[Callback]:
    """Evaluation/checkpoint control and, when asked, early stopping; `make_evaluator(eval_sets)` replaces the
    token-loss evaluator (a preference stage's)."""
    args = cfg.train
    evaluator = None
    if args.eval_strategy != "no" or args.do_eval:  # do_eval alone: evaluate at the end, as HF scripts do
        evaluator = build_evaluator(cfg, eval_sets, tokenizer, make_evaluator)
    layout = (dist_env.rank(), dist_env.local_rank(), dist_env.world_size())
    callbacks: list[Callback] = [EvalSaveControl(args, evaluator, stop, *layout)]
    early = early_stopping_from(args)
    if early is not None:
        callbacks.append(early)
    return callbacks


def build_evaluator(
    cfg: TunesmithConfig,
    eval_sets: dict[str, Any],
    tokenizer: Any,
    make_evaluator: Callable[[dict[str, Any]], Any] | None = None,
) -> Any:
    """The evaluator of `eval_sets` (a stage's own through `make_evaluator`), or None when evaluation is off
    (`do_eval: false`) or there is no evaluation data (then with a warning)."""
    args = cfg.train
    if args.do_eval is False:
        return None
    if not eval_sets:
        logger.warning(
            "eval_strategy %s / do_eval %s but no evaluation data (eval_dataset or val_size): no evaluation",
            args.eval_strategy,
            args.do_eval,
        )
        return None
    if make_evaluator is not None:
        return make_evaluator(eval_sets)
    sets = {name: ds.select_columns(["input_ids", "labels"]) for name, ds in eval_sets.items()}
    hook = load_hook(args.compute_metrics) if args.compute_metrics else None
    return Evaluator(sets, args, _pad_id(tokenizer), compute_metrics=hook)


def evaluation_only(cfg: TunesmithConfig) -> bool:
    """Evaluate and/or predict the loaded model instead of training it (see TunesmithConfig.evaluation_only)."""
    return cfg.evaluation_only()


def evaluate_only(
    cfg: TunesmithConfig,
    model: Any,
    tokenizer: Any,
    data: Any,
    reporter: Any,
    make_evaluator: Callable[[dict[str, Any]], Any] | None = None,
) -> dict[str, float]:
    """`do_train: false`: `do_eval` evaluates the loaded model on the eval sets (eval_results.json), `do_predict`
    / `predict_with_generate` predict as after training; nothing is trained or saved."""
    args = cfg.train
    metrics: dict[str, float] = {}
    if args.do_eval:
        evaluator = build_evaluator(cfg, data.eval, tokenizer, make_evaluator)
        if evaluator is None:
            raise ConfigError(
                "do_eval: do_train is false but there is no evaluation data (eval_dataset or val_size)"
            )
        metrics = evaluator.evaluate(model)
        reporter.log(metrics, 0)
        if dist_env.rank() == 0:
            (Path(args.output_dir) / "eval_results.json").write_text(json.dumps(metrics, indent=2))
        logger.info("evaluation of the loaded model: %s", metrics)
    metrics.update(predict_after_training(cfg, model, tokenizer, data) or {})
    return metrics


def resume(trainer: Trainer, path: Path | None, only_model: bool = False) -> None:
    """Restore `trainer` from checkpoint `path` (None: a fresh run); `only_model` (resume_only_model): only its
    weights, the run itself starts fresh."""
    if path is not None and only_model:
        logger.info(
            "resume_only_model: loading the weights of %s; optimizer, schedule and steps start fresh", path
        )
        load_model_weights(trainer, path)
    elif path is not None:
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
        result = predict(
            model, tokenizer, rows, args.output_dir, decoding=prediction_decoding(model, tokenizer, cfg)
        )
    else:
        sets = {"test": rows.select_columns(["input_ids", "labels"])}
        result = Evaluator(sets, args, _pad_id(tokenizer), prefix="predict").evaluate(model)
        (Path(args.output_dir) / "predict_results.json").write_text(json.dumps(result, indent=2))
    logger.info("predictions in %s: %s", args.output_dir, result)
    return result


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
