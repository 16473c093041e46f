"""Checkpoint pieces on a tiny Qwen2 and the real Trainer: atomic writes (a SIGKILL mid-write leaves the previous
checkpoint in use), corrupt checkpoints, rotation with a hand-checkable metric sequence, best model, early
stopping, save_async snapshots, safe loading, save_only_model, pickled weights, output_dir checks, schedule points."""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import safetensors.torch
import torch
from helpers import tiny_model

from tunesmith.config import load_config
from tunesmith.data.batching import strategies
from tunesmith.data.batching.base import Batcher
from tunesmith.train import checkpoint as ckpt
from tunesmith.train import checkpoint_find as ckpt_find
from tunesmith.train import checkpoint_load as ckpt_load
from tunesmith.train import rng
from tunesmith.train.best_model import EarlyStopping
from tunesmith.train.control import EvalSaveControl
from tunesmith.train.schedule_points import should_evaluate, should_save
from tunesmith.train.trainer import Trainer
from tunesmith.utils.errors import ConfigError


def _batches(n: int = 12, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, 200, (2, 12), generator=g)
        out.append({"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)})
    return out


def _args(out: Path, *overrides: str):
    base = [
        "model_name_or_path=builtin:tiny",
        "max_steps=6",
        "learning_rate=1e-2",
        "logging_steps=1",
        "disable_tqdm=true",
        "report_to=none",
        f"output_dir={out}",
        "save_steps=1",
    ]
    return load_config(None, [*base, *overrides]).train


class ScriptedEval:
    """An evaluator returning a fixed sequence of eval_loss values (hand-checkable best/rotation)."""

    def __init__(self, losses: list[float]) -> None:
        self.losses = iter(losses)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        return {"eval_loss": next(self.losses)}


def _trainer(args, evaluator=None, extra=()) -> Trainer:
    control = EvalSaveControl(args, evaluator)
    return Trainer(tiny_model().train(), args, _batches(), callbacks=[control, *extra])


def _checkpoint_steps(out: Path) -> list[int]:
    return [int(p.name.split("-")[1]) for p in ckpt_find.checkpoints(out)]


# --- rotation, best model, load_best_model_at_end, early stopping -------------------------------------------------
def test_rotation_keeps_best_and_newest_and_loads_best_at_end(tmp_path):
    args = _args(
        tmp_path,
        "eval_strategy=steps",
        "eval_steps=1",
        "save_total_limit=2",
        "load_best_model_at_end=true",
    )
    # eval_loss by step: 1:3.0 2:2.0(best) 3:2.5 4:2.7 5:1.9(best) 6:2.2 -> kept: 5 (best) and 6 (newest)
    trainer = _trainer(args, ScriptedEval([3.0, 2.0, 2.5, 2.7, 1.9, 2.2]))
    seen: list[list[int]] = []
    trainer.callbacks.append(
        SimpleNamespace(**_hooks(on_step_end=lambda t, m: seen.append(_checkpoint_steps(tmp_path))))
    )
    trainer.train()
    assert seen == [[1], [1, 2], [2, 3], [2, 4], [4, 5], [5, 6]]
    state = ckpt_find.read_state(tmp_path / "checkpoint-6")
    assert state["best_metric"] == 1.9 and state["best_global_step"] == 5
    assert state["best_model_checkpoint"] == str(tmp_path / "checkpoint-5")
    best = safetensors.torch.load_file(tmp_path / "checkpoint-5" / "model.safetensors")
    last = safetensors.torch.load_file(tmp_path / "checkpoint-6" / "model.safetensors")
    model = trainer.model.state_dict()
    assert all(model[k].equal(v) for k, v in best.items())  # load_best_model_at_end
    assert not all(best[k].equal(v) for k, v in last.items())


def _hooks(**overrides):
    base = {
        "on_train_begin": lambda t: None,
        "on_step_end": lambda t, m: None,
        "on_train_end": lambda t: None,
    }
    return {**base, **overrides}


def test_save_strategy_best_saves_only_improvements(tmp_path):
    args = _args(
        tmp_path,
        "eval_strategy=steps",
        "eval_steps=1",
        "save_strategy=best",
        "metric_for_best_model=accuracy",
    )
    # accuracy (greater is better): 0.1 0.3 0.2 0.3 0.5 0.4 -> saves at 1, 2, 5
    metrics = iter([0.1, 0.3, 0.2, 0.3, 0.5, 0.4])
    evaluator = SimpleNamespace(evaluate=lambda model: {"eval_accuracy": next(metrics), "eval_loss": 1.0})
    _trainer(args, evaluator).train()
    assert _checkpoint_steps(tmp_path) == [1, 2, 5]


def test_early_stopping_patience_threshold_and_state(tmp_path):
    args = _args(tmp_path, "eval_strategy=steps", "eval_steps=1", "save_strategy=no", "max_steps=12")
    # patience 2, threshold 0.05: 3.0 -> 2.0 improves; 1.97 (gain 0.03 <= 0.05) and 1.99 do not -> stop at step 4
    early = EarlyStopping("eval_loss", greater_is_better=False, patience=2, threshold=0.05)
    trainer = _trainer(args, ScriptedEval([3.0, 2.0, 1.97, 1.99, 1.0, 1.0]), extra=[early])
    assert trainer.train().global_step == 4
    assert early.state_dict() == {"best": 2.0, "bad_evaluations": 2}


def test_eval_on_start_and_history(tmp_path):
    args = _args(tmp_path, "eval_strategy=steps", "eval_steps=3", "eval_on_start=true", "save_strategy=no")
    trainer = _trainer(args, ScriptedEval([5.0, 4.0, 3.0]))
    trainer.train()
    assert [(h["step"], h["eval_loss"]) for h in trainer.state.log_history if "eval_loss" in h] == [
        (0, 5.0),
        (3, 4.0),
        (6, 3.0),
    ]


# --- atomic write, corrupt and incomplete checkpoints -------------------------------------------------------------
KILL_SCRIPT = """
import sys, time, safetensors.torch
sys.path.insert(0, {tests!r})
from test_ckpt_units import _args, _trainer
from tunesmith.train import checkpoint as ckpt
from pathlib import Path
out = Path({out!r})
trainer = _trainer(_args(out, "max_steps=2", "save_strategy=no"))
trainer.train()
saver = ckpt.CheckpointSaver(trainer.args)
trainer.state.global_step = 1
saver.save(trainer)
real = safetensors.torch.save_file
def slow(*a, **k):
    real(*a, **k)
    print("WRITING", flush=True)
    time.sleep(60)
safetensors.torch.save_file = slow
trainer.state.global_step = 2
saver.save(trainer)
"""


def test_sigkill_during_checkpoint_write_leaves_previous_usable(tmp_path, caplog):
    out = tmp_path / "out"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "WRITING"  # in the middle of writing checkpoint-2
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (out / "checkpoint-2.tmp" / "model.safetensors").is_file()
    assert not (out / "checkpoint-2").exists()
    assert ckpt_find.find_resume_checkpoint(out) == out / "checkpoint-1"
    with pytest.raises(ConfigError, match="checkpoint-2.tmp is not a complete checkpoint"):
        ckpt_find.resolve_resume(_args(out, f"resume_from_checkpoint={out / 'checkpoint-2.tmp'}"))
    # a later checkpoint made incomplete (marker lost) or corrupt (truncated file) is skipped by auto with a warning
    for step, damage in ((3, "marker"), (4, "truncate")):
        copy = out / f"checkpoint-{step}"
        shutil.copytree(out / "checkpoint-1", copy)
        if damage == "marker":
            (copy / ckpt_find.MARKER).unlink()
        else:
            with (copy / "optimizer.pt").open("r+b") as f:
                f.truncate(10)
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        assert ckpt_find.resolve_resume(_args(out, "resume_from_checkpoint=auto")) == out / "checkpoint-1"
    assert "checkpoint-4: optimizer.pt is missing or has the wrong size" in caplog.text
    assert "checkpoint-3: no COMPLETE marker" in caplog.text
    with pytest.raises(ConfigError, match="corrupt"):
        ckpt_find.resolve_resume(_args(out, f"resume_from_checkpoint={out / 'checkpoint-4'}"))
    trainer = _trainer(_args(out, "max_steps=2", "save_strategy=no"))
    ckpt_load.load_checkpoint(trainer, out / "checkpoint-1")
    assert trainer.state.global_step == 1


# --- save_async: the files hold the state at the save step --------------------------------------------------------
def test_save_async_writes_state_of_save_step_while_training_continues(tmp_path, monkeypatch):
    args = _args(tmp_path, "save_async=true", "save_steps=2", "max_steps=4")
    real_write, events = ckpt.write_snapshot, []

    def slow_write(snap, final, write_shared=True):
        time.sleep(0.5)  # the training thread meanwhile runs the next steps
        events.append(("written", final.name, time.monotonic()))
        return real_write(snap, final, write_shared)

    monkeypatch.setattr(ckpt, "write_snapshot", slow_write)
    at_save: dict[str, torch.Tensor] = {}

    def record(trainer, metrics):
        events.append(("step", trainer.state.global_step, time.monotonic()))
        if trainer.state.global_step == 2:
            at_save.update({k: v.clone() for k, v in trainer.model.state_dict().items()})

    trainer = _trainer(args, extra=[SimpleNamespace(**_hooks(on_step_end=record))])
    trainer.callbacks.insert(0, trainer.callbacks.pop())  # record before the control callback saves
    trainer.train()
    written = next(t for kind, name, t in events if kind == "written" and name == "checkpoint-2")
    step3 = next(t for kind, step, t in events if kind == "step" and step == 3)
    assert step3 < written  # training went on while checkpoint-2 was being written
    saved = safetensors.torch.load_file(tmp_path / "checkpoint-2" / "model.safetensors")
    assert all(saved[k].equal(at_save[k]) for k in saved)
    final = trainer.model.state_dict()
    assert not all(saved[k].equal(final[k]) for k in saved)  # the model moved on; the files did not


# --- loading is safe; save_only_model; pickled weights ------------------------------------------------------------
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + str(Path(os.environ["EVIL_FLAG"])),))


def test_loading_never_runs_pickled_code(tmp_path, monkeypatch):
    trainer = _trainer(_args(tmp_path, "max_steps=1"))
    trainer.train()
    path = tmp_path / "checkpoint-1"
    flag = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_FLAG", str(flag))
    torch.save({"state": Evil(), "param_groups": []}, path / "optimizer.pt")
    ckpt._write_marker(path)  # even a "complete" checkpoint with a malicious file
    with pytest.raises(pickle.UnpicklingError):
        ckpt_load.load_checkpoint(_trainer(_args(tmp_path, "max_steps=1")), path)
    assert not flag.exists()


def test_save_only_model_and_pickled_weights(tmp_path):
    only = tmp_path / "only"
    _trainer(_args(only, "max_steps=1", "save_only_model=true")).train()
    files = sorted(p.name for p in (only / "checkpoint-1").iterdir())
    assert files == ["COMPLETE", "model.safetensors", "trainer_state.json"]
    with pytest.raises(ConfigError, match="save_only_model"):
        ckpt_load.load_checkpoint(_trainer(_args(only, "max_steps=1")), only / "checkpoint-1")
    pickled = tmp_path / "bin"
    trainer = _trainer(_args(pickled, "max_steps=1", "save_safetensors=false"))
    trainer.train()
    assert (pickled / "checkpoint-1" / "pytorch_model.bin").is_file()
    fresh = _trainer(_args(pickled, "max_steps=1"))
    ckpt_load.load_checkpoint(fresh, pickled / "checkpoint-1")
    assert all(fresh.model.state_dict()[k].equal(v) for k, v in trainer.model.state_dict().items())


def test_output_dir_with_checkpoints_needs_resume_or_overwrite(tmp_path):
    from tunesmith.recipes.output_dir import plan_output_dir

    def cfg(out, *extra):
        return load_config(None, ["model_name_or_path=builtin:tiny", f"output_dir={out}", *extra])

    (tmp_path / "checkpoint-3").mkdir()
    with pytest.raises(ConfigError, match="overwrite_output_dir"):
        plan_output_dir(cfg(tmp_path))
    assert plan_output_dir(cfg(tmp_path, "overwrite_output_dir=true")).aside == [tmp_path / "checkpoint-3"]
    assert plan_output_dir(cfg(tmp_path, "resume_from_checkpoint=auto")).resume is None
    assert plan_output_dir(cfg(tmp_path / "empty")).aside == []


def test_rng_capture_restore_round_trip_through_safe_load(tmp_path):
    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    torch.save(rng.capture(), tmp_path / "rng.pth")
    first = (torch.rand(3), random.random(), np.random.rand())
    rng.restore(torch.load(tmp_path / "rng.pth", weights_only=True))
    again = (torch.rand(3), random.random(), np.random.rand())
    assert first[0].equal(again[0]) and first[1:] == again[1:]
    state = rng.capture()
    expected = torch.rand(3)
    rng.restore(state)
    with rng.preserved():
        torch.rand(5), random.random()
    assert torch.rand(3).equal(expected)


# --- when to save and evaluate ------------------------------------------------------------------------------------
def test_schedule_points_match_transformers():
    a = SimpleNamespace(
        save_strategy="steps",
        save_steps=0.25,
        save_epochs=1,
        eval_strategy="steps",
        eval_steps=4,
        eval_delay=8,
        logging_steps=500,
    )
    assert [s for s in range(1, 11) if should_save(s, False, 0, a, 10)] == [
        3,
        6,
        9,
        10,
    ]  # ceil(2.5)=3, and last
    assert [s for s in range(1, 21) if should_evaluate(s, False, 0.0, a, 20)] == [8, 12, 16, 20]
    a.save_strategy, a.save_epochs = "epoch", 2
    assert [e for e in range(4) if should_save(5, True, e, a, 10)] == [1, 3]
    assert not should_save(5, False, 1, a, 10)
    a.eval_strategy, a.eval_delay = "epoch", 2
    assert [e for e in (1.0, 2.0, 3.0) if should_evaluate(5, True, e, a, 10)] == [2.0, 3.0]
    a.save_strategy = "no"
    assert not should_save(10, True, 0, a, 10)


@pytest.mark.parametrize("lora", [False, True])
def test_tied_and_adapter_weights_round_trip(tmp_path, lora):
    from peft import LoraConfig, get_peft_model

    def model():
        base = tiny_model(tie_word_embeddings=True).train()
        return get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])) if lora else base

    args = _args(tmp_path, "max_steps=2")
    trainer = Trainer(model(), args, _batches(), callbacks=[EvalSaveControl(args)])
    trainer.train()
    stored = safetensors.torch.load_file(tmp_path / "checkpoint-2" / "model.safetensors")
    assert all("lora_" in k for k in stored) if lora else "lm_head.weight" not in stored
    fresh = Trainer(model(), args, _batches(), callbacks=[])
    ckpt_load.load_checkpoint(fresh, tmp_path / "checkpoint-2")
    trained, loaded = trainer.model.state_dict(), fresh.model.state_dict()
    assert all(loaded[k].equal(v) for k, v in trained.items())
    assert fresh.optimizer.state_dict()["state"].keys() == trainer.optimizer.state_dict()["state"].keys()


def test_resume_from_epoch_end_checkpoint_is_exact(tmp_path):
    """save_strategy epoch at the end of epoch 1 of 2 (12 micro-batches, accumulation 2, dropout on)."""

    def trainer(out, *extra):
        args = _args(out, "max_steps=-1", "num_train_epochs=2", "gradient_accumulation_steps=2", *extra)
        model = tiny_model(attention_dropout=0.3).train()
        return Trainer(model, args, _batches(), callbacks=[EvalSaveControl(args)])

    torch.manual_seed(5)
    full = trainer(tmp_path / "a", "save_strategy=epoch")
    full.train()
    assert _checkpoint_steps(tmp_path / "a") == [6, 12]
    resumed = trainer(tmp_path / "b", "save_strategy=no")
    torch.manual_seed(99)  # the checkpoint's RNG state must win
    ckpt_load.load_checkpoint(resumed, tmp_path / "a" / "checkpoint-6")
    assert (resumed.state.epoch_index, resumed.state.micro_batches_done) == (1, 0)
    resumed.train()
    assert resumed.state.global_step == 12
    final = resumed.model.state_dict()
    assert all(final[k].equal(v) for k, v in full.model.state_dict().items())


def _data_batcher(strategy: str, world_size: int, micro_batch_size: int) -> Batcher:
    """Rank 0's batcher of 32 short random examples (no process group needed)."""
    rows = [[random.Random(i).randint(5, 200) for _ in range(4 + i % 9)] for i in range(32)]
    settings = strategies.BatchSettings(micro_batch_size=micro_batch_size, cutoff_len=16, pad_id=0)

    def fetch(indices: list[int]) -> list[dict[str, list[int]]]:
        return [{"input_ids": rows[i], "labels": rows[i]} for i in indices]

    plan = getattr(strategies, strategy)(settings)
    return Batcher(fetch, [len(r) for r in rows], plan, seed=1, world_size=world_size)


@pytest.mark.parametrize(("strategy", "maps"), [("normal", True), ("dynamic_padding_free", False)])
def test_resume_on_another_number_of_ranks_maps_or_restarts_the_data(tmp_path, caplog, strategy, maps):
    """Rank 0 of 2 (micro batch 2) checkpoints at step 2; 1 rank with micro batch 4 continues at its micro-batch
    2 when the groups are slices of one order, else (token budgets) the epoch's data order restarts."""
    args = _args(tmp_path, "max_steps=2", "save_steps=2")
    saved = Trainer(
        tiny_model().train(), args, _data_batcher(strategy, 2, 2), callbacks=[EvalSaveControl(args)]
    )
    saved.train()
    resumed = Trainer(tiny_model().train(), _args(tmp_path, "max_steps=4"), _data_batcher(strategy, 1, 4))
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        ckpt_load.load_checkpoint(resumed, tmp_path / "checkpoint-2")
    assert resumed.state.global_step == 2
    assert resumed.state.micro_batches_done == (2 if maps else 0)
    assert ("do not map onto this run's 1" in caplog.text) != maps
    reference = list(_data_batcher(strategy, 1, 4))[2 if maps else 0]
    resumed.batcher.set_epoch(0)
    assert all(torch.equal(v, reference[k]) for k, v in next(iter(resumed.batcher)).items())


def test_ignore_data_skip_and_callback_state_restore(tmp_path):
    early = EarlyStopping("eval_loss", False, patience=5)
    args = _args(tmp_path, "eval_strategy=steps", "eval_steps=1", "max_steps=3")
    _trainer(args, ScriptedEval([3.0, 2.0, 2.5]), extra=[early]).train()
    assert ckpt_find.read_state(tmp_path / "checkpoint-3")["stateful_callbacks"]["EarlyStopping"] == {
        "best": 2.0,
        "bad_evaluations": 1,
    }
    for restore, expected in (("false", None), ("true", 2.0)):
        fresh = EarlyStopping("eval_loss", False, patience=5)
        more = _args(
            tmp_path,
            "max_steps=6",
            f"restore_callback_states_from_checkpoint={restore}",
            "ignore_data_skip=true",
        )
        trainer = _trainer(more, extra=[fresh])
        ckpt_load.load_checkpoint(trainer, tmp_path / "checkpoint-3")
        assert fresh.best == expected
        assert trainer.state.global_step == 3 and trainer.state.micro_batches_done == 0  # epoch restarts


def test_output_dir_plan_cuts_log_on_resume_and_moves_aside_on_overwrite(tmp_path):
    from tunesmith.recipes.output_dir import claim_output_dir, plan_output_dir

    trainer = _trainer(_args(tmp_path, "max_steps=4", "save_steps=2"))
    trainer.train()
    log = tmp_path / "trainer_log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 5)))

    def cfg(*extra):
        return load_config(None, ["model_name_or_path=builtin:tiny", f"output_dir={tmp_path}", *extra])

    (tmp_path / "checkpoint-4" / ckpt_find.MARKER).unlink()  # killed before step 4's checkpoint completed
    plan = plan_output_dir(cfg("resume_from_checkpoint=auto"))
    assert plan.resume == tmp_path / "checkpoint-2" and plan.aside == [tmp_path / "checkpoint-4"]
    aside = claim_output_dir(plan)
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [1, 2]
    assert (aside / "checkpoint-4").is_dir()  # kept, not deleted
    plan = plan_output_dir(cfg("overwrite_output_dir=true"))
    assert plan.resume is None
    second = claim_output_dir(plan)
    assert ckpt_find.checkpoints(tmp_path) == [] and not log.exists()
    assert (second / "checkpoint-2" / ckpt_find.MARKER).is_file() and (second / "trainer_log.jsonl").is_file()
    assert not (second / aside.name).exists() and (aside / "checkpoint-4").is_dir()  # earlier asides stay
