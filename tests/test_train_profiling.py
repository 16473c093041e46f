"""Profiling (MindSpeed's profile_* arguments) through the real recipe: the written Chrome trace holds exactly the
requested optimizer steps, each with its training ops, and the detail the level and flags ask for."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tunesmith.config import load_config
from tunesmith.recipes import common
from tunesmith.train.profiling import Profiler, build_profiler
from tunesmith.utils.errors import ConfigError

BASE = [
    "model_name_or_path=builtin:tiny",
    "dataset=demo",
    "dataset_dir=builtin:demo",
    "cutoff_len=64",
    "per_device_train_batch_size=2",
    "report_to=none",
    "save_strategy=no",
    "disable_tqdm=true",
]


def _train(tmp_path: Path, monkeypatch, *overrides: str, steps: int = 4) -> tuple[Path, list]:
    """Run the sft recipe with profiling overrides; returns the profile folder and the trainer's callbacks."""
    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    seen: list = []

    class SpyTrainer(common.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.extend(self.callbacks)

    monkeypatch.setattr(common, "Trainer", SpyTrainer)
    prof = tmp_path / "prof"
    cfg = load_config(
        None,
        [
            *BASE,
            f"max_steps={steps}",
            f"output_dir={tmp_path / 'out'}",
            f"profile_save_path={prof}",
            *overrides,
        ],
    )
    common.run_stage(cfg, "sft")
    return prof, seen


def _trace(path: Path) -> tuple[dict, list[dict]]:
    data = json.loads(path.read_text())
    return data, data["traceEvents"]


def _detail(data: dict) -> tuple[int, int, int]:
    """The trace's own record of (record_shapes, with_stack, profile_memory); absent means off."""
    return tuple(int(data.get(k, 0)) for k in ("record_shapes", "with_stack", "profile_memory"))


def _steps(events: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in events if e.get("name", "").startswith("ProfilerStep#")}


def _inside(step: dict, events: list[dict], name: str) -> list[dict]:
    lo, hi = step["ts"], step["ts"] + step["dur"]
    return [e for e in events if name in e.get("name", "") and lo <= e.get("ts", -1) <= hi]


def test_window_records_exactly_the_requested_steps(tmp_path, monkeypatch, caplog):
    with caplog.at_level("WARNING", logger="tunesmith"):
        prof, callbacks = _train(
            tmp_path, monkeypatch, "profile=true", "profile_step_start=1", "profile_step_end=3"
        )
    assert sum(isinstance(c, Profiler) for c in callbacks) == 1
    assert sorted(p.name for p in prof.iterdir()) == ["summary_rank0.txt", "trace_rank0_steps1-3.json"]
    data, events = _trace(prof / "trace_rank0_steps1-3.json")
    steps = _steps(events)
    assert sorted(steps) == ["ProfilerStep#1", "ProfilerStep#2"]
    for step in steps.values():  # each range is one whole optimizer step with its forward/backward
        assert len(_inside(step, events, "Optimizer.step#")) == 1
        assert _inside(step, events, "aten::mm") or _inside(step, events, "aten::addmm")
    # level0 without flags: op timings only
    assert _detail(data) == (0, 0, 0)
    assert not any("Input Dims" in e.get("args", {}) for e in events)
    summary = (prof / "summary_rank0.txt").read_text()
    assert "ProfilerStep*" in summary and "aten::" in summary
    if not torch.cuda.is_available():
        assert "CPU activity is recorded anyway because there is no accelerator" in caplog.text


def test_open_end_and_record_shapes(tmp_path, monkeypatch):
    prof, _ = _train(
        tmp_path, monkeypatch, "profile=true", "profile_step_start=2", "profile_record_shapes=true"
    )
    data, events = _trace(prof / "trace_rank0_steps2-4.json")  # end -1: to the last of the 4 steps
    assert sorted(_steps(events)) == ["ProfilerStep#2", "ProfilerStep#3"]
    assert any("Input Dims" in e.get("args", {}) for e in events)
    assert _detail(data) == (1, 0, 0)


def test_level2_adds_stacks_and_memory(tmp_path, monkeypatch, caplog):
    with caplog.at_level("WARNING", logger="tunesmith"):
        prof, _ = _train(
            tmp_path,
            monkeypatch,
            "profile=true",
            "profile_step_end=1",
            "profile_level=level2",
            "profile_data_simplification=true",
            steps=2,
        )
    data, events = _trace(prof / "trace_rank0_steps0-1.json")
    assert sorted(_steps(events)) == ["ProfilerStep#0"]
    assert _detail(data) == (1, 1, 1)
    assert any(e.get("name") == "[memory]" for e in events)
    assert any(e.get("cat") == "python_function" for e in events)
    assert "profile_data_simplification" in caplog.text and "no effect" in caplog.text


def test_unlisted_rank_records_nothing(tmp_path, monkeypatch, caplog):
    with caplog.at_level("WARNING", logger="tunesmith"):
        prof, callbacks = _train(tmp_path, monkeypatch, "profile=true", "profile_ranks=[1]", steps=2)
    assert not any(isinstance(c, Profiler) for c in callbacks)
    assert not prof.exists()
    assert "no rank records a profile" in caplog.text


def _cfg(*overrides: str):
    return load_config(None, ["model_name_or_path=builtin:tiny", *overrides], validate=False)


def test_profile_off_adds_no_callback():
    assert build_profiler(_cfg()) is None
    assert build_profiler(_cfg("profile_level=level2", "profile_export_type=db")) is None


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["profile_export_type=db"], "profile_export_type"),
        (["profile_step_start=3", "profile_step_end=3"], "profile_step_end"),
        (["profile_step_start=3", "profile_step_end=1"], "profile_step_end"),
        (["profile_ranks=[0,-2]"], "profile_ranks"),
    ],
)
def test_bad_settings_are_config_errors(overrides, key):
    """Checked with the config, before any model or data loads."""
    with pytest.raises(ConfigError, match=f"'{key}' \\(command line\\)"):
        load_config(None, ["model_name_or_path=builtin:tiny", "profile=true", *overrides])


def test_negative_start_is_rejected_at_load():
    with pytest.raises(ConfigError, match="profile_step_start"):
        _cfg("profile=true", "profile_step_start=-1")


def _drive(profiler: Profiler, steps: int, planned: int) -> SimpleNamespace:
    """Run `steps` fake optimizer steps (a matmul each) through the callback, as the trainer calls it."""
    trainer = SimpleNamespace(state=SimpleNamespace(global_step=0), plan=SimpleNamespace(max_steps=planned))
    x = torch.randn(32, 32)
    for _ in range(steps):
        x = torch.tanh(x @ x)
        trainer.state.global_step += 1
        profiler.on_step_end(trainer, {})
    return trainer


def test_window_never_reached_warns_and_writes_nothing(tmp_path, caplog):
    profiler = Profiler(10, None, tmp_path / "p")
    with caplog.at_level("WARNING", logger="tunesmith"):
        # 12 steps planned, but the data ran out after 9: warmed up for step 10, never recorded
        profiler.on_train_end(_drive(profiler, 9, planned=12))
    assert not (tmp_path / "p").exists() and profiler.paths == []
    assert "profile_step_start 10" in caplog.text and "nothing was profiled" in caplog.text


def test_abort_writes_the_steps_recorded_so_far(tmp_path):
    profiler = Profiler(1, 8, tmp_path / "p")
    trainer = _drive(profiler, 3, planned=10)  # steps 1 and 2 recorded, step 3 just opened
    note = profiler.on_abort(trainer, "non-finite loss")
    assert note is not None and str(tmp_path / "p") in note
    _, events = _trace(tmp_path / "p" / "trace_rank0_steps1-3.json")
    steps = _steps(events)
    assert all(len(_inside(steps[f"ProfilerStep#{k}"], events, "aten::mm")) == 1 for k in (1, 2))
    # the range opened for step 3, which never ran, holds no work
    assert set(steps) <= {"ProfilerStep#1", "ProfilerStep#2", "ProfilerStep#3"}
    assert "ProfilerStep#3" not in steps or not _inside(steps["ProfilerStep#3"], events, "aten::")
    profiler.on_train_end(trainer)  # already written: nothing more happens
    assert len(list((tmp_path / "p").iterdir())) == 2


def test_listed_rank_of_a_multi_process_job_records(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = _cfg("profile=true", "profile_ranks=[1]", "profile_step_end=2", f"profile_save_path={tmp_path}")
    profiler = build_profiler(cfg)
    assert profiler is not None and profiler.rank == 1
    profiler.on_train_end(_drive(profiler, 3, planned=3))
    _, events = _trace(tmp_path / "trace_rank1_steps0-2.json")
    assert sorted(_steps(events)) == ["ProfilerStep#0", "ProfilerStep#1"]
    assert (tmp_path / "summary_rank1.txt").exists()
    monkeypatch.setenv("RANK", "0")
    assert build_profiler(cfg) is None
