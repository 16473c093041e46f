"""The `profile_*` arguments (MindSpeed-LLM's ProfilingArguments) driven through `torch.profiler`.

Steps are counted from 0 as in MindSpeed: step k is the (k+1)-th optimizer step, so `trainer.state.global_step`
after step k is k+1. Steps [profile_step_start, profile_step_end) are recorded (end -1: to the end of training) on
the ranks of `profile_ranks` ([-1]: all). The profiler is warmed up (initialised, not recording) during the step
before the window, so its start-up cost stays out of the first recorded step. Each recorded step is one
`ProfilerStep#<k>` range, as `torch.profiler`'s own schedule names them. A range opens when the previous step ends,
so a run that aborts inside the window leaves one empty range for the step that never ran (as `torch.profiler` does),
and with profile_step_start 0 the range of step 0 also covers the trainer's set-up (there is no hook before it).

`profile_level` -> `torch.profiler` detail (the `profile_with_*` / `profile_record_shapes` flags can only add):

| level      | records                                                                          |
| ---------- | -------------------------------------------------------------------------------- |
| level_none | host (CPU) op timings only, no accelerator kernels (torch_npu: no device data)   |
| level0     | op timings on the host and, when training on CUDA, the GPU kernels               |
| level1     | level0 + input shapes (`record_shapes`)                                          |
| level2     | level1 + Python call stacks (`with_stack`) + memory allocations (`profile_memory`) |

Without an accelerator level_none and level0 record the same.

Export `text` writes, per recording rank, `trace_rank{r}_steps{a}-{b}.json` (Chrome trace; open it in Perfetto or
chrome://tracing; `b` is excluded, like profile_step_end) and `summary_rank{r}.txt` (the `key_averages` table) to
`profile_save_path`. `db` is torch_npu's database export and does not exist here: it is a ConfigError.
`profile_data_simplification` is a torch_npu option and has no effect here (a warning says so).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from tunesmith.config import TunesmithConfig
from tunesmith.train.callbacks import Callback
from tunesmith.utils import dist_env

if TYPE_CHECKING:
    from tunesmith.train.trainer import Trainer

logger = logging.getLogger("tunesmith")

LEVELS = ("level_none", "level0", "level1", "level2")
SUMMARY_ROWS = 100


class Profiler(Callback):
    """Records optimizer steps [start, end) of this rank with `torch.profiler` and writes them to `save_dir`.

    `end` None records to the end of training. `activities`, `record_shapes`, `with_stack`, `profile_memory` are
    passed to `torch.profiler.profile`.
    """

    def __init__(
        self,
        start: int,
        end: int | None,
        save_dir: str | Path,
        *,
        rank: int = 0,
        activities: tuple[ProfilerActivity, ...] = (ProfilerActivity.CPU,),
        record_shapes: bool = False,
        with_stack: bool = False,
        profile_memory: bool = False,
    ) -> None:
        self.start, self.end, self.save_dir, self.rank = start, end, Path(save_dir), rank
        self.options = {
            "activities": list(activities),
            "record_shapes": record_shapes,
            "with_stack": with_stack,
            "profile_memory": profile_memory,
        }
        self.paths: list[Path] = []  # the files written
        self._prof: profile | None = None
        self._first: int | None = None  # first recorded step, once recording
        self._label: Any = None  # the open ProfilerStep#<k> range
        self._done = False
        self._boundary(0)

    # --- Callback hooks -------------------------------------------------------------------------------------------
    def on_step_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """Close the finished step's range; start, continue or finish the recording for the next step."""
        self._boundary(trainer.state.global_step, trainer.plan.max_steps)

    def on_train_end(self, trainer: Trainer) -> None:
        """Write what was recorded; warn when the window was never reached."""
        steps = trainer.state.global_step
        if self._first is not None and not self._done:
            self._finish(steps)
        elif not self._done:
            self._release()
            logger.warning(
                "profile_step_start %d: training ended after %d optimizer steps (steps 0-%d), so nothing was profiled",
                self.start,
                steps,
                steps - 1,
            )

    def on_abort(self, trainer: Trainer, reason: str) -> str | None:
        """Write the steps recorded so far."""
        if self._first is None or self._done:
            return None
        self._finish(trainer.state.global_step)
        return f"the profile recorded so far was written to {self.save_dir}"

    # --- recording ------------------------------------------------------------------------------------------------
    def _boundary(self, step: int, steps: int | None = None) -> None:
        """Between steps; `step` is the index of the step about to run, `steps` the planned number of steps."""
        self._close_label()
        if self._done:
            return
        if self._first is not None and not self._in_window(step, steps):
            self._finish(step)
            return
        if step == self.start - 1 and self._in_window(self.start, steps):
            self._prepare()  # warm-up: initialise during the step before the window
        if self._in_window(step, steps):
            self._begin(step)

    def _in_window(self, step: int, steps: int | None) -> bool:
        """Whether step `step` is recorded (never a step past the planned end)."""
        return step >= self.start and all(step < x for x in (self.end, steps) if x is not None)

    def _prepare(self) -> None:
        if self._prof is None:
            self._prof = profile(**self.options)
            self._prof.prepare_trace()

    def _begin(self, step: int) -> None:
        if self._first is None:
            self._prepare()
            self._prof.start_trace()
            self._first = step
        self._label = record_function(f"ProfilerStep#{step}")
        self._label.__enter__()

    def _close_label(self) -> None:
        if self._label is not None:
            self._label.__exit__(None, None, None)
            self._label = None

    def _release(self) -> None:
        """Shut down a profiler that was warmed up but never recorded."""
        if self._prof is not None:
            self._prof.start_trace()
            self._prof.stop_trace()
            self._prof = None
        self._done = True

    def _finish(self, end: int) -> None:
        self._close_label()
        self._prof.stop_trace()
        self._done = True
        self.save_dir.mkdir(parents=True, exist_ok=True)
        trace = self.save_dir / f"trace_rank{self.rank}_steps{self._first}-{end}.json"
        self._prof.export_chrome_trace(str(trace))
        summary = self.save_dir / f"summary_rank{self.rank}.txt"
        summary.write_text(self._summary(end), encoding="utf-8")
        self.paths = [trace, summary]
        logger.info(
            "profile of steps %d-%d (end excluded) written to %s and %s", self._first, end, trace, summary
        )

    def _summary(self, end: int) -> str:
        device = ProfilerActivity.CUDA in self.options["activities"]
        averages = self._prof.key_averages(group_by_input_shape=self.options["record_shapes"])
        table = averages.table(
            sort_by="self_device_time_total" if device else "self_cpu_time_total", row_limit=SUMMARY_ROWS
        )
        recorded = ", ".join(a.name for a in self.options["activities"])
        return f"rank {self.rank}, steps {self._first}-{end} (end excluded), activities {recorded}\n{table}\n"


# --- building from the config -----------------------------------------------------------------------------------
def build_profiler(cfg: TunesmithConfig) -> Profiler | None:
    """The profiler callback `cfg.profiling` asks for on this rank; None when `profile` is off or the rank is not
    listed in `profile_ranks` (the window, ranks and export type were checked with the config)."""
    p = cfg.profiling
    if not p.profile:
        return None
    rank = dist_env.rank()
    if -1 not in p.profile_ranks and rank not in p.profile_ranks:
        return None
    if p.profile_data_simplification:
        logger.warning(
            "%s: a torch_npu option; it has no effect with torch.profiler (the trace is not simplified)",
            cfg.where("profile_data_simplification"),
        )
    level = LEVELS.index(p.profile_level)
    return Profiler(
        p.profile_step_start,
        None if p.profile_step_end == -1 else p.profile_step_end,
        p.profile_save_path,
        rank=rank,
        activities=_activities(cfg, device=_uses_cuda(cfg) and level >= 1),
        record_shapes=p.profile_record_shapes or level >= 2,
        with_stack=p.profile_with_stack or level >= 3,
        profile_memory=p.profile_with_memory or level >= 3,
    )


def _uses_cuda(cfg: TunesmithConfig) -> bool:
    """Whether training runs on a GPU (the recipe moves the model to CUDA under the same condition)."""
    return torch.cuda.is_available() and not cfg.train.use_cpu


def _activities(cfg: TunesmithConfig, device: bool) -> tuple[ProfilerActivity, ...]:
    """CUDA when `device`; CPU when asked, or when nothing else would be recorded (with a warning then)."""
    if cfg.profiling.profile_with_cpu:
        return (ProfilerActivity.CPU, ProfilerActivity.CUDA) if device else (ProfilerActivity.CPU,)
    if device:
        return (ProfilerActivity.CUDA,)
    why = (
        "there is no accelerator"
        if not _uses_cuda(cfg)
        else "profile_level level_none records no GPU kernels"
    )
    logger.warning(
        "%s is false, but CPU activity is recorded anyway because %s (otherwise the profile would be empty)",
        cfg.where("profile_with_cpu"),
        why,
    )
    return (ProfilerActivity.CPU,)
