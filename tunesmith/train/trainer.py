"""The training loop: micro-batches grouped per optimizer step, one loss normalisation per step, clip, step, log.

Per optimizer step the token losses of all its micro-batches are summed and divided once by the number of valid
label tokens of the whole step (over all data-parallel ranks when `average_tokens_across_devices`), so gradient
accumulation equals one big batch (`per_token_loss=False`, chosen by an explicit `calculate_per_token_loss: false`,
averages per-micro-batch means instead, as MindSpeed/Megatron do by default). A step whose loss or gradient norm is not finite is skipped (the learning-rate
schedule still advances, since its data was consumed); after `max_bad_steps` such steps in a row the run stops.

Checkpointing, evaluation and distributed wrappers plug in through `TrainState` and `Callback` (callbacks.py);
backward, clipping and the optimizer step go through an update path (update.py): torch's, or an engine's such as
DeepSpeed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

from tunesmith.config.plan import StepPlan, step_plan
from tunesmith.model.adapter_variants import orth_regularizer
from tunesmith.report.jsonl import JsonlLog
from tunesmith.report.progress import Progress
from tunesmith.report.schedule import should_log
from tunesmith.train import model_setup
from tunesmith.train.best_model import BestModel
from tunesmith.train.callbacks import Callback
from tunesmith.train.device import peak_memory_mb, to_device
from tunesmith.train.loss import CausalLMLoss, unwrap, valid_tokens
from tunesmith.train.optimizers import build_optimizer
from tunesmith.train.precision import build_precision
from tunesmith.train.schedulers import build_plugin_scheduler, build_scheduler
from tunesmith.train.sft_losses import build_token_loss
from tunesmith.train.token_counts import input_tokens_mode, step_input_tokens, window_rates
from tunesmith.train.update import TorchUpdate
from tunesmith.utils.errors import ConfigError, DataError, TunesmithError

logger = logging.getLogger("tunesmith")
Batch = dict[str, torch.Tensor]
# builds the update path of an engine that owns backward and step (DeepSpeed) from the model, the optimizer the
# config asks for and the step plan; returns an object with TorchUpdate's interface (see update.py)
UpdateFactory = Callable[[torch.nn.Module, torch.optim.Optimizer, StepPlan], Any]


class TrainingAborted(TunesmithError):
    """Training stopped because it cannot make progress (e.g. repeated non-finite losses)."""


@dataclasses.dataclass
class TrainState:
    """Where the run is; what a checkpoint must save to resume exactly."""

    global_step: int = 0
    epoch: float = 0.0  # fractional: epoch index + share of the epoch's micro-batches consumed
    epoch_index: int = 0
    micro_batches_done: int = 0  # in the current epoch
    tokens_seen: int = 0  # valid label tokens trained on, all ranks
    input_tokens_seen: int = 0  # HF's num_input_tokens_seen: input tokens (all, or non_padding), all ranks
    bad_steps: int = 0  # consecutive steps with a non-finite loss or gradient
    log_history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _world() -> tuple[bool, int]:
    dist = torch.distributed
    on = dist.is_available() and dist.is_initialized()
    return on, dist.get_world_size() if on else 1


class Trainer:
    """Trains `model` on the micro-batches of `batcher` as the training arguments `args` (cfg.train) say.

    `batcher` is any iterable of micro-batch dicts with an exact `__len__` (and optionally `set_epoch`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: Any,
        batcher: Iterable[Batch],
        *,
        aux_loss_coef: float | None = None,
        reporter: Any = None,
        callbacks: Sequence[Callback] = (),
        max_bad_steps: int = 5,
        per_token_loss: bool = True,
        sync_group: Any = None,
        engine: UpdateFactory | None = None,
        loss_fn: Any = None,
        methods: Any = None,
    ) -> None:
        self.args, self.batcher = args, batcher
        self.device = next(model.parameters()).device
        # `loss_fn(model, micro_batch) -> (summed loss, aux)`; a stage's objective (train/losses) may also define
        # `units(micro_batch)` (what the step's loss is divided by: pairs, examples; default label tokens) and
        # `step_metrics(sync_group)` (metrics averaged over the step's units, logged as window means)
        # `methods` (cfg.methods) may pick the optimizer (optim_methods.py) and the SFT token loss (sft_losses.py)
        self.loss_fn = loss_fn or CausalLMLoss(
            args.label_smoothing_factor,
            args.chunk_loss_size,
            _aux_coef(model, aux_loss_coef),
            token_loss=build_token_loss(methods, model),
            regularizer=orth_regularizer(model),
        )
        self.reporter = reporter if reporter is not None else JsonlLog(args.output_dir)
        self.callbacks = list(callbacks)
        self.max_bad_steps = max_bad_steps
        self.per_token_loss = per_token_loss
        self.sync_group = sync_group  # data-parallel ranks summing tokens and losses; None: the whole world
        self.state = TrainState()
        self.best = BestModel(args.metric_for_best_model, args.greater_is_better)
        self.should_stop = False  # set by a callback (early stopping) to end training after this step
        # micro-batches per epoch on this rank; None for a stream
        self.epoch_length = len(batcher) if hasattr(batcher, "__len__") else None
        self.plan = self._plan()
        precision = build_precision(args, self.device)
        optimizer = build_optimizer(model, args, methods)
        if engine is None:
            self.update: Any = TorchUpdate(model, optimizer, precision, args.max_grad_norm)
        else:
            self.update = engine(model, optimizer, self.plan)
        self.model, self.optimizer, self.precision = (
            self.update.model,
            self.update.optimizer,
            self.update.precision,
        )
        self.scheduler = self._scheduler()
        self.split = 1  # each micro-batch is cut into this many pieces (auto_find_batch_size after an OOM)
        self._window: list[dict[str, Any]] = []

    def _plan(self) -> StepPlan:
        a = self.args
        if self.epoch_length is None and a.max_steps <= 0:
            raise ConfigError(
                "max_steps: must be set (> 0) when the training data is streamed (it has no length)"
            )
        return step_plan(
            self.epoch_length,
            a.gradient_accumulation_steps,
            a.num_train_epochs,
            a.max_steps,
            a.warmup_steps,
            a.warmup_ratio,
        )

    def _scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        a, total, warmup = self.args, self.plan.max_steps, self.plan.warmup_steps
        if a.lr_scheduler_config is not None:
            return build_plugin_scheduler(self.optimizer, a.lr_scheduler_config, warmup, total)
        return build_scheduler(
            self.optimizer,
            a.lr_scheduler_type,
            warmup,
            total,
            a.lr_scheduler_kwargs,
            a.learning_rate_end,
            a.power,
        )

    # --- the loop -------------------------------------------------------------------------------------------------
    def train(self) -> TrainState:
        """Run until `max_steps` (or the epochs) are done; returns the final state."""
        a = self.args
        model_setup.maybe_compile(self.model, a)
        on, _ = _world()
        main = not on or torch.distributed.get_rank() == 0
        progress = Progress(self.plan.max_steps, self.state.global_step, enabled=main and not a.disable_tqdm)
        self._start = time.perf_counter()
        for cb in self.callbacks:
            cb.on_train_begin(self)
        try:
            while (
                not self.should_stop
                and self.state.global_step < self.plan.max_steps
                and (self.epoch_length is None or self.state.epoch_index < self.plan.num_train_epochs)
            ):
                self._run_epoch(progress)  # a stream (no length) is re-read until max_steps, as in HF
        finally:
            progress.close()
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.state

    def _run_epoch(self, progress: Progress) -> None:
        s, ga, n = self.state, self.args.gradient_accumulation_steps, self.epoch_length
        if hasattr(self.batcher, "set_epoch"):
            self.batcher.set_epoch(s.epoch_index)
        batches, started, exhausted = iter(self.batcher), s.global_step, False
        while s.global_step < self.plan.max_steps and not exhausted and not self.should_stop:
            want = ga if n is None else min(ga, n - s.micro_batches_done)
            group = _take(batches, want, exact=n is not None)
            s.micro_batches_done += len(group)
            exhausted = len(group) < want or s.micro_batches_done == n
            if not group:
                break
            s.epoch = s.epoch_index + (s.micro_batches_done / n if n else 0.0)
            progress.update(self.optimizer_step(group))
        if s.global_step == started:
            raise DataError(
                "the training data gave no micro-batch in a whole epoch; check the dataset and batch size"
            )
        if exhausted:
            s.epoch_index, s.micro_batches_done = s.epoch_index + 1, 0

    def optimizer_step(self, group: list[Batch]) -> dict[str, Any]:
        """Forward/backward every micro-batch of one optimizer step, then clip, update, schedule and log."""
        self.model.train()
        group = [to_device(mb, self.device, self.args.dataloader_pin_memory) for mb in group]
        tokens, units = self._global_tokens(group)
        inputs = step_input_tokens(group, self.args, self._data_world()[0], self.sync_group)
        tick = time.perf_counter()
        loss = self._accumulate(group, units)
        lr = self.scheduler.get_last_lr()[0]
        grad_norm, finite = self.update.step(math.isfinite(loss))
        scaled = self.update.dynamic_loss_scale  # fp16: the scaler itself skips steps with inf/nan gradients
        self.scheduler.step()
        s = self.state
        s.global_step += 1
        s.tokens_seen += tokens
        s.input_tokens_seen += inputs
        seconds = max(time.perf_counter() - tick, 1e-9)
        metrics = {
            "epoch": round(s.epoch, 4),
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens": tokens,
            "input_tokens": inputs,
            "tokens_per_second": inputs / seconds,  # input tokens, as HF
            "label_tokens_per_second": tokens / seconds,
            "elapsed_s": round(time.perf_counter() - self._start, 3),
        }
        if (peak := peak_memory_mb(self.device)) is not None:
            metrics["peak_gpu_mb"] = peak
        if hasattr(self.loss_fn, "step_metrics"):
            metrics.update(self.loss_fn.step_metrics(self.sync_group))
        # fp16: an overflowing gradient with a finite loss is the scaler's business (it lowers the scale), not bad
        self._after_step(
            metrics, skipped=not finite, bad=not math.isfinite(loss) or (not finite and not scaled)
        )
        return metrics

    # --- loss and gradients ---------------------------------------------------------------------------------------
    def _units(self, mb: Batch) -> torch.Tensor:
        units = getattr(self.loss_fn, "units", None)
        return units(mb) if units is not None else valid_tokens(mb["labels"])

    def _global_tokens(self, group: list[Batch]) -> tuple[int, int]:
        """(label tokens, loss units) of the step; both summed over data-parallel ranks when
        `average_tokens_across_devices`. The units are the label tokens unless the loss counts its own."""
        count = torch.stack(
            [sum(valid_tokens(mb["labels"]) for mb in group), sum(self._units(mb) for mb in group)]
        )
        on, world = self._data_world()
        if on and self.args.average_tokens_across_devices:
            torch.distributed.all_reduce(count, group=self.sync_group)
        return int(count[0]), int(count[1])

    def _accumulate(self, group: list[Batch], tokens: int) -> float:
        while True:
            try:
                return self._forward_backward(group, tokens)
            except Exception as exc:
                if not (self.args.auto_find_batch_size and model_setup.is_out_of_memory(exc)):
                    raise
                self._halve_micro_batch(group, exc)

    def _halve_micro_batch(self, group: list[Batch], exc: BaseException) -> None:
        self.update.zero_grad()
        rows = max(mb["input_ids"].size(0) for mb in group)
        if rows <= self.split:
            raise TrainingAborted(f"out of memory with a micro batch of 1 row: {exc}") from exc
        self.split *= 2
        logger.warning(
            "out of memory; auto_find_batch_size: micro batch now %d rows", math.ceil(rows / self.split)
        )

    def _forward_backward(self, group: list[Batch], tokens: int) -> float:
        on, world = self._data_world()
        scale = world if on and self.args.average_tokens_across_devices and self.per_token_loss else 1
        pieces = [p for mb in group for p in _split(mb, self.split)]
        total = torch.zeros((), device=self.device)
        for i, piece in enumerate(pieces):
            with self.update.sync(last=i == len(pieces) - 1):
                with self.precision.autocast():
                    ce, aux = self.loss_fn(self.model, piece)
                denominator = tokens if self.per_token_loss else self._units(piece).item() * len(pieces)
                loss = ce * (scale / max(denominator, 1)) + aux / len(pieces)
                self.update.backward(loss)
            total += loss.detach()
        if on:  # every rank logs (and judges finiteness by) the same global loss
            torch.distributed.all_reduce(total, group=self.sync_group)
        return float(total) / world

    def _data_world(self) -> tuple[bool, int]:
        on, world = _world()
        return on, torch.distributed.get_world_size(self.sync_group) if on else world

    # --- after the step: bad-step accounting, logging, callbacks --------------------------------------------------
    def _after_step(self, metrics: dict[str, Any], skipped: bool, bad: bool) -> None:
        s = self.state
        s.bad_steps = s.bad_steps + 1 if bad else 0
        if skipped:
            metrics["skipped"] = True
            logger.warning(
                "step %d: non-finite loss %s or grad_norm %s; update skipped (%d in a row)",
                s.global_step,
                metrics["loss"],
                metrics["grad_norm"],
                s.bad_steps,
            )
        self._log(metrics)
        for cb in self.callbacks:
            cb.on_step_end(self, metrics)
        if s.bad_steps >= self.max_bad_steps:
            self._abort(metrics)
        if self.args.torch_empty_cache_steps and s.global_step % self.args.torch_empty_cache_steps == 0:
            model_setup.empty_cache(self.device)

    def _abort(self, metrics: dict[str, Any]) -> None:
        reason = (
            f"training stopped at step {self.state.global_step}: {self.state.bad_steps} optimizer steps in a row had a "
            f"non-finite loss or gradient (last loss {metrics['loss']}, grad_norm {metrics['grad_norm']})"
        )
        notes = [n for cb in self.callbacks if (n := cb.on_abort(self, reason))]
        hint = "lower learning_rate, set max_grad_norm, use bf16 instead of fp16, or check the data"
        raise TrainingAborted("; ".join([reason, *notes, hint]))

    def _log(self, metrics: dict[str, Any]) -> None:
        self._window.append(metrics)
        if not self._should_log():
            if self.args.logging_strategy == "no":
                self._window.clear()  # nothing will be logged: keep no history
            return
        window, self._window = self._window, []
        losses = [m["loss"] for m in window]
        if self.args.logging_nan_inf_filter:
            losses = [x for x in losses if math.isfinite(x)] or losses
        row = {
            **metrics,
            "loss": sum(losses) / len(losses),
            **{k: sum(m[k] for m in window) / len(window) for k in self._window_means(metrics)},
            "tokens": sum(m["tokens"] for m in window),
            **window_rates(window),
        }
        if input_tokens_mode(self.args) != "no":
            row["num_input_tokens_seen"] = self.state.input_tokens_seen
        self.state.log_history.append({"step": self.state.global_step, **row})
        self.reporter.log(row, self.state.global_step)

    def _window_means(self, metrics: dict[str, Any]) -> list[str]:
        """The loss's own metrics (rewards/..., logps/...), logged as means over the logging window."""
        names = getattr(self.loss_fn, "metric_names", ())
        return [k for k in names if k in metrics]

    def _should_log(self) -> bool:
        epoch_end = self.state.micro_batches_done == self.epoch_length
        return should_log(self.state.global_step, self.plan.max_steps, self.args, epoch_end=epoch_end)

    def close(self) -> None:
        """Close the reporter."""
        self.reporter.close()


def _take(batches: Iterator[Batch], count: int, exact: bool) -> list[Batch]:
    """The next `count` micro-batches; fewer only at the end of a stream (`exact` False)."""
    group = [b for _, b in zip(range(count), batches, strict=False)]
    if exact and len(group) < count:
        raise RuntimeError(
            f"the batcher yielded fewer micro-batches than its length says ({len(group)} < {count})"
        )
    return group


def _split(batch: Batch, parts: int) -> list[Batch]:
    """Cut a micro-batch into `parts` row groups (fewer when it has fewer rows)."""
    if parts == 1:
        return [batch]
    rows = batch["input_ids"].size(0)
    size = math.ceil(rows / min(parts, rows))
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, rows, size)]


def _aux_coef(model: torch.nn.Module, coef: float | None) -> float:
    """The router aux-loss coefficient: the given one, else the model config's when it outputs router logits."""
    if coef is not None:
        return coef
    config = getattr(unwrap(model), "config", None)
    if config is not None and getattr(config, "output_router_logits", False):
        return float(getattr(config, "router_aux_loss_coef", 0.0))
    return 0.0
