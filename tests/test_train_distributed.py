"""`tunesmith train` on several processes (NPROC_PER_NODE: the CLI relaunches itself under torchrun, gloo; an outer
torchrun; two loopback "nodes") trains exactly like one process with the same global batch: DDP with gradient
accumulation, FSDP2 (full, LoRA + activation checkpointing with meta-device init, bf16 mixed precision), tensor parallel, dp2 x tp2 on 4
processes, Ulysses context parallel, expert parallel on a tiny MoE, and DeepSpeed ZeRO-2 with optimizer offload and
accumulation, and ZeRO-3 (the shipped example JSONs) give the per-step losses and gradient norms of the 1-process run, and the sharded
runs' exported output_dir models load in transformers/peft with the 1-process model's logits."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import save_tiny_model  # noqa: E402

from tunesmith.cli import main  # noqa: E402

pytestmark = pytest.mark.dist

LOSS_TOL = 1e-5  # fp32: only the order of float sums differs between layouts
# bf16 autocast (FSDP2 mixed precision: bf16 params in compute, fp32 gradient reduction): the bf16 rounding of
# half-size micro-batches differs from the full batch's; measured ~1e-4 relative on loss, ~5e-4 on grad_norm
BF16_TOL = {"loss": 1e-3, "grad_norm": 1e-2}
BF16_FSDP = 'dist_config={"name": "fsdp2", "mixed_precision": "bf16"}'
LOGIT_TOL = 1e-4
BASE = [
    "stage=sft",
    "dataset=demo",
    "dataset_dir=builtin:demo",
    "max_steps=3",
    "cutoff_len=64",
    "report_to=none",
    "save_strategy=no",
    "disable_shuffling=true",
    "logging_steps=1",
    "learning_rate=1e-3",  # large enough that a wrong gradient changes the next step's loss visibly
    "disable_tqdm=true",
]
DS = Path(__file__).parents[1] / "examples" / "deepspeed"  # the shipped DeepSpeed JSONs ("auto" values)
LORA = ["finetuning_type=lora", "lora_target=all", "gradient_checkpointing=true"]
# name -> (model, launch, overrides); every run has a global batch of 4 rows per optimizer step. Launch "one": a
# single process; "env": NPROC_PER_NODE=2 (the CLI relaunches itself under torchrun); "torchrun": an outer torchrun;
# "env4": the same with 4 processes; "nodes": two launches with NNODES=2 on loopback forming one job.
RUNS = {
    "single": ("llama", "one", ["per_device_train_batch_size=4"]),
    "ddp": ("llama", "nodes", ["per_device_train_batch_size=1", "gradient_accumulation_steps=2"]),
    "fsdp2": ("llama", "env", ["per_device_train_batch_size=2", 'dist_config={"name": "fsdp2"}']),
    "tp2": ("llama", "torchrun", ["per_device_train_batch_size=4", "tp_size=2"]),
    "cp2": ("llama", "env", ["per_device_train_batch_size=4", "cp_size=2"]),
    "dp2_tp2": (
        "llama",
        "env4",
        ["per_device_train_batch_size=2", "tp_size=2", 'dist_config={"name": "fsdp2"}'],
    ),
    "lora_single": ("llama", "one", ["per_device_train_batch_size=4", *LORA]),
    # init_model_with_meta_device: rank 0 loads, rank 1 builds on the meta device and receives its shards (the full
    # model: test_train_meta_init.py; LoRA + FSDP2 without it: test_dist_parallelize.py)
    "lora_fsdp2": (
        "llama",
        "env",
        [
            "per_device_train_batch_size=2",
            'dist_config={"name": "fsdp2"}',
            *LORA,
            "init_model_with_meta_device=true",
        ],
    ),
    "bf16_single": ("llama", "one", ["per_device_train_batch_size=4", "bf16=true"]),
    "bf16_fsdp2": ("llama", "env", ["per_device_train_batch_size=2", "bf16=true", BF16_FSDP]),
    "moe_single": ("qwen3_moe", "one", ["per_device_train_batch_size=4"]),
    "ep2": ("qwen3_moe", "env", ["per_device_train_batch_size=2", "ep_size=2", "fsdp=full_shard"]),
    "zero2_offload": (
        "llama",
        "env",
        [
            "per_device_train_batch_size=1",
            "gradient_accumulation_steps=2",
            f"deepspeed={DS / 'ds_z2_offload.json'}",
        ],
    ),
    "zero3": ("llama", "env", ["per_device_train_batch_size=2", f"deepspeed={DS / 'ds_z3.json'}"]),
}
REFERENCE = {
    "ddp": "single",
    "fsdp2": "single",
    "tp2": "single",
    "cp2": "single",
    "dp2_tp2": "single",
    "lora_fsdp2": "lora_single",
    "bf16_fsdp2": "bf16_single",
    "ep2": "moe_single",
    "zero2_offload": "single",
    "zero3": "single",
}
CLI = [sys.executable, "-m", "tunesmith.cli", "train"]


def _env(tmp: Path, **layout: str) -> dict[str, str]:
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "NPROC_PER_NODE", "NNODES")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        TUNESMITH_DATA_CACHE=str(tmp / "cache"),
        **layout,
    )
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _commands(launch: str, args: list[str], tmp: Path) -> list[tuple[list[str], dict[str, str]]]:
    if launch == "one":
        return [(CLI + args, _env(tmp))]
    if launch.startswith("env"):
        return [(CLI + args, _env(tmp, NPROC_PER_NODE=launch[3:] or "2"))]
    if launch == "torchrun":
        outer = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        return [(outer + ["-m", "tunesmith.cli", "train", *args], _env(tmp))]
    port = str(_free_port())
    nodes = {"NNODES": "2", "NPROC_PER_NODE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    return [(CLI + args, _env(tmp, NODE_RANK=str(i), **nodes)) for i in range(2)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Train every layout of RUNS from the same tiny models; the output_dir of each (and of each initial model)."""
    tmp = tmp_path_factory.mktemp("train_dist")
    out = {arch: save_tiny_model(tmp / arch, arch) for arch in ("llama", "qwen3_moe")}
    for name, (arch, launch, overrides) in RUNS.items():
        out[name] = tmp / name
        args = [*BASE, f"model_name_or_path={out[arch]}", f"output_dir={out[name]}", *overrides]
        errors = _launch(launch, args, tmp)
        if errors and launch == "nodes":
            # two independent launches rendezvous on a port picked in advance: another job may take it first, or
            # the rendezvous may time out on a loaded machine; a real failure fails the second attempt too
            errors = _launch(launch, args, tmp)
        assert not errors, f"{name} failed:\n" + "\n---\n".join(e[-3000:] for e in errors)
    return out


def _launch(launch: str, args: list[str], tmp: Path) -> list[str]:
    """Run the processes of one launch to the end; the stderr of each that failed. A single process runs the CLI's
    entry point here, in the test process (the same code path, without paying the imports again)."""
    if launch == "one":
        return _run_here(args, _env(tmp))
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for cmd, env in _commands(launch, args, tmp)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    return [err for proc, err in zip(procs, errors, strict=True) if proc.returncode != 0]


def _run_here(args: list[str], env: dict[str, str]) -> list[str]:
    """`tunesmith train ARGS` in this process with environment `env`; its stderr when it fails."""
    saved, err = dict(os.environ), io.StringIO()
    os.environ.clear()
    os.environ.update(env)
    try:
        with contextlib.redirect_stderr(err):
            code = main(["train", *args])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return [err.getvalue()] if code else []


def log(output_dir: Path) -> dict[str, list[float]]:
    """Per-step loss and grad_norm from trainer_log.jsonl."""
    rows = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r and "grad_norm" in r]
    return {key: [r[key] for r in rows] for key in ("loss", "grad_norm")}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_two_processes_match_one(runs: dict[str, Path], name: str) -> None:
    want, got = log(runs[REFERENCE[name]]), log(runs[name])
    assert len(want["loss"]) == 3 and len(got["loss"]) == 3
    assert want["loss"][0] != pytest.approx(want["loss"][2], abs=1e-3)  # training moved the loss
    tol = BF16_TOL if name.startswith("bf16") else {"loss": LOSS_TOL, "grad_norm": 1e-4}
    assert got["loss"] == pytest.approx(want["loss"], rel=tol["loss"])
    # Adam hides a wrongly scaled gradient from the loss curve; the (pre-clip) gradient norm shows it
    assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=tol["grad_norm"])


def _logits(path: Path) -> torch.Tensor:
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    auto = AutoPeftModelForCausalLM if (path / "adapter_config.json").is_file() else AutoModelForCausalLM
    model = auto.from_pretrained(path, dtype=torch.float32).eval()
    ids = torch.arange(3, 35).reshape(2, 16)
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("name", ["fsdp2", "tp2", "dp2_tp2", "lora_fsdp2", "ep2", "zero3"])
def test_sharded_export_loads_with_single_process_logits(runs: dict[str, Path], name: str) -> None:
    reference = REFERENCE[name]
    single, sharded = _logits(runs[reference]), _logits(runs[name])
    initial = _logits(runs[RUNS[reference][0]])
    assert (single - initial).abs().max() > 1e-3  # the exported model is the trained one
    torch.testing.assert_close(sharded, single, rtol=LOGIT_TOL, atol=LOGIT_TOL)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (['deepspeed={"zero_optimization": {"stage": 2}}', "do_predict=true"], "do_predict"),
        (["tp_size=2", "save_strategy=no", "do_predict=true"], "do_predict"),
        (["cp_size=2", "chunk_loss_size=16"], "chunk_loss_size"),
        (
            [
                'deepspeed={"zero_optimization": {"stage": 2}}',
                "save_only_model=true",
                "load_best_model_at_end=true",
            ]
            + ["eval_strategy=steps", "eval_steps=10", "save_steps=10", "val_size=0.1"],
            "save_only_model",
        ),
    ],
)
def test_unsupported_combinations_are_config_errors(
    overrides: list[str], field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunesmith.config import load_config
    from tunesmith.recipes.distributed import check_supported
    from tunesmith.utils.errors import ConfigError

    monkeypatch.setenv("NPROC_PER_NODE", "2")  # the config is validated for the job's world size
    cfg = load_config(None, ["model_name_or_path=builtin:tiny", "dataset=demo", *overrides])
    with pytest.raises(ConfigError, match=field):
        check_supported(cfg)


def test_hf_fsdp_selects_fsdp2() -> None:
    from tunesmith.config import load_config

    cfg = load_config(None, ["model_name_or_path=builtin:tiny", "dataset=demo", "fsdp=full_shard"])
    assert cfg.train.dist_config.name == "fsdp2"  # so the ep2 run above trains with FSDP2 around the experts
