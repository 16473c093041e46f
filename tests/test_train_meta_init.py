"""`init_model_with_meta_device` with FSDP2 through `tunesmith train` on 2 processes: rank 0 loads the weights, the
other rank builds the model on the meta device and receives its shards. It trains exactly like the run where every
rank loads (same per-step losses and gradient norms, same exported model), for a full fine-tune of a tied-embedding
model with new tokens (LoRA: the `lora_fsdp2` run of test_train_distributed.py). Rank 1 (a second loopback
"node") is given a model folder with no weight file, so it cannot have read the weights. Without fsdp2 every process
loads and the log says so."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import save_tiny_model  # noqa: E402
from test_model_cfg import model_cfg  # noqa: E402
from test_train_distributed import BASE, _env, _free_port, _launch, _logits, log  # noqa: E402

from tunesmith.model import load_model, load_tokenizer  # noqa: E402
from tunesmith.model.loader import receives_weights_from_rank0  # noqa: E402
from tunesmith.utils.errors import ConfigError  # noqa: E402

pytestmark = pytest.mark.dist

TOL = 1e-5
CLI = [sys.executable, "-m", "tunesmith.cli", "train"]
FSDP2 = [*BASE, "per_device_train_batch_size=2", 'dist_config={"name": "fsdp2"}']
META = "init_model_with_meta_device=true"
FULL = ["add_special_tokens=<x1>,<x2>"]  # new rows, initialised on rank 0 only


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """qwen2/: a tied-embedding model; no_weights/: the same folder without its weight file."""
    tmp = tmp_path_factory.mktemp("meta_init")
    save_tiny_model(tmp / "qwen2", "qwen2", tie_word_embeddings=True)
    shutil.copytree(tmp / "qwen2", tmp / "no_weights", ignore=shutil.ignore_patterns("*.safetensors"))
    return tmp


@pytest.fixture(scope="module")
def runs(folders: Path) -> dict[str, Path]:
    """full: every rank loads; full_meta: meta-device init, rank 1 gets the folder without weights."""
    out = {name: folders / name for name in ("full", "full_meta")}
    _train("env", [f"model_name_or_path={folders / 'qwen2'}", f"output_dir={out['full']}", *FULL], folders)
    nodes = [f"model_name_or_path={folders / name}" for name in ("qwen2", "no_weights")]
    _train_per_node([[path, f"output_dir={out['full_meta']}", *FULL, META] for path in nodes], folders)
    return out


def _train(launch: str, args: list[str], tmp: Path) -> None:
    errors = _launch(launch, [*FSDP2, *args], tmp)
    assert not errors, "\n---\n".join(e[-3000:] for e in errors)


def _train_per_node(args: list[list[str]], tmp: Path) -> None:
    """One job of two loopback "nodes" (one process each), node i started with `args[i]`; retried once, since the
    port picked in advance may be taken by another job."""
    for _ in range(2):
        layout = {
            "NNODES": "2",
            "NPROC_PER_NODE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()),
        }
        procs = [
            subprocess.Popen(
                [*CLI, *FSDP2, *node_args],
                env=_env(tmp, NODE_RANK=str(i), **layout),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i, node_args in enumerate(args)
        ]
        stderr = [p.communicate(timeout=300)[1] for p in procs]
        errors = [err for p, err in zip(procs, stderr, strict=True) if p.returncode != 0]
        if not errors:
            return
    pytest.fail("\n---\n".join(e[-3000:] for e in errors))


def test_meta_init_trains_like_every_rank_loading(runs: dict[str, Path]) -> None:
    want, got = log(runs["full"]), log(runs["full_meta"])
    assert len(want["loss"]) == 3 and want["loss"][0] != pytest.approx(want["loss"][2], abs=1e-3)
    assert got["loss"] == pytest.approx(want["loss"], rel=TOL)
    assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=TOL)
    torch.testing.assert_close(_logits(runs["full_meta"]), _logits(runs["full"]), rtol=TOL, atol=TOL)


def test_rank1_folder_has_no_weights(folders: Path) -> None:
    """The full_meta run above succeeded with rank 1 pointed at this folder: it cannot be loaded on its own."""
    assert not list((folders / "no_weights").glob("*.safetensors"))
    with pytest.raises(ConfigError):
        _load(str(folders / "no_weights"))


def test_single_process_loads_and_says_so(folders: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        model = _load(str(folders / "qwen2"), init_model_with_meta_device=True)
    assert not any(p.is_meta for p in model.parameters())
    assert "every process loads the weights itself because this is a single process" in caplog.text
    assert not receives_weights_from_rank0(model_cfg("builtin:tiny", init_model_with_meta_device=True))


def _load(path: str, **fields: object) -> torch.nn.Module:
    cfg = model_cfg(path, **fields)
    return load_model(cfg, load_tokenizer(cfg))
