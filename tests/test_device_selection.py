"""Device selection on CUDA machines, with CUDA mocked out only at torch.cuda.is_available()."""

from __future__ import annotations

import pytest
import torch

from tunesmith.config import load_config
from tunesmith.dist.setup import default_backend
from tunesmith.train.device import (
    FUSED_DEFAULT,
    apply_cuda_defaults,
    peak_memory_mb,
    to_device,
    training_device,
)

BASE = ["model_name_or_path=builtin:tiny", "output_dir=/tmp/unused", "finetuning_type=full"]


@pytest.fixture
def cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_cpu_machine_trains_on_cpu_with_gloo() -> None:
    assert training_device() == torch.device("cpu")
    assert default_backend() == "gloo"


def test_cuda_machine_uses_the_local_rank_gpu_and_nccl(cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert training_device() == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert training_device() == torch.device("cuda", 3)
    assert training_device(use_cpu=True) == torch.device("cpu")
    assert default_backend() == "nccl"


def test_fused_adamw_is_the_cuda_default_unless_optim_is_set(cuda: None) -> None:
    cfg = load_config(None, BASE)
    apply_cuda_defaults(cfg, training_device())
    assert cfg.train.optim == FUSED_DEFAULT
    chosen = load_config(None, [*BASE, "optim=adamw_torch"])
    apply_cuda_defaults(chosen, training_device())
    assert chosen.train.optim == "adamw_torch"


def test_cpu_keeps_the_configured_optimizer_and_logs_no_gpu_memory() -> None:
    cfg = load_config(None, BASE)
    apply_cuda_defaults(cfg, training_device())
    assert cfg.train.optim == "adamw_torch"
    assert peak_memory_mb(torch.device("cpu")) is None


def test_batches_to_cpu_are_not_pinned() -> None:
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long)}
    moved = to_device(batch, torch.device("cpu"), pin=True)
    assert moved["input_ids"].device.type == "cpu" and not moved["input_ids"].is_pinned()


def test_env_lists_kernels_and_no_gpu_here() -> None:
    from tunesmith.utils.environment import environment_report

    report = environment_report()
    assert report["cuda"] == "not available" and not any(k.startswith("gpu") for k in report)
    assert report["kernel sdpa"] == "usable"
    assert report["kernel flex_attention"].startswith("not usable")
