"""attn_impl: a transformers hub kernel (kernels-community/<repo>) is accepted only where the kernels package and a
local copy with a build for this device would make it run; else refused before anything loads, naming what it
needs and sdpa. A typo is still refused when the config is read."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from tunesmith.config import load_config
from tunesmith.config.validate import validate_config
from tunesmith.model import fused_ops
from tunesmith.model.fused_ops import resolve_attn_impl
from tunesmith.utils.errors import ConfigError

KERNEL = "kernels-community/flash-attn"


def _margs(name: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(attn_impl=name, use_flash_attn=False)


def _cache(root: Path, *builds: str) -> Path:
    for build in builds:
        (root / "kernels--kernels-community--flash-attn" / "snapshots" / "0123abc" / "build" / build).mkdir(
            parents=True
        )
    return root


def test_config_accepts_hub_kernel_spelling_and_refuses_typos() -> None:
    for name in (KERNEL, f"{KERNEL}@v2", "kernels-community/vllm-flash-attn3:flash_attn_func"):
        cfg = load_config(None, ["model_name_or_path=builtin:tiny", f"attn_impl={name}"])
        validate_config(cfg)
        assert cfg.model.attn_impl == name
    with pytest.raises(ConfigError, match=r"attn_impl.*'sdpaa' is not allowed.*eager, sdpa.*hub kernel"):
        validate_config(load_config(None, ["model_name_or_path=builtin:tiny", "attn_impl=sdpaa"]))


def test_refused_without_the_kernels_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused_ops, "_installed", lambda module: False)
    with pytest.raises(ConfigError, match=r"kernels package is not installed.*use attn_impl: sdpa"):
        resolve_attn_impl(_margs(KERNEL))


def test_refused_from_an_untrusted_owner() -> None:
    with pytest.raises(ConfigError, match=r"only kernels-community/ repos.*sdpa"):
        resolve_attn_impl(_margs("someone/flash-attn"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU case: a CUDA-only copy does not run here")
def test_local_copy_decides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(fused_ops, "_installed", lambda module: True)
    monkeypatch.setenv("KERNELS_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match=rf"holds no copy of {KERNEL}.*HF_HUB_OFFLINE=1.*sdpa"):
        resolve_attn_impl(_margs(KERNEL))
    _cache(tmp_path, "torch29-cxx11-cu128-x86_64-linux")
    with pytest.raises(
        ConfigError, match=r"builds for torch29-cxx11-cu128-x86_64-linux, none for this machine"
    ):
        resolve_attn_impl(_margs(KERNEL))
    _cache(tmp_path, "torch29-cpu-x86_64-linux")
    assert resolve_attn_impl(_margs(f"{KERNEL}@v2")) == f"{KERNEL}@v2"  # passed on to transformers as given


def test_build_variants_by_device() -> None:
    assert fused_ops._runs_on("torch28-cxx11-cu126-x86_64-linux", "cuda")
    assert fused_ops._runs_on("torch-cuda", "cuda")
    assert not fused_ops._runs_on("torch28-cxx11-cu126-x86_64-linux", "cpu")
    assert fused_ops._runs_on("torch28-cpu-x86_64-linux", "cpu")
    assert fused_ops._runs_on("torch-universal", "cpu") and fused_ops._runs_on("torch-universal", "cuda")
