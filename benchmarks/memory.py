"""The memory planner checked by measurement: a few real training steps in a fresh process, peak RSS growth
against `tunesmith.plan_memory.estimate` for the same model shape and settings.

Measured as the process's peak resident memory (`VmHWM`) minus its resident memory just before the model is
built, so the libraries' own memory is left out. glibc's malloc keeps freed small blocks and, with its adaptive
threshold, even large ones; the child runs with a fixed `MALLOC_MMAP_THRESHOLD_` so every tensor above 64 KiB is
its own mapping and returns to the system when freed: the peak then tracks live tensors, as
`torch.cuda.max_memory_allocated` does on a GPU.

Usage: `python -m benchmarks.memory` (prints estimate vs measured for a few settings).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from tunesmith.utils.memory import peak_rss_bytes, rss_bytes

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_ARENA_MAX": "2"}


def synthetic_batches(vocab: int, rows: int, seq: int, count: int, seed: int = 0) -> list[dict]:
    """`count` full-length micro-batches of random tokens, every label supervised."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        ids = torch.randint(3, vocab, (rows, seq), generator=gen)
        out.append({"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)})
    return out


def train_and_measure(
    model_config: dict[str, Any], settings: dict[str, Any], steps: int = 2
) -> dict[str, Any]:
    """Train `steps` optimizer steps of the model `model_config` with tunesmith's trainer and config `settings`
    (flat tunesmith arguments) in this process; returns the estimate and the measured peak growth (bytes)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunesmith.config import load_config
    from tunesmith.model import prepare_for_training
    from tunesmith.plan_memory import ModelShape, estimate
    from tunesmith.plan_memory_config import run_setup
    from tunesmith.train.trainer import Trainer

    out = tempfile.mkdtemp(prefix="bench_memory_")
    base = {
        "model_name_or_path": "builtin:tiny",
        "dialect": "tunesmith",  # our own defaults, whatever the keys look like
        "output_dir": out,
        "disable_tqdm": True,
        "report_to": "none",
    }
    base.update({"max_steps": steps, "logging_steps": 10_000, "save_strategy": "no", "learning_rate": 1e-4})
    cfg = load_config(
        None, [f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in {**base, **settings}.items()]
    )
    run = run_setup(cfg, 1)
    shape = ModelShape.from_config(model_config)
    batches = synthetic_batches(shape.vocab, run.micro_batch, run.seq_len, steps * run.accumulation)
    config = AutoConfig.for_model(**model_config)
    config.use_cache = False
    before = rss_bytes()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=run.attention)
    model = prepare_for_training(model, cfg)
    trainer = Trainer(model, cfg.train, batches)
    trainer.train()
    trainer.close()
    return {
        "estimate": estimate(shape, run).as_dict(),
        "measured_peak_growth": peak_rss_bytes() - before,
        "baseline_rss": before,
    }


def measure_in_child(
    model_config: dict[str, Any], settings: dict[str, Any], steps: int = 2, threads: int = 1
) -> dict[str, Any]:
    """`train_and_measure` in a fresh process (its peak is its own), with the fixed malloc thresholds."""
    env = {**os.environ, **MALLOC_ENV, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    payload = json.dumps({"model": model_config, "settings": settings, "steps": steps})
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--child", payload],
        capture_output=True, text=True, env=env, check=False, cwd=_repo_root(),
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def llama_config(
    hidden: int, layers: int, vocab: int, intermediate: int | None = None, heads: int = 4
) -> dict:
    """A Llama config.json dict of the given size (two key/value heads)."""
    return {
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": intermediate or 4 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
    }


CASES = {
    "full fp32": {"finetuning_type": "full"},
    "full fp32, checkpointing": {"gradient_checkpointing": True},
    "full bf16 autocast": {"bf16": True},
    "lora": {"finetuning_type": "lora", "lora_rank": 8},
    "chunked loss": {"chunk_loss_size": 128},
    "eager attention": {"attn_impl": "eager"},
    "accumulation 2": {"gradient_accumulation_steps": 2},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    args = parser.parse_args()
    if args.child:
        job = json.loads(args.child)
        print(json.dumps(train_and_measure(job["model"], job["settings"], job["steps"])))
        return
    model = llama_config(args.hidden, args.layers, args.vocab)
    for name, extra in CASES.items():
        settings = {
            "finetuning_type": "full",
            "per_device_train_batch_size": args.micro_batch,
            "cutoff_len": args.seq,
            **extra,
        }
        r = measure_in_child(model, settings)
        est, got = r["estimate"]["peak"], r["measured_peak_growth"]
        print(
            f"{name}: estimate {est / 2**20:,.0f} MiB, measured {got / 2**20:,.0f} MiB, ratio {est / got:.3f}"
        )


if __name__ == "__main__":
    main()
