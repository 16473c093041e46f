"""The loop: accumulation equals one big batch, non-finite steps are skipped then abort, OOM halves the micro batch,
logging writes trainer_log.jsonl, mixed precision runs."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_model

from tunesmith.config import load_config
from tunesmith.train.callbacks import Callback, SaveOnAbort
from tunesmith.train.trainer import Trainer, TrainingAborted


def make_args(tmp_path, *overrides: str):
    base = [f"output_dir={tmp_path}", "logging_steps=1", "disable_tqdm=true", "learning_rate=1e-3"]
    return load_config(None, [*base, *overrides], validate=False).train


def rows(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Rows of varying length and supervised share (so micro-batches carry uneven token counts)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = 8 + (i * 5) % 17
        ids = torch.randint(3, 400, (length,), generator=g)
        labels = ids.clone()
        labels[: 2 + i % 6] = -100
        out.append({"input_ids": ids, "labels": labels})
    return out


def collate(chunk: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in chunk)
    batch = {"input_ids": torch.zeros(len(chunk), width, dtype=torch.long)}
    batch["labels"] = torch.full_like(batch["input_ids"], -100)
    batch["attention_mask"] = torch.zeros_like(batch["input_ids"])
    for i, r in enumerate(chunk):
        n = len(r["input_ids"])
        batch["input_ids"][i, :n], batch["labels"][i, :n], batch["attention_mask"][i, :n] = (
            r["input_ids"],
            r["labels"],
            1,
        )
    return batch


def batches(data, micro: int):
    return [collate(data[i : i + micro]) for i in range(0, len(data), micro)]


def one_step_delta(tmp_path, micro: int, ga: int) -> tuple[dict[str, torch.Tensor], dict]:
    """Parameter change of one plain-SGD step with lr 1 and no clipping: exactly minus the gradient."""
    model = tiny_model("llama")
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = make_args(
        tmp_path,
        "optim=sgd",
        "learning_rate=1.0",
        "max_grad_norm=0",
        f"gradient_accumulation_steps={ga}",
        "max_steps=1",
        "lr_scheduler_type=constant",
    )
    state = Trainer(model, args, batches(rows(8), micro)).train()
    return {n: start[n] - p.detach() for n, p in model.named_parameters()}, state.log_history[0]


def test_accumulation_equals_one_big_batch(tmp_path):
    big, big_log = one_step_delta(tmp_path / "a", micro=8, ga=1)
    acc, acc_log = one_step_delta(tmp_path / "b", micro=2, ga=4)
    assert acc_log["tokens"] == big_log["tokens"]
    assert acc_log["loss"] == pytest.approx(big_log["loss"], rel=1e-6)
    assert acc_log["grad_norm"] == pytest.approx(big_log["grad_norm"], rel=1e-5)
    for name, g in big.items():
        assert g.abs().sum() > 0 or "embed" in name
        torch.testing.assert_close(acc[name], g, rtol=1e-4, atol=1e-7, msg=name)


def test_per_micro_batch_mean_mode_differs(tmp_path):
    """calculate_per_token_loss explicitly false: Megatron's per-micro-batch means (kept only on request)."""
    data = batches(rows(8), 2)
    logs = []
    for per_token in (True, False):
        args = make_args(tmp_path / str(per_token), "gradient_accumulation_steps=4", "max_steps=1")
        logs.append(Trainer(tiny_model("llama"), args, data, per_token_loss=per_token).train().log_history[0])
    means = []
    model = tiny_model("llama")
    for b in data:
        means.append(float(model(**b).loss))
    assert logs[1]["loss"] == pytest.approx(sum(means) / 4, rel=1e-5)
    assert logs[0]["loss"] != pytest.approx(logs[1]["loss"], rel=1e-4)


class Poison:
    """Forward hook on the LM head that turns logits into NaN on chosen calls."""

    def __init__(self, bad_calls: set[int]):
        self.calls, self.bad = 0, bad_calls

    def __call__(self, module, args, output):
        self.calls += 1
        return output * float("nan") if self.calls in self.bad else output


class Recorder(Callback):
    def __init__(self):
        self.aborted = None

    def on_abort(self, trainer, reason):
        self.aborted = reason
        return "checkpoint saved to /somewhere/checkpoint-abort"


def test_non_finite_step_is_skipped_and_logged(tmp_path):
    model = tiny_model("llama")
    model.lm_head.register_forward_hook(Poison({2}))
    snapshots = []

    class Snap(Callback):
        def on_step_end(self, trainer, metrics):
            snapshots.append(model.lm_head.weight.detach().clone())

    state = Trainer(
        model, make_args(tmp_path, "max_steps=3"), batches(rows(6), 2), callbacks=[Snap()]
    ).train()
    log = [json.loads(line) for line in (tmp_path / "trainer_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert log[1]["skipped"] is True and log[1]["loss"] is None  # NaN written as null
    assert "skipped" not in log[0] and "skipped" not in log[2]
    assert torch.equal(snapshots[0], snapshots[1])  # the bad step changed nothing
    assert not torch.equal(snapshots[1], snapshots[2])
    assert state.bad_steps == 0


def test_consecutive_bad_steps_stop_with_message(tmp_path):
    model = tiny_model("llama")
    model.lm_head.register_forward_hook(Poison(set(range(2, 100))))
    recorder = Recorder()
    trainer = Trainer(
        model,
        make_args(tmp_path, "max_steps=10"),
        batches(rows(20), 2),
        callbacks=[recorder],
        max_bad_steps=3,
    )
    with pytest.raises(TrainingAborted, match=r"step 4: 3 optimizer steps in a row .*checkpoint saved to"):
        trainer.train()
    assert trainer.state.global_step == 4 and recorder.aborted


def test_abort_saves_a_loadable_model(tmp_path, tokenizer):
    from transformers import AutoModelForCausalLM

    model = tiny_model("llama")
    model.lm_head.register_forward_hook(Poison(set(range(1, 100))))
    args = make_args(tmp_path, "max_steps=10")
    trainer = Trainer(
        model, args, batches(rows(20), 2), callbacks=[SaveOnAbort(tokenizer, tmp_path)], max_bad_steps=2
    )
    with pytest.raises(TrainingAborted, match="saved to .*checkpoint-2-aborted"):
        trainer.train()
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoint-2-aborted")
    assert torch.equal(saved.model.embed_tokens.weight, model.model.embed_tokens.weight)


class OOMAbove(torch.nn.Module):
    """Wraps a model; raises an out-of-memory error for micro-batches of more than `limit` rows."""

    def __init__(self, model, limit):
        super().__init__()
        self.inner, self.limit, self.config = model, limit, model.config

    def forward(self, input_ids, **kw):
        if input_ids.size(0) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(input_ids=input_ids, **kw)


def test_auto_find_batch_size_halves_and_matches(tmp_path):
    data = batches(rows(16), 8)
    ref = Trainer(tiny_model("llama"), make_args(tmp_path / "r", "max_steps=2"), data).train().log_history
    args = make_args(tmp_path / "o", "max_steps=2", "auto_find_batch_size=true")
    trainer = Trainer(OOMAbove(tiny_model("llama"), 2), args, data)
    got = trainer.train().log_history
    assert trainer.split == 4
    for a, b in zip(got, ref, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    without = Trainer(OOMAbove(tiny_model("llama"), 2), make_args(tmp_path / "n", "max_steps=2"), data)
    with pytest.raises(torch.OutOfMemoryError):
        without.train()


def test_logging_window_and_fields(tmp_path):
    args = make_args(tmp_path, "max_steps=4", "logging_steps=2", "gradient_accumulation_steps=2")
    state = Trainer(tiny_model("qwen2"), args, batches(rows(16), 2)).train()
    log = [json.loads(line) for line in (tmp_path / "trainer_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    for field in ("step", "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_second", "elapsed_s"):
        assert all(field in r for r in log), field
    assert log[-1]["epoch"] == pytest.approx(1.0)
    assert state.tokens_seen == sum(r["tokens"] for r in log)


def test_epochs_and_remainder_step(tmp_path):
    """7 micro-batches, GA 3: steps of 3, 3 and 1 micro-batches per epoch, as transformers.Trainer does."""
    data = batches(rows(14), 2)
    args = make_args(tmp_path, "gradient_accumulation_steps=3", "num_train_epochs=2")
    trainer = Trainer(tiny_model("llama"), args, data)
    state = trainer.train()
    assert state.global_step == 6 and trainer.plan.update_steps_per_epoch == 3
    per_batch = [int((b["labels"][:, 1:] != -100).sum()) for b in data]
    expected = [sum(per_batch[0:3]), sum(per_batch[3:6]), per_batch[6]] * 2
    assert [r["tokens"] for r in state.log_history] == expected


@pytest.mark.parametrize("flag", ["bf16", "fp16"])
def test_mixed_precision_trains(tmp_path, flag):
    args = make_args(tmp_path, f"{flag}=true", "max_steps=6", "learning_rate=5e-3")
    data = batches(rows(4), 4) * 6
    trainer = Trainer(tiny_model("llama"), args, data)
    assert trainer.precision.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[flag]
    assert (trainer.precision.scaler is not None) == (flag == "fp16")
    history = trainer.train().log_history
    assert history[-1]["loss"] < history[0]["loss"]


def test_torch_compile_backend_is_used_and_matches(tmp_path):
    from torch._dynamo import register_backend

    graphs = []

    @register_backend(name="tunesmith_test_counting")
    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    data = batches(rows(6), 2)
    ref = Trainer(tiny_model("llama"), make_args(tmp_path / "r", "max_steps=3"), data).train().log_history
    args = make_args(tmp_path / "c", "max_steps=3", "torch_compile_backend=tunesmith_test_counting")
    got = Trainer(tiny_model("llama"), args, data).train().log_history
    assert graphs  # the model really went through torch.compile with the chosen backend
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in ref], rel=1e-5)


def test_seed_makes_dropout_runs_repeatable(tmp_path):
    from tunesmith.train.model_setup import seed_everything

    def run(seed: int, name: str) -> list[float]:
        args = make_args(tmp_path / name, "max_steps=3", f"seed={seed}")
        seed_everything(args)
        model = tiny_model("llama", attention_dropout=0.3)
        return [r["loss"] for r in Trainer(model, args, batches(rows(6), 2)).train().log_history]

    assert run(1, "a") == run(1, "b")
    assert run(1, "c") != run(2, "d")


class Stream:
    """An iterable without a length (a streamed dataset's batcher)."""

    def __init__(self, data):
        self.data = data

    def __iter__(self):
        return iter(self.data)


def test_stream_without_length_runs_to_max_steps(tmp_path):
    data = batches(rows(10), 2)  # 5 micro-batches per pass
    args = make_args(tmp_path, "max_steps=4", "gradient_accumulation_steps=2")
    state = Trainer(tiny_model("llama"), args, Stream(data)).train()
    assert state.global_step == 4 and state.epoch_index == 1  # re-read the stream once, as HF does
    per_batch = [int((b["labels"][:, 1:] != -100).sum()) for b in data]
    expected = [
        per_batch[0] + per_batch[1],
        per_batch[2] + per_batch[3],
        per_batch[4],
        per_batch[0] + per_batch[1],
    ]
    assert [r["tokens"] for r in state.log_history] == expected


def test_empty_data_is_a_clear_error(tmp_path):
    from tunesmith.utils.errors import DataError

    for empty in ([], Stream([])):
        with pytest.raises(DataError, match="no micro-batch"):
            Trainer(tiny_model("llama"), make_args(tmp_path, "max_steps=2"), empty).train()


def test_precision_options_are_checked(tmp_path):
    from tunesmith.train.precision import build_precision, eval_dtype
    from tunesmith.utils.errors import ConfigError

    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="bf16 and fp16"):
        build_precision(make_args(tmp_path, "bf16=true", "fp16=true"), cpu)
    with pytest.raises(ConfigError, match="apex"):
        build_precision(make_args(tmp_path, "fp16=true", "half_precision_backend=apex"), cpu)
    assert eval_dtype(make_args(tmp_path, "bf16_full_eval=true")) == torch.bfloat16
    assert eval_dtype(make_args(tmp_path)) is None


def test_empty_cache_every_n_steps(tmp_path, monkeypatch):
    from tunesmith.train import model_setup

    calls = []
    monkeypatch.setattr(model_setup, "empty_cache", lambda device: calls.append(device))
    args = make_args(tmp_path, "max_steps=5", "torch_empty_cache_steps=2")
    Trainer(tiny_model("llama"), args, batches(rows(10), 2)).train()
    assert len(calls) == 2  # after steps 2 and 4


def test_fp16_overflow_is_left_to_the_scaler(tmp_path):
    model = tiny_model("llama")
    calls = []

    def blow_up_once(grad):
        calls.append(1)
        return grad * float("inf") if len(calls) == 1 else grad

    model.model.norm.weight.register_hook(blow_up_once)
    trainer = Trainer(
        model, make_args(tmp_path, "fp16=true", "max_steps=3"), batches(rows(6), 2), max_bad_steps=1
    )
    history = trainer.train().log_history  # max_bad_steps=1 would abort if an overflow counted as a bad step
    assert history[0].get("skipped") and not history[1].get("skipped")
    assert trainer.precision.scaler.get_scale() < 2.0**16  # the scaler lowered its scale after the overflow


@pytest.mark.parametrize("disabled", [False, True])
def test_progress_bar_shows_metrics_unless_disabled(tmp_path, capsys, disabled):
    args = make_args(tmp_path, "max_steps=2", f"disable_tqdm={str(disabled).lower()}")
    Trainer(tiny_model("llama"), args, batches(rows(4), 2)).train()
    err = capsys.readouterr().err
    if disabled:
        assert "train" not in err
    else:
        assert "2/2" in err and "loss=" in err and "lr=" in err and "tok/s=" in err


def test_logging_strategies(tmp_path):
    data = batches(rows(8), 2)  # 4 micro-batches: 2 steps per epoch at accumulation 2
    epoch = make_args(
        tmp_path / "e", "num_train_epochs=2", "gradient_accumulation_steps=2", "logging_strategy=epoch"
    )
    assert [r["step"] for r in Trainer(tiny_model("llama"), epoch, data).train().log_history] == [2, 4]
    first = make_args(tmp_path / "f", "max_steps=4", "logging_steps=3", "logging_first_step=true")
    assert [r["step"] for r in Trainer(tiny_model("llama"), first, data).train().log_history] == [1, 3]
    silent = make_args(tmp_path / "n", "max_steps=2", "logging_strategy=no")
    assert Trainer(tiny_model("llama"), silent, data).train().log_history == []
