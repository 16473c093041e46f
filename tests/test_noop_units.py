"""Arguments that used to do nothing, checked at the unit level: each test fails if its argument is ignored."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from tunesmith.config import load_config
from tunesmith.report import reporter as reporting
from tunesmith.utils.errors import ConfigError, TunesmithError


def cfg_of(*overrides: str, validate: bool = True):
    return load_config(None, ["model_name_or_path=builtin:tiny", *overrides], validate=validate)


class _Broken:
    def __init__(self, *args, **kwargs) -> None:
        raise RuntimeError("backend down")


class _FailsOnLog:
    def log(self, metrics, step):
        raise RuntimeError("disk full")

    def log_hparams(self, params):
        pass

    def close(self):
        pass


def test_report_to_defaults_to_none_and_unnamed_backends_never_stop_a_run(tmp_path, monkeypatch, caplog):
    assert cfg_of().train.report_to == "none"
    monkeypatch.setattr(reporting, "installed", lambda name: name in ("tensorboard", "mlflow"))
    opened = {"tensorboard": _Broken, "mlflow": lambda *a: _FailsOnLog()}
    monkeypatch.setattr(reporting, "_open_backend", lambda name, args, out: opened[name]())
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        rep = reporting.build_reporter(
            cfg_of(f"output_dir={tmp_path}", "report_to=all"), tmp_path, is_main=True
        )
        rep.log({"loss": 1.0, "tokens": 3, "input_tokens": 4, "elapsed_s": 1.0}, 1)
        rep.close()
    assert "tensorboard failed to start" in caplog.text and "mlflow failed" in caplog.text
    assert (tmp_path / "trainer_log.jsonl").read_text().count("loss") == 1
    with pytest.raises(TunesmithError, match="report_to: tensorboard failed to start: backend down"):
        reporting.build_reporter(
            cfg_of(f"output_dir={tmp_path}", "report_to=tensorboard"), tmp_path, is_main=True
        )


def test_batching_workers_are_real_threads_in_order_and_persistent_when_asked():
    import threading

    from tunesmith.data.batching.builder import batch_workers
    from tunesmith.data.batching.workers import BatchWorkers

    def build(i: int) -> tuple[int, str]:
        time.sleep(0.01)
        return i, threading.current_thread().name

    pool = BatchWorkers(3, prefetch=2)
    out = list(pool.map(build, range(12)))
    assert [i for i, _ in out] == list(range(12))
    assert len({name for _, name in out}) == 3 and pool._pool is None  # three threads, gone after the epoch
    persistent = BatchWorkers(2, persistent=True)
    first = {name for _, name in persistent.map(build, range(6))}
    assert persistent._pool is not None and {name for _, name in persistent.map(build, range(6))} == first
    persistent.close()
    train = cfg_of(
        "dataloader_num_workers=3", "dataloader_prefetch_factor=4", "dataloader_persistent_workers=true"
    ).train
    workers = batch_workers(train)
    assert (workers.workers, workers.depth, workers.persistent) == (3, 12, True)
    assert batch_workers(cfg_of("dataloader_num_workers=0").train) is None


def test_eval_batches_kept_apart_and_moved_to_cpu_every_n_steps():
    from tunesmith.train.evaluation import _Gathered

    seen = []

    def hook(prediction):
        seen.append(prediction)
        return {}

    def gather(*overrides: str) -> _Gathered:
        gathered = _Gathered(cfg_of(*overrides).train, hook)
        for width in (3, 5, 4):
            batch = {
                "labels": torch.ones(2, width, dtype=torch.long),
                "input_ids": torch.ones(2, width, dtype=torch.long),
            }
            gathered.add(batch, torch.zeros(2, width - 1, dtype=torch.long), 1.0)
        return gathered

    gather().finish()
    assert seen[-1].predictions.shape == (6, 4)  # one array, padded to the widest batch
    gather("eval_do_concat_batches=false").finish()
    assert [p.shape for p in seen[-1].predictions] == [(2, 2), (2, 4), (2, 3)]
    assert gather().on_device == 3 and gather("eval_accumulation_steps=2").on_device == 1


def test_the_validation_split_follows_seed_not_data_seed(tmp_path, monkeypatch):
    from helpers import tiny_tokenizer

    from tunesmith.data.pipeline import build_datasets

    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path))

    def held_out(*overrides: str) -> list[list[int]]:
        cfg = cfg_of("dataset=demo", "dataset_dir=builtin:demo", "val_size=6", *overrides)
        return build_datasets(cfg, tiny_tokenizer()).eval["eval"]["input_ids"]

    base = held_out()
    assert held_out("data_seed=7") == base
    assert held_out("seed=7") != base


def test_two_full_eval_precisions_are_refused():
    with pytest.raises(ConfigError, match=r"'bf16_full_eval'.*'fp16_full_eval'"):
        cfg_of("bf16_full_eval=true", "fp16_full_eval=true")


def test_model_id_is_checked_for_every_model_not_only_a_local_folder():
    from tunesmith.model import load_model, load_tokenizer

    cfg = cfg_of(
        "model_id=qwen3"
    )  # builtin:tiny is a qwen2 model and has no config.json folder to read first
    with pytest.raises(ConfigError, match=r"model_id: 'qwen3' does not match the model's type 'qwen2'"):
        load_model(cfg, load_tokenizer(cfg))


def test_megatron_indexed_dataset_round_trip(tmp_path):
    import struct

    import numpy as np

    from tunesmith.data.megatron_indexed import IndexedDataset, megatron_prefixes, write_indexed

    seqs = [[5, 6, 7], [8], [9, 10, 11, 12]]
    write_indexed(tmp_path / "corpus_text_document", seqs, dtype=np.uint16, document_ends=[2, 3])
    raw = (tmp_path / "corpus_text_document.idx").read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00" and struct.unpack("<QBQQ", raw[9:34]) == (
        1,
        8,
        3,
        3,
    )  # uint16 = code 8
    ds = IndexedDataset(tmp_path / "corpus_text_document")
    assert [ds[i].tolist() for i in range(len(ds))] == seqs and ds.dtype == np.uint16
    assert ds.sequence_pointers.tolist() == [0, 6, 8] and ds.document_indices.tolist() == [0, 2, 3]
    assert ds.documents() == 2
    assert megatron_prefixes("a.bin, b") == ["a", "b"]
    with pytest.raises(ConfigError, match="blend weights"):
        megatron_prefixes("0.7 a 0.3 b")


def test_training_on_a_megatron_dataset(tmp_path, monkeypatch):
    import json

    import numpy as np

    from tunesmith.data.megatron_indexed import write_indexed
    from tunesmith.recipes import run_recipe

    monkeypatch.setenv("TUNESMITH_DATA_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    write_indexed(tmp_path / "mg", [rng.integers(3, 200, size=50).tolist() for _ in range(12)])
    out = tmp_path / "out"
    cfg = cfg_of(
        "stage=pt",
        "data_manager_type=mg",
        f"data_path={tmp_path / 'mg'}",
        "cutoff_len=32",
        "per_device_train_batch_size=2",
        "max_steps=2",
        "logging_steps=1",
        "disable_tqdm=true",
        f"output_dir={out}",
    )
    run_recipe(cfg)
    steps = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [r["tokens"] for r in steps if "loss" in r] == [2 * 31, 2 * 31]  # blocks of the corpus's own ids


def test_debug_underflow_overflow_names_the_first_module_with_inf():
    from types import SimpleNamespace

    from helpers import tiny_model

    from tunesmith.train.debug_overflow import UnderflowOverflowDetected, debug_callbacks

    (callback,) = debug_callbacks(cfg_of("debug=underflow_overflow").train)
    assert debug_callbacks(cfg_of().train) == []
    with pytest.raises(ConfigError, match="'debug'.*'tpu_metrics_debug' is not available"):
        cfg_of("debug=tpu_metrics_debug")
    model = tiny_model()
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] = float("inf")
    callback.on_train_begin(SimpleNamespace(model=model, state=SimpleNamespace(global_step=4)))
    with pytest.raises(
        UnderflowOverflowDetected, match=r"step 5: module 'model.layers.1.mlp.down_proj' \(Linear\)"
    ):
        model(torch.tensor([[1, 2, 3]]))
    model(torch.tensor([[1, 2, 3]]))  # the hooks are gone after the report


def test_accelerate_parallelism_config_maps_onto_our_sizes(monkeypatch):
    monkeypatch.setenv("NPROC_PER_NODE", "8")
    par = cfg_of('parallelism_config={"dp_replicate_size": 2, "dp_shard_size": 2, "tp_size": 2}').parallel
    assert (par.fsdp_size, par.tp_size, par.cp_size) == (2, 2, 1)
    cfg = cfg_of('parallelism_config={"dp_shard_size": 2, "sp_size": 2}')
    assert cfg.parallel.cp_size == 2 and cfg.train.dist_config.name == "fsdp2"
    with pytest.raises(ConfigError, match=r"parallelism_config.*tp_size = 2 and 'tp_size'.* = 4 disagree"):
        cfg_of('parallelism_config={"tp_size": 2}', "tp_size=4")
    with pytest.raises(ConfigError, match="unknown key 'pp_size'"):
        cfg_of('parallelism_config={"pp_size": 2}')


def test_local_rank_sets_the_launcher_variable_or_must_agree_with_it(monkeypatch):
    import os

    from tunesmith.recipes.distributed import apply_local_rank

    monkeypatch.setenv("LOCAL_RANK", "0")  # restored (or removed) after the test
    monkeypatch.delenv("LOCAL_RANK")
    apply_local_rank(cfg_of("local_rank=1"))
    assert os.environ["LOCAL_RANK"] == "1"
    apply_local_rank(cfg_of("local_rank=1"))  # agreeing with the environment is fine
    with pytest.raises(ConfigError, match=r"'local_rank'.* = 0 but the launcher set LOCAL_RANK=1"):
        apply_local_rank(cfg_of("local_rank=0"))


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["use_liger_kernel=true"], "use_liger_kernel: needs a CUDA GPU"),
        (["dataset=missing.json"], "dataset: 'missing.json' is not in"),
        (["deepspeed=DS", "per_device_train_batch_size=2"], "train_micro_batch_size_per_gpu is 3"),
        (
            ["fsdp=full_shard", "do_predict=true"],
            "do_predict: prediction after training with a sharded model",
        ),
    ],
)
def test_plan_refuses_what_train_would_refuse(tmp_path, capsys, overrides, needle):
    import json

    from tunesmith.cli import main

    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"train_micro_batch_size_per_gpu": 3, "zero_optimization": {"stage": 2}}))
    args = [a.replace("DS", str(ds)) for a in overrides]
    base = [
        "model_name_or_path=builtin:tiny",
        "dataset=demo",
        "dataset_dir=builtin:demo",
        f"output_dir={tmp_path}",
    ]
    for command in ("plan", "train"):
        assert main([command, *base, *args]) == 2
        assert needle in capsys.readouterr().err


def test_a_config_error_under_torchrun_is_printed_by_rank_0_only(monkeypatch, capsys):
    from tunesmith.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["plan", "model_name_or_path=builtin:tiny", "no_such_key=1"]) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert main(["plan", "model_name_or_path=builtin:tiny", "no_such_key=1"]) == 2
    assert "unknown key 'no_such_key'" in capsys.readouterr().err


def test_args_shows_the_effective_defaults():
    from tunesmith.config.catalog import argument_catalog

    notes = {(e["section"], e["name"]): e["default_note"] for e in argument_catalog()}
    for key in (
        ("parallel", "param_dtype"),
        ("train", "calculate_per_token_loss"),
        ("dist_config:fsdp2", "mixed_precision"),
    ):
        assert notes[key].startswith("effective default:"), key
