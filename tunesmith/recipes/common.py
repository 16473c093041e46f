"""The wiring every stage shares: tokenizer -> datasets -> model -> batcher -> trainer -> saved outputs."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from tunesmith.config import TunesmithConfig
from tunesmith.config.serialize import save_config
from tunesmith.data.batching import build_batcher
from tunesmith.data.pipeline import build_datasets
from tunesmith.model import load_model, load_tokenizer, prepare_for_training
from tunesmith.recipes import distributed
from tunesmith.recipes.lifecycle import (
    evaluate_only,
    evaluation_only,
    lifecycle_callbacks,
    predict_after_training,
    resume,
)
from tunesmith.recipes.output_dir import OutputPlan, claim_output_dir, explained_failures, plan_output_dir
from tunesmith.report import build_reporter, plot_run
from tunesmith.report.secrets import scrub, secret_values
from tunesmith.train.callbacks import SaveOnAbort
from tunesmith.train.debug_overflow import debug_callbacks
from tunesmith.train.device import apply_cuda_defaults, bind_process_to_device, training_device
from tunesmith.train.method_callbacks import method_callbacks
from tunesmith.train.model_setup import seed_everything
from tunesmith.train.profiling import build_profiler
from tunesmith.train.signals import StopRequest, stop_on_signals
from tunesmith.train.trainer import Trainer, TrainState
from tunesmith.utils import dist_env
from tunesmith.utils.errors import ConfigError
from tunesmith.utils.logging import add_redaction, setup_logging
from tunesmith.utils.runlock import RunLock

logger = logging.getLogger("tunesmith")


def per_token_loss(cfg: TunesmithConfig) -> bool:
    """Normalise by the step's label tokens, unless the user explicitly set calculate_per_token_loss: false
    (MindSpeed's per-micro-batch averaging)."""
    return cfg.train.calculate_per_token_loss or not cfg.is_set("calculate_per_token_loss")


def reporter_for(cfg: TunesmithConfig) -> Any:
    """trainer_log.jsonl plus the `report_to` backends (on the main process; replicas log nothing)."""
    return build_reporter(cfg, cfg.train.output_dir, is_main=dist_env.rank() == 0)


@dataclasses.dataclass
class StageParts:
    """What a stage changes in the shared wiring; the defaults are the causal-LM ones of sft and pt.

    `prepare_data(cfg, data, model)` may add columns to the data bundle once the model is placed (reference
    log-probabilities); `objective(cfg, model)` gets the wrapped model and returns the trainer's loss (None: token
    cross-entropy);
    `evaluator(cfg, eval_sets, tokenizer, objective)` returns an object with `evaluate(model) -> metrics`."""

    load_model: Callable[[TunesmithConfig, Any], nn.Module] = load_model
    build_batcher: Callable[..., Any] = build_batcher
    prepare_data: Callable[[TunesmithConfig, Any, nn.Module], Any] | None = None
    objective: Callable[[TunesmithConfig, nn.Module], Any] | None = None
    evaluator: Callable[[TunesmithConfig, dict[str, Any], Any, Any], Any] | None = None
    callbacks: Callable[[TunesmithConfig], list[Any]] | None = None  # the stage's own trainer callbacks


def run_stage(cfg: TunesmithConfig, stage: str, parts: StageParts | None = None) -> TrainState:
    """Train `cfg` as stage `stage` in this process and save the model, tokenizer and resolved config."""
    if cfg.train.stage != stage:
        raise ConfigError(f"stage: the {stage} recipe was asked to run stage {cfg.train.stage!r}")
    distributed.apply_local_rank(cfg)
    setup_logging(cfg, dist_env.rank(), dist_env.local_rank())
    add_redaction(secret_values(cfg))  # from the first log line on, also data loading's
    lock = RunLock(cfg.train.output_dir) if dist_env.rank() == 0 else contextlib.nullcontext()
    with lock:  # held until this process exits the run, however it exits
        output = plan_output_dir(cfg)
        seed_everything(cfg.train)
        bind_process_to_device(training_device(cfg.train.use_cpu))  # before the process group
        run = distributed.start(cfg)
        try:
            return _train(cfg, run, output, parts or StageParts())
        finally:
            run.close()


def _evaluate_only(
    cfg: TunesmithConfig, model: nn.Module, tokenizer: Any, data: Any, parts: StageParts
) -> TrainState:
    """`do_train: false`: evaluate / predict the loaded model (see `lifecycle.evaluate_only`)."""
    objective = parts.objective(cfg, model) if parts.objective is not None else None
    make_evaluator = None
    if parts.evaluator is not None:
        make_evaluator = lambda sets: parts.evaluator(cfg, sets, tokenizer, objective)  # noqa: E731
    Path(cfg.train.output_dir).mkdir(parents=True, exist_ok=True)
    reporter = reporter_for(cfg)
    try:
        evaluate_only(cfg, model, tokenizer, data, reporter, make_evaluator)
    finally:
        reporter.close()
    return TrainState()


def _train(
    cfg: TunesmithConfig, run: distributed.DistRun, output: OutputPlan, parts: StageParts
) -> TrainState:
    tokenizer = load_tokenizer(cfg)
    with run.main_first(on_each_node=cfg.data.no_shared_storage):  # nodes without shared storage: each first
        data = build_datasets(cfg, tokenizer)
    model = prepare_for_training(parts.load_model(cfg, tokenizer), cfg)
    on_meta = any(p.is_meta for p in model.parameters())  # init_model_with_meta_device: filled after sharding
    device = training_device(cfg.train.use_cpu)
    if device.type == "cuda" and not (getattr(model, "is_quantized", False) or on_meta):
        model.to(device)
    apply_cuda_defaults(cfg, device)
    run, model = distributed.wrap(run, model, cfg)
    if parts.prepare_data is not None:
        data = parts.prepare_data(cfg, data, model)
    if evaluation_only(cfg):
        return _evaluate_only(cfg, model, tokenizer, data, parts)
    batcher = distributed.sequence_slices(
        run,
        parts.build_batcher(cfg, data.train, tokenizer, rank=run.dp_rank, world_size=run.dp_size),
        tokenizer,
    )
    objective = parts.objective(cfg, model) if parts.objective is not None else None
    make_evaluator = None
    if parts.evaluator is not None:
        make_evaluator = lambda sets: parts.evaluator(cfg, sets, tokenizer, objective)  # noqa: E731
    output_dir = cfg.train.output_dir
    stop = StopRequest(output_dir)
    claim_output_dir(output)  # config, data and model are good: only now move an earlier run aside
    trainer = Trainer(
        model,
        cfg.train,
        batcher,
        aux_loss_coef=cfg.model.router_aux_loss_coef,
        reporter=reporter_for(cfg),
        callbacks=[
            SaveOnAbort(tokenizer, output_dir, save=lambda m, tok, path: run.save_output(m, tok, cfg, path)),
            *[c for c in (build_profiler(cfg),) if c is not None],
            *method_callbacks(cfg),
            *lifecycle_callbacks(cfg, data.eval, tokenizer, stop, make_evaluator),
            *debug_callbacks(cfg.train),
            *(parts.callbacks(cfg) if parts.callbacks is not None else []),
        ],
        per_token_loss=per_token_loss(cfg),
        sync_group=run.sync_group,
        engine=distributed.engine_update(run, cfg),
        loss_fn=objective,
        methods=cfg.methods,
    )
    resume(trainer, output.resume, cfg.methods.resume_only_model)
    try:
        with stop_on_signals(stop), explained_failures(trainer, output_dir):
            state = trainer.train()
    finally:
        trainer.close()
    run.save_output(trainer.model, tokenizer, cfg)
    predict_after_training(cfg, trainer.model, tokenizer, data)
    if run.is_main(cfg.train.save_on_each_node):
        secrets = secret_values(cfg)
        save_config(cfg, Path(output_dir) / "tunesmith_config.yaml", lambda flat: scrub(flat, secrets))
    if dist_env.rank() == 0:
        logger.info("plots: %s", ", ".join(str(p) for p in plot_run(output_dir)))
    logger.info("trained %d steps; outputs in %s", state.global_step, output_dir)
    return state
