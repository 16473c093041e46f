"""One benchmark job: a contender (tunesmith or transformers.Trainer) training a model on a workload, measured.

A job reports valid (non-padding) tokens per second after the first step, both per wall-clock second and per
CPU-second of the process (all its threads: on a shared, loaded machine the CPU time is what the job itself
used, while the wall clock also counts the time other processes had the cores), the padding share of the computed
tokens, seconds from building the model to the end of the first step, the peak memory growth from just before the
model is built (resident memory on CPU: see benchmarks/memory.py for why that tracks live tensors here;
`max_memory_allocated` on CUDA), the planner's estimate for the largest micro-batch it saw, and what model FLOPs
utilisation needs (FLOPs per token; the caller measures the matmul peak).
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import time
from typing import Any

from benchmarks.memory import llama_config
from tunesmith.utils.memory import peak_rss_bytes, rss_bytes

MODELS = {
    "tiny": llama_config(hidden=256, layers=4, vocab=2048, intermediate=1024),  # 4.5M parameters
    "25M": llama_config(hidden=512, layers=6, vocab=8192, intermediate=1536, heads=8),  # 27M parameters
}
QWEN2_05B = {  # Qwen2-0.5B's shape (random init, nothing downloaded)
    "model_type": "qwen2",
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
}
MODELS["0.5B"] = QWEN2_05B


def skewed_chat(n: int, seed: int, cutoff: int = 256) -> list[dict[str, list[int]]]:
    """Chat-like SFT lengths: 90% short (cutoff/16 to cutoff/4 tokens), 10% long (cutoff/2 to cutoff); the first
    quarter is a masked prompt, the rest an arithmetic progression of token ids (learnable)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        long = rng.random() < 0.1
        length = rng.randint(cutoff // 2, cutoff) if long else rng.randint(cutoff // 16, cutoff // 4)
        start, step = rng.randint(0, 1499), rng.choice((1, 2, 3, 5))
        ids = [10 + (start + step * t) % 1500 for t in range(length)]
        prompt = length // 4
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def uniform_blocks(n: int, seed: int, cutoff: int = 128) -> list[dict[str, list[int]]]:
    """Pre-training blocks, all `cutoff` tokens, every token supervised."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ids = [rng.randint(10, 1509) for _ in range(cutoff)]
        out.append({"input_ids": ids, "labels": list(ids)})
    return out


# workload -> (examples, micro batch, extra tunesmith settings shared by every contender, data builder, cutoff)
WORKLOADS = {
    "skewed SFT": (64, 8, {}, skewed_chat, 256),
    "uniform blocks": (32, 4, {}, uniform_blocks, 128),
    "LoRA, skewed SFT": (64, 8, {"finetuning_type": "lora", "lora_rank": 16}, skewed_chat, 256),
    # the GPU check's sizes
    "skewed SFT 1k": (320, 16, {}, skewed_chat, 1024),
    "uniform blocks 1k": (80, 8, {}, uniform_blocks, 1024),
    "dry run": (4, 2, {}, uniform_blocks, 32),  # the GPU check's CPU dry run: plumbing only
}
OURS = {
    "tunesmith normal": {"batching_strategy": "normal"},
    "tunesmith group_by_length": {"group_by_length": True},
    "tunesmith padding_free": {"batching_strategy": "padding_free"},
    "tunesmith dynamic_padding_free": {"batching_strategy": "dynamic_padding_free"},
    "tunesmith padding_free + compile": {"batching_strategy": "padding_free", "torch_compile": True},
    "tunesmith padding_free + liger": {"batching_strategy": "padding_free", "use_liger_kernel": True},
}
HF = {"HF Trainer, padding": False, "HF Trainer, flattening": True}


def model_flops_per_token(shape: Any, seq_len: float, lora: bool) -> float:
    """Training FLOPs per token: 6 per weight of every matrix product (forward 2, backward 4; LoRA skips the frozen
    weights' gradient: 4), plus causal attention's 6 x layers x q_dim x seq_len (scores and values, 3 passes)."""
    linear, _ = shape.layer_params()
    weights = shape.layers * linear + shape.vocab * shape.hidden
    return (4 if lora else 6) * weights + 6 * shape.layers * shape.q_dim * seq_len


def run_job(
    model: str,
    workload: str,
    contender: str,
    threads: int,
    device: str = "cpu",
    bf16: bool = False,
    scale: float = 1.0,
) -> dict[str, Any]:
    """Train `contender` on `workload` with `model` in this process (on `device`, bf16 autocast when asked; `scale`
    times the workload's examples, at least three micro-batches); the measurements, and the loss of every step."""
    import torch

    torch.set_num_threads(threads)
    examples, micro, extra, build, cutoff = WORKLOADS[workload]
    data = build(max(int(examples * scale), 3 * micro), 0, cutoff)
    runner = _run_hf if contender in HF else _run_ours
    job = {"device": device, "bf16": bf16, "micro": micro, "cutoff": cutoff, "extra": extra}
    seen = runner(MODELS[model], data, job, contender)
    after_first = sum(seen["tokens"][1:])
    seconds = seen["end"] - seen["first_step_end"]
    cpu_seconds = seen["end_cpu"] - seen["first_step_cpu"]
    return {
        "model": model,
        "workload": workload,
        "contender": contender,
        "steps": len(seen["tokens"]),
        "valid_tokens": sum(seen["tokens"]),
        "tokens_per_s": after_first / seconds if seconds > 0 else 0.0,
        "tokens_per_cpu_s": after_first / cpu_seconds if cpu_seconds > 0 else 0.0,
        "padding": 1 - sum(seen["tokens"]) / sum(seen["computed"]),
        "first_step_s": seen["first_step_end"] - seen["model_start"],
        "peak_growth": _peak(device) - seen["rss_before_model"],
        "losses": seen["losses"],
        "estimate": _estimate(model, seen["shapes"], extra, bf16, kept=contender not in HF),
        "flops_per_token": _flops(model, seen, extra),
    }


def _peak(device: str) -> int:
    """Peak memory so far: allocated on the GPU, or resident in this process."""
    import torch

    return torch.cuda.max_memory_allocated() if device == "cuda" else peak_rss_bytes()


def _estimate(model: str, shapes: list[tuple[int, int, int]], extra: dict, bf16: bool, kept: bool) -> int:
    """The planner's peak over the job's micro-batch shapes (rows, columns, positions with a target); with `kept`
    (tunesmith's loss) the LM head runs only at the positions with a target, else (Trainer) at all of them."""
    from tunesmith.plan_memory import ModelShape, RunSetup, estimate

    shape = ModelShape.from_config(MODELS[model])
    lora = extra.get("finetuning_type") == "lora"
    base = RunSetup(
        finetuning="lora" if lora else "full",
        lora_rank=extra.get("lora_rank", 8),
        autocast="bf16" if bf16 else None,
    )
    runs = [
        dataclasses.replace(base, micro_batch=r, seq_len=c, label_share=t / (r * c) if kept else 1.0)
        for r, c, t in set(shapes)
    ]
    return max(estimate(shape, run).peak for run in runs)


def _flops(model: str, seen: dict, extra: dict) -> float:
    from tunesmith.plan_memory import ModelShape

    shape = ModelShape.from_config(MODELS[model])
    mean_len = seen["len_sq"] / max(sum(seen["tokens"]), 1)  # token-weighted sequence length
    return model_flops_per_token(shape, mean_len, extra.get("finetuning_type") == "lora")


def _model(config: dict):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(**config)
    cfg.use_cache = False
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")


def _record(seen: dict, batch: dict) -> None:
    """Count a micro-batch: its valid tokens, computed tokens, shape and positions with a target, and the sum of
    squared sequence lengths."""
    ids = batch["input_ids"]
    if "attention_mask" in batch and batch["attention_mask"].dim() == 2:
        lengths = batch["attention_mask"].sum(1).tolist()
    else:
        pos = batch["position_ids"].flatten().tolist()
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        lengths = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    seen["tokens"].append(int(sum(lengths)))
    seen["computed"].append(ids.numel())
    seen["shapes"].append((*ids.shape, int((batch["labels"][:, 1:] != -100).sum())))
    seen["len_sq"] += sum(n * n for n in lengths)


def _new_seen() -> dict:
    return {
        "tokens": [],
        "computed": [],
        "shapes": [],
        "len_sq": 0,
        "first_step_end": None,
        "end": None,
        "first_step_cpu": None,
        "end_cpu": None,
        "losses": [],
    }


def _tick(seen: dict) -> None:
    """The end of an optimizer step, on the wall clock and the process's CPU clock (all threads)."""
    now, cpu = time.perf_counter(), time.process_time()
    if seen["first_step_end"] is None:
        seen["first_step_end"], seen["first_step_cpu"] = now, cpu
    seen["end"], seen["end_cpu"] = now, cpu


def _model_measured(config: dict, seen: dict, device: str):
    """The model on `device`, built after noting the memory in use (the peak growth is measured from there)."""
    import torch

    seen["model_start"] = time.perf_counter()  # the time to the first step counts from here
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        seen["rss_before_model"] = torch.cuda.memory_allocated()
    else:
        seen["rss_before_model"] = rss_bytes()
    return _model(config).to(device)


def _run_ours(config: dict, data: list, job: dict, contender: str) -> dict:
    import datasets
    from transformers import AutoTokenizer

    from tunesmith.config import load_config
    from tunesmith.data.batching import build_batcher
    from tunesmith.model import prepare_for_training
    from tunesmith.train.callbacks import Callback
    from tunesmith.train.trainer import Trainer
    from tunesmith.utils.builtin import resolve_builtin

    seen = _new_seen()
    settings = {
        "model_name_or_path": "builtin:tiny",
        "dialect": "tunesmith",  # our own defaults, whatever the keys look like
        "output_dir": tempfile.mkdtemp(prefix="bench_ts_"),
        "finetuning_type": "full",
        "per_device_train_batch_size": job["micro"],
        "cutoff_len": job["cutoff"],
        "bf16": job["bf16"],
        "disable_shuffling": True,
        "learning_rate": 1e-4,
        "lr_scheduler_type": "constant",
        "num_train_epochs": 1,
        "logging_steps": 10_000,
        "save_strategy": "no",
        "disable_tqdm": True,
        "report_to": "none",
        **job["extra"],
        **OURS[contender],
    }
    cfg = load_config(None, [f"{k}={v}" for k, v in settings.items()])
    tokenizer = AutoTokenizer.from_pretrained(resolve_builtin("builtin:tiny"))
    batcher = build_batcher(cfg, datasets.Dataset.from_list(data), tokenizer)
    for batch in batcher:  # the counts come from the same (deterministic) epoch the trainer then runs
        _record(seen, batch)
    model = _model_measured(config, seen, job["device"])
    if cfg.model.use_liger_kernel:
        from tunesmith.model.fused_ops import apply_kernels

        apply_kernels(model, cfg.model)
    model = prepare_for_training(model, cfg)

    class Clock(Callback):
        def on_step_end(self, trainer: Any, metrics: dict) -> None:
            _tick(seen)
            seen["losses"].append(metrics["loss"])

    trainer = Trainer(model, cfg.train, batcher, callbacks=[Clock()])
    trainer.train()
    trainer.close()
    return seen


def _run_hf(config: dict, data: list, job: dict, contender: str) -> dict:
    import datasets
    from transformers import (
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        DataCollatorWithFlattening,
        PrinterCallback,
        TrainerCallback,
        TrainingArguments,
    )

    from tunesmith.utils.builtin import resolve_builtin

    seen = _new_seen()
    tokenizer = AutoTokenizer.from_pretrained(resolve_builtin("builtin:tiny"))
    inner = DataCollatorWithFlattening() if HF[contender] else DataCollatorForSeq2Seq(tokenizer, padding=True)

    def collate(features: list) -> dict:
        batch = inner(features)
        _record(seen, batch)
        return batch

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            _tick(seen)

    extra = job["extra"]
    model = _model_measured(config, seen, job["device"])
    if extra.get("finetuning_type") == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=extra["lora_rank"], lora_alpha=32, target_modules="all-linear")
        )
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench_hf_"),
        per_device_train_batch_size=job["micro"],
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        num_train_epochs=1,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=job["device"] == "cpu",
        bf16=job["bf16"],
        disable_tqdm=True,
        seed=0,
        optim="adamw_torch",
        dataloader_num_workers=0,
    )
    trainer = _sequential_trainer()(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(data),
        data_collator=collate,
        callbacks=[Clock()],
    )
    trainer.remove_callback(PrinterCallback)  # no per-step log lines on stdout (tunesmith prints none either)
    trainer.train()
    seen["losses"] = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return seen


def _sequential_trainer():
    """transformers.Trainer reading the data in order (as tunesmith's `disable_shuffling`): same batches."""
    import torch
    from transformers import Trainer

    class Sequential(Trainer):
        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
            return torch.utils.data.SequentialSampler(self.train_dataset)

    return Sequential


def matmul_peak(
    threads: int,
    size: int = 1024,
    repeats: int = 7,
    device: str = "cpu",
    bf16: bool = False,
    cpu_clock: bool = False,
) -> float:
    """FLOP/s of a large `torch.mm` (fp32, or bf16) on `device` (`threads` CPU threads), median of `repeats`;
    per CPU-second of this process with `cpu_clock` (CPU only), else per wall-clock second."""
    import torch

    clock = time.process_time if cpu_clock else time.perf_counter
    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if bf16 else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        tick = clock()
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(clock() - tick)
    return 2 * size**3 / sorted(times)[len(times) // 2]
