"""DeepSpeed engine: the user's JSON with `"auto"` values filled from our config, CPU/GPU setup; its checkpoint
files checked before loading, and their weights loaded into a model in one process (export)."""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunesmith.utils.errors import ConfigError


def load_ds_config(source: str | os.PathLike | dict[str, Any], key: str = "deepspeed") -> dict[str, Any]:
    """The DeepSpeed config as a dict: a JSON file path (`config_file`) or an inline mapping."""
    if isinstance(source, dict):
        return copy.deepcopy(source)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"{key}: DeepSpeed config file {path} does not exist")
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{key}: {path} line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: {path} must hold a JSON object")
    return value


def fill_auto(
    ds: dict[str, Any],
    *,
    micro_batch_size: int,
    gradient_accumulation_steps: int,
    data_parallel_size: int,
    learning_rate: float,
    max_grad_norm: float,
    bf16: bool,
    fp16: bool,
    weight_decay: float = 0.0,
    adam_betas: tuple[float, float] = (0.9, 0.999),
    adam_epsilon: float = 1e-8,
    hidden_size: int | None = None,
    warmup_steps: int = 0,
    total_steps: int | None = None,
    source: str = "deepspeed config",
) -> dict[str, Any]:
    """Replace `"auto"` values with ours; an explicit value that disagrees with our config is a ConfigError
    (training would silently differ from what the config says). Returns a new dict."""
    ds = copy.deepcopy(ds)
    ours: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "train_batch_size": micro_batch_size * gradient_accumulation_steps * data_parallel_size,
        "gradient_clipping": max_grad_norm,
        "bf16.enabled": bf16,
        "fp16.enabled": fp16,
        "optimizer.params.lr": learning_rate,
        "optimizer.params.betas": list(adam_betas),
        "optimizer.params.eps": adam_epsilon,
        "optimizer.params.weight_decay": weight_decay,
        "scheduler.params.warmup_min_lr": 0.0,
        "scheduler.params.warmup_max_lr": learning_rate,
        "scheduler.params.warmup_num_steps": warmup_steps,
        "scheduler.params.total_num_steps": total_steps,
    }
    if hidden_size:
        ours["zero_optimization.reduce_bucket_size"] = hidden_size * hidden_size
        ours["zero_optimization.stage3_prefetch_bucket_size"] = int(0.9 * hidden_size * hidden_size)
        ours["zero_optimization.stage3_param_persistence_threshold"] = 10 * hidden_size
    for flag, on in (("bf16", bf16), ("fp16", fp16)):
        if on and flag not in ds:
            ds[flag] = {"enabled": True}
    for dotted, value in ours.items():
        _fill(ds, dotted, value, source)
    leftover = _find_auto(ds)
    if leftover:
        raise ConfigError(
            f'{source}: {leftover} is "auto" but tunesmith has no value for it; set it explicitly'
        )
    return ds


def _fill(ds: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    *parents, leaf = dotted.split(".")
    node = ds
    for part in parents:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    if leaf not in node and parents:
        return
    current = node.get(leaf, "auto")
    if current == "auto":
        if value is None:
            raise ConfigError(
                f'{source}: {dotted} is "auto" but tunesmith has no value for it; set it explicitly'
            )
        node[leaf] = value
    elif leaf in (
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "train_batch_size",
        "enabled",
    ) and (current != value):
        raise ConfigError(
            f'{source}: {dotted} is {current!r} but the tunesmith config implies {value!r}; use "auto" or make '
            "them agree"
        )


def _find_auto(node: Any, prefix: str = "") -> str | None:
    if isinstance(node, dict):
        for k, v in node.items():
            found = _find_auto(v, f"{prefix}{k}.")
            if found:
                return found
    elif node == "auto":
        return prefix.rstrip(".")
    return None


def zero_stage(ds: dict[str, Any]) -> int:
    """The ZeRO stage (0 when absent)."""
    return int(ds.get("zero_optimization", {}).get("stage", 0))


def offloads_optimizer(ds: dict[str, Any]) -> bool:
    """True when the optimizer state lives on the CPU (`offload_optimizer.device: cpu`)."""
    zero = ds.get("zero_optimization", {})
    return zero.get("offload_optimizer", {}).get("device", "none") in ("cpu", "nvme")


def init_deepspeed_distributed(backend: str | None = None, timeout_s: int = 1800) -> None:
    """Select the CPU accelerator when there is no GPU and join the process group (gloo on CPU)."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    deepspeed.init_distributed(dist_backend=backend, timeout=datetime.timedelta(seconds=timeout_s))


def build_engine(
    model: nn.Module,
    ds: dict[str, Any],
    *,
    learning_rate: float,
    weight_decay: float = 0.0,
    adam_betas: tuple[float, float] = (0.9, 0.999),
    adam_epsilon: float = 1e-8,
    optimizer: torch.optim.Optimizer | None = None,
) -> Any:
    """`deepspeed.initialize` with a filled config; returns the engine.

    The optimizer: the JSON's `optimizer` block when it has one (DeepSpeed builds it), else `optimizer`, else AdamW
    from the arguments. With the optimizer state offloaded to the CPU an Adam/AdamW becomes DeepSpeedCPUAdam with
    the same parameter groups (DeepSpeed rejects a torch optimizer there)."""
    import deepspeed

    _check_one_dtype(model, ds)
    if "optimizer" in ds:
        optimizer = None
    elif optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        kwargs = {"lr": learning_rate, "betas": adam_betas, "eps": adam_epsilon, "weight_decay": weight_decay}
        optimizer = torch.optim.AdamW(params, **kwargs)
    if optimizer is not None and offloads_optimizer(ds):
        optimizer = _cpu_adam(optimizer)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds)
    return engine


def _check_one_dtype(model: nn.Module, ds: dict[str, Any]) -> None:
    """Without bf16/fp16, DeepSpeed flattens the trainable weights into one float32 buffer: a trainable module
    left in bfloat16/float16 (e.g. a LoRA run's modules_to_save copy under torch_dtype bfloat16, beside float32
    adapters) would then get float32 weights and bfloat16 inputs. Refused with what to set instead."""
    if any(
        (ds.get(key) or {}).get("enabled") for key in ("bf16", "bfloat16", "fp16")
    ):  # DeepSpeed reads all three
        return
    low = [(n, p.dtype) for n, p in model.named_parameters() if p.requires_grad and p.dtype != torch.float32]
    if low and len(low) < sum(p.requires_grad for p in model.parameters()):
        name, dtype = low[0]
        raise ConfigError(
            f"deepspeed: runs in float32 here (no bf16/fp16), but trainable weights mix float32 and {str(dtype).removeprefix('torch.')} "
            f"({name}, from torch_dtype); set bf16: true (mixed precision, as LLaMA-Factory and ms-swift do with "
            "bfloat16 weights) or torch_dtype: float32"
        )


def _cpu_adam(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The CPU Adam/AdamW DeepSpeed needs for an offloaded optimizer state, over `optimizer`'s parameter groups."""
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        raise ConfigError(
            f"optim: {type(optimizer).__name__} cannot run with DeepSpeed offload_optimizer (it needs Adam/AdamW, "
            "run as DeepSpeedCPUAdam); use optim: adamw_torch or remove offload_optimizer from the DeepSpeed JSON"
        )
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    d = optimizer.defaults
    groups = [dict(group) for group in optimizer.param_groups]
    return DeepSpeedCPUAdam(
        groups,
        lr=d["lr"],
        betas=d["betas"],
        eps=d["eps"],
        weight_decay=d["weight_decay"],
        adamw_mode=isinstance(optimizer, torch.optim.AdamW),
    )


@contextlib.contextmanager
def gathered(engine: Any) -> Iterator[None]:
    """Every parameter of the engine's module whole on every rank inside the block (ZeRO-3 partitions them; other
    stages keep them whole anyway). A collective: all ranks enter it."""
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None):
        yield


def forget_process_group() -> None:
    """Undo what a DeepSpeed engine leaves in the process once its process group is gone, so a later run in the
    same process (a notebook, the test suite) starts clean: ZeRO-3's process-wide replacement of
    `torch.nn.functional.linear` ("persists unless manually reset") and the group handles DeepSpeed caches
    (a clone of the destroyed world group made the next engine fail)."""
    zero = sys.modules.get("deepspeed.runtime.zero.partition_parameters")
    original = getattr(getattr(zero, "InsertPostInitMethodToModuleSubClasses", None), "linear_bk", None)
    if original is not None:
        torch.nn.functional.linear = original
    groups = sys.modules.get("deepspeed.utils.groups")
    if groups is None:
        return
    for name, value in vars(groups).copy().items():
        if name.startswith("_") and name.endswith(("_GROUP", "_GROUP_RANKS")):
            setattr(groups, name, {} if isinstance(value, dict) else None)
    groups.mesh_device = None


def _engine_classes() -> list[type]:
    """The plain DeepSpeed classes its checkpoint files hold besides tensors (stage enum, loss scalers)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    return [ZeroStageEnum, LossScaler, DynamicLossScaler]


def check_checkpoint_files(folder: str | os.PathLike, tag: str) -> None:
    """Refuse a DeepSpeed checkpoint `folder/tag` whose files hold anything but tensors, plain values and
    DeepSpeed's own plain classes: DeepSpeed unpickles them with `weights_only=False`, which could run code."""
    files = sorted((Path(folder) / tag).glob("*.pt"))
    if not files:
        raise ConfigError(f"{Path(folder) / tag}: holds no DeepSpeed checkpoint files (*.pt)")
    with torch.serialization.safe_globals(_engine_classes()):
        for file in files:
            try:
                torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:  # noqa: BLE001 - any refusal of the safe unpickler: name the file, load nothing
                reason = str(exc).split("WeightsUnpickler error: ")[-1].split(". ")[0]
                raise ConfigError(
                    f"{file}: not a plain DeepSpeed checkpoint file ({reason}); not loading it"
                ) from exc


def checkpoint_tag(folder: str | os.PathLike) -> str:
    """The tag of the DeepSpeed checkpoint in `folder`: its `latest` file, else its only tag folder."""
    folder = Path(folder)
    if (folder / "latest").is_file():
        return (folder / "latest").read_text().strip()
    tags = [p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*model_states.pt"))]
    if len(tags) != 1:
        raise ConfigError(
            f"{folder}: not a DeepSpeed checkpoint folder (no `latest` file and {len(tags)} tag folders)"
        )
    return tags[0]


def load_zero_model(folder: str | os.PathLike, model: nn.Module) -> None:
    """Load the fp32 weights of the DeepSpeed checkpoint in `folder` (any ZeRO stage, gathered from every rank's
    partition) into `model`, in this one process; weights tied to another (an untied copy is not saved) may be
    absent."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    tag = checkpoint_tag(folder)
    check_checkpoint_files(folder, tag)
    state = get_fp32_state_dict_from_zero_checkpoint(str(folder), tag=tag)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    untied = [k for k in missing if k not in tied]
    if any(key.startswith("base_model.model.") for key in unexpected):
        raise ConfigError(
            f"{folder}: this DeepSpeed checkpoint is of an adapter (peft) run; export the adapter the run saved "
            "(its output_dir or adapter_name_or_path=...) to merge it into the base"
        )
    if untied or unexpected:
        raise ConfigError(
            f"{folder}: the DeepSpeed checkpoint does not fit this model (missing {untied[:3]}, unexpected "
            f"{unexpected[:3]}); export it with the base model it was trained from"
        )
    if tied and hasattr(model, "tie_weights"):
        model.tie_weights()
