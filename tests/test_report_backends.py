"""Each reporting backend writes real files that its own reader reads back; secrets never reach any of them."""

from __future__ import annotations

import io
import json
import logging
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.report import build_reporter
from tunesmith.report.base import installed
from tunesmith.report.reporter import selected_backends
from tunesmith.utils.errors import ConfigError, TunesmithError
from tunesmith.utils.memory import peak_rss_bytes

SECRET = "sk-test-SECRET-4f9a1c"
ROWS = [  # (step, metrics) as the trainer logs them (tokens: label tokens; input_tokens: what the model was fed)
    (
        1,
        {
            "epoch": 0.25,
            "loss": 2.5,
            "lr": 1e-3,
            "grad_norm": 1.0,
            "tokens": 100,
            "input_tokens": 100,
            "elapsed_s": 1.0,
        },
    ),
    (
        2,
        {
            "epoch": 0.5,
            "loss": 2.0,
            "lr": 9e-4,
            "grad_norm": 0.9,
            "tokens": 120,
            "input_tokens": 120,
            "elapsed_s": 2.0,
        },
    ),
    (2, {"epoch": 0.5, "eval_loss": 2.2, "eval_perplexity": math.exp(2.2)}),
    (
        3,
        {
            "epoch": 0.75,
            "loss": 1.5,
            "lr": 8e-4,
            "grad_norm": 0.8,
            "tokens": 80,
            "input_tokens": 80,
            "elapsed_s": 4.0,
        },
    ),
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No network and no writes outside tmp_path from any backend."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("SWANLAB_MODE", "local")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def make_cfg(out: Path, *overrides: str):
    return load_config(None, ["model_name_or_path=builtin:tiny", f"output_dir={out}", *overrides])


def log_rows(cfg, out: Path) -> None:
    reporter = build_reporter(cfg, out, is_main=True)
    for step, metrics in ROWS:
        reporter.log(metrics, step)
    reporter.close()


def train_series(key: str) -> list[tuple[int, float]]:
    return [(s, m[key]) for s, m in ROWS if key in m]


def test_jsonl_always_written_and_non_finite_is_null(tmp_path):
    cfg = make_cfg(tmp_path, "report_to=none")
    reporter = build_reporter(cfg, tmp_path, is_main=True)
    for step, metrics in ROWS:
        reporter.log(metrics, step)
    reporter.log({"loss": float("nan"), "tokens": 1, "elapsed_s": 5.0}, 4)
    reporter.close()
    rows = [json.loads(line) for line in (tmp_path / "trainer_log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in rows if "loss" in r] == [*train_series("loss"), (4, None)]
    assert [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r] == train_series("eval_loss")
    assert list(tmp_path.iterdir()) == [tmp_path / "trainer_log.jsonl"]  # report_to none: nothing else


def test_replicas_write_nothing(tmp_path):
    cfg = make_cfg(tmp_path / "out", "report_to=tensorboard")
    reporter = build_reporter(cfg, tmp_path / "out", is_main=False)
    reporter.log(ROWS[0][1], 1)
    reporter.close()
    assert not (tmp_path / "out").exists()


def test_tensorboard_event_reader_sees_the_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg(tmp_path, "report_to=tensorboard", f"logging_dir={tmp_path / 'tb'}")
    log_rows(cfg, tmp_path)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    got = {
        tag: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in ("train/loss", "eval/loss", "train/lr")
    }
    for tag, key in (("train/loss", "loss"), ("eval/loss", "eval_loss"), ("train/lr", "lr")):
        assert got[tag] == [(s, pytest.approx(v)) for s, v in train_series(key)]
    assert events.Tags()["tensors"] == ["config/text_summary"]


def test_tensorboard_default_dir_is_output_dir_runs(tmp_path):
    cfg = make_cfg(tmp_path, "report_to=tensorboard")
    log_rows(cfg, tmp_path)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert list(run_dir.glob("events.out.tfevents.*"))


@pytest.mark.skipif(not installed("mlflow"), reason="mlflow not installed")
def test_mlflow_file_store_read_back_by_client(tmp_path):
    from mlflow.tracking import MlflowClient

    cfg = make_cfg(tmp_path / "out", "report_to=mlflow", "project=proj", "run_name=my-run")
    log_rows(cfg, tmp_path / "out")
    client = MlflowClient(tracking_uri=(tmp_path / "out" / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("proj").experiment_id])
    assert run.info.run_name == "my-run" and run.info.status == "FINISHED"
    for key in ("loss", "eval_loss", "grad_norm"):
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        assert history == [(s, pytest.approx(v)) for s, v in train_series(key)]
    assert run.data.params["learning_rate"] == str(cfg.train.learning_rate)


def read_wandb_records(path: Path) -> list:
    """The protobuf records of a wandb transaction log (a 7-byte header, then LevelDB-log-framed records)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, chunks, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
        elif kind == 0:
            break
    return records


@pytest.mark.skipif(not installed("wandb"), reason="wandb not installed")
def test_wandb_offline_run_file_holds_the_history(tmp_path):
    cfg = make_cfg(tmp_path / "out", "report_to=wandb", "run_name=wb-run", "project=proj")
    log_rows(cfg, tmp_path / "out")
    (run_file,) = (tmp_path / "out" / "wandb").glob("offline-run-*/run-*.wandb")
    records = read_wandb_records(run_file)
    history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    loss = [(h["_step"], h["train/loss"]) for h in history if "train/loss" in h]
    eval_loss = [(h["_step"], h["eval/loss"]) for h in history if "eval/loss" in h]
    assert loss == train_series("loss") and eval_loss == train_series("eval_loss")
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == "wb-run" and run.project == "proj"
    config = [r for r in records if r.WhichOneof("record_type") == "config"]
    assert any(u.key == "learning_rate" for r in config for u in r.config.update)


@pytest.mark.skipif(not installed("swanlab"), reason="swanlab not installed (needs protobuf < 7)")
def test_swanlab_run_file_holds_the_scalars(tmp_path):
    from swanlab.proto.swanlab.record.v1.record_pb2 import Record
    from swanlab.sdk.internal.core_python.store import DataStoreReader

    cfg = make_cfg(
        tmp_path, "report_to=swanlab", "swanlab_mode=local", "swanlab_project=proj", "run_name=sw-run"
    )
    log_rows(cfg, tmp_path)
    (run_file,) = (tmp_path / "swanlog").glob("run-*/run-*.swanlab")
    reader = DataStoreReader()
    reader.open(run_file)
    records = []
    for raw in reader:
        records.append(Record())
        records[-1].ParseFromString(raw)
    reader.close()
    kinds = [r.WhichOneof("record_type") for r in records]
    (start,) = [r.start for r, k in zip(records, kinds, strict=True) if k == "start"]
    assert (start.project, start.name) == ("proj", "sw-run")
    points = [
        (r.scalar.key, r.scalar.step, r.scalar.value.number)
        for r, k in zip(records, kinds, strict=True)
        if k == "scalar"
    ]
    assert [(s, v) for key, s, v in points if key == "train/loss"] == train_series("loss")
    assert [(s, v) for key, s, v in points if key == "eval/loss"] == train_series("eval_loss")


@pytest.mark.skipif(installed("swanlab"), reason="swanlab is installed")
def test_swanlab_missing_says_how_to_install(tmp_path):
    cfg = make_cfg(tmp_path, "report_to=swanlab", "swanlab_mode=local")
    with pytest.raises(
        ConfigError, match=r"report_to: swanlab is not installed; run `pip install swanlab==0\.10\.3`"
    ):
        build_reporter(cfg, tmp_path, is_main=True)


def test_report_to_selection():
    every = [b for b in ("tensorboard", "wandb", "swanlab", "mlflow") if installed(b)]
    assert selected_backends("all") == every and "tensorboard" in every
    assert selected_backends("none") == [] and selected_backends(None) == []
    assert selected_backends(["mlflow", "tensorboard", "mlflow"]) == ["mlflow", "tensorboard"]
    assert selected_backends("tensorboard,wandb") == ["tensorboard", "wandb"]
    with pytest.raises(ConfigError, match=r"report_to: 'comet' is not allowed; use one or more of all, none"):
        selected_backends(["comet"])
    with pytest.raises(ConfigError, match="'none' cannot be combined"):
        selected_backends(["none", "tensorboard"])


def test_token_memory_and_throughput_metrics(tmp_path):
    cfg = make_cfg(
        tmp_path,
        "report_to=none",
        "include_num_input_tokens_seen=all",
        "include_tokens_per_second=true",
        "skip_memory_metrics=false",
    )
    log_rows(cfg, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "trainer_log.jsonl").read_text().splitlines()]
    # num_input_tokens_seen comes from the trainer (tests/test_noop_runs.py); the reporter adds the final rate
    assert all(r["peak_rss_mb"] > 10 for r in rows)
    assert rows[-1]["train_tokens_per_second"] == pytest.approx(300 / 4.0)
    plain = make_cfg(tmp_path / "plain", "report_to=none")
    log_rows(plain, tmp_path / "plain")
    text = (tmp_path / "plain" / "trainer_log.jsonl").read_text()
    assert "num_input_tokens_seen" not in text and "peak_rss_mb" not in text and "train_tokens" not in text


@pytest.mark.skipif(not (installed("wandb") and installed("mlflow")), reason="needs wandb and mlflow")
def test_secrets_never_reach_files_or_logs(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", SECRET + "-env")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger("tunesmith").addHandler(handler)
    try:
        out = tmp_path / "out"
        cfg = make_cfg(
            out,
            "report_to=tensorboard,wandb,mlflow" + (",swanlab" if installed("swanlab") else ""),
            "swanlab_mode=local",
            f"swanlab_token={SECRET}",
            f"hf_hub_token={SECRET}2",
        )
        reporter = build_reporter(cfg, out, is_main=True)
        reporter.log({**ROWS[0][1], "note": f"key {SECRET} and {SECRET}-env"}, 1)
        reporter.close()
        logging.getLogger("tunesmith").warning("token is %s", SECRET)
    finally:
        logging.getLogger("tunesmith").removeHandler(handler)
    assert "token is ***" in stream.getvalue() and SECRET not in stream.getvalue()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 5
    leaks = [p for p in files if SECRET.encode() in p.read_bytes()]
    assert leaks == []
    assert "key *** and ***" in (out / "trainer_log.jsonl").read_text()


@pytest.mark.skipif(not installed("mlflow"), reason="mlflow not installed")
def test_backend_start_error_is_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"bogus://user:{SECRET}@host/x")
    cfg = make_cfg(tmp_path, "report_to=mlflow")
    with pytest.raises(
        TunesmithError, match=r"report_to: mlflow failed to start: .*user:\*\*\*@host"
    ) as error:
        build_reporter(cfg, tmp_path, is_main=True)
    assert SECRET not in str(error.value) and error.value.__suppress_context__


def test_peak_memory_is_the_process_own_not_its_parents():
    """A process started by a large parent reports its own peak (ru_maxrss would report the parent's)."""
    ballast = bytearray(400 * 2**20)
    ballast[::4096] = b"\x01" * len(ballast[::4096])  # touch every page: 400 MiB resident here
    child = "from tunesmith.utils.memory import peak_rss_bytes; print(peak_rss_bytes())"
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout
    assert peak_rss_bytes() > 400 * 2**20 > 4 * int(out)
