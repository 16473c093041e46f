"""Batching strategies vs `transformers.Trainer` on length-skewed SFT data (most examples short, a few long).

Every variant trains the same randomly initialised Llama (about 6M parameters) for one epoch over the same
examples, in its own process (so peak RSS is its own), and reports real (non-padding) tokens per second, the
share of computed tokens that are padding, peak RSS, and the loss on a held-out set afterwards. tunesmith's
variants run through `tunesmith.train.Trainer`; the Hugging Face ones through `transformers.Trainer` with the
usual SFT collator (`DataCollatorForSeq2Seq`, pad to the longest) and with `DataCollatorWithFlattening`.

Usage: `python benchmarks/batching.py [--examples 384 --micro-batch 8 --cutoff 512 --threads 1]`
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

from tunesmith.utils.memory import peak_rss_bytes

OURS = {
    "normal": {"batching_strategy": "normal"},
    "normal + group_by_length": {"group_by_length": True},
    "dynamic_batching": {"batching_strategy": "dynamic_batching"},
    "padding_free": {"batching_strategy": "padding_free"},
    "dynamic_padding_free": {"batching_strategy": "dynamic_padding_free"},
    # the layout used with flash attention (one row per micro-batch), here run with sdpa's dense masked attention
    "dynamic_padding_free, one row": {
        "batching_strategy": "dynamic_padding_free",
        "attn_impl": "flash_attention_2",
    },
    "neat_packing": {"neat_packing": True},
}
HF = ("HF Trainer, pad to longest", "HF Trainer, DataCollatorWithFlattening")


def make_examples(n: int, cutoff: int, seed: int) -> list[dict[str, list[int]]]:
    """Chat-like lengths: 90% short (16-96 tokens), 10% long (cutoff/2 to cutoff). The first quarter is a masked
    prompt; the rest follows a learnable rule (an arithmetic progression of token ids modulo 1500)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(cutoff // 2, cutoff) if rng.random() < 0.1 else rng.randint(16, 96)
        start, step = rng.randint(0, 1499), rng.choice((1, 2, 3, 5))
        ids = [10 + (start + step * t) % 1500 for t in range(length)]
        prompt = length // 4
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def build_model(vocab: int):
    """The benchmark model: Llama, hidden 256, 6 layers, fp32, the same weights in every run (seed 0)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        use_cache=False,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config)


def eval_loss(model, examples: list[dict]) -> float:
    """Mean token cross-entropy on held-out examples, each run alone."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            logits = model(input_ids=torch.tensor([ex["input_ids"]]), use_cache=False).logits[0, :-1]
            labels = torch.tensor(ex["labels"][1:])
            total += float(F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum"))
            count += int((labels != -100).sum())
    return total / count


def count_tokens(batches, pad_id: int) -> tuple[int, int]:
    """(real tokens, computed tokens) over micro-batches (padding: attention_mask 0 or a position-restart
    block whose labels are all ignored, i.e. packing filler)."""
    real = computed = 0
    for mb in batches:
        computed += mb["input_ids"].numel()
        if "attention_mask" in mb and mb["attention_mask"].dim() == 2:
            real += int(mb["attention_mask"].sum())
        else:
            real += mb["input_ids"].numel() - _filler(mb, pad_id)
    return real, computed


def _filler(mb, pad_id: int) -> int:
    """Tokens of the trailing padding block that packed_collate appends to shorter rows."""
    pad = 0
    for r in range(mb["input_ids"].size(0)):
        pos = mb["position_ids"][r].tolist()
        last = max(i for i, p in enumerate(pos) if p == 0)
        if (mb["labels"][r, last:] == -100).all() and (mb["input_ids"][r, last:] == pad_id).all():
            pad += len(pos) - last
    return pad


def run_ours(name: str, args: argparse.Namespace, train: list, held: list) -> dict:
    import datasets
    from transformers import AutoTokenizer

    from tunesmith.config import load_config
    from tunesmith.data.batching import build_batcher
    from tunesmith.train.trainer import Trainer
    from tunesmith.utils.builtin import resolve_builtin

    tokenizer = AutoTokenizer.from_pretrained(resolve_builtin("builtin:tiny"))
    out = tempfile.mkdtemp(prefix="bench_batching_")
    settings = {
        "model_name_or_path": "builtin:tiny",
        "dataset": "benchmark",
        "output_dir": out,
        "per_device_train_batch_size": args.micro_batch,
        "cutoff_len": args.cutoff,
        "learning_rate": 1e-3,
        "lr_scheduler_type": "constant",
        "num_train_epochs": 1,
        "logging_steps": 10_000,
        "disable_tqdm": True,
        "batching_workers": 1,
        **OURS[name],
    }
    cfg = load_config(None, [f"{k}={v}" for k, v in settings.items()])
    ds = datasets.Dataset.from_list(train)
    batcher = build_batcher(cfg, ds, tokenizer)
    real, computed = count_tokens(batcher, tokenizer.pad_token_id)
    model = build_model(len(tokenizer)).train()
    trainer = Trainer(model, cfg.train, batcher)
    clock = _Clock()
    trainer.train()
    elapsed = clock.stop()
    trainer.close()
    steps = trainer.state.global_step
    return _result(name, real, computed, elapsed, steps, eval_loss(model, held))


def run_hf(name: str, args: argparse.Namespace, train: list, held: list) -> dict:
    import datasets
    import torch
    from transformers import (
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        DataCollatorWithFlattening,
        Trainer,
        TrainingArguments,
    )

    from tunesmith.utils.builtin import resolve_builtin

    tokenizer = AutoTokenizer.from_pretrained(resolve_builtin("builtin:tiny"))
    flatten = "Flattening" in name
    inner = DataCollatorWithFlattening() if flatten else DataCollatorForSeq2Seq(tokenizer, padding=True)
    seen = {"real": 0, "computed": 0}

    def collate(features):
        batch = inner(features)
        seen["real"] += sum(len(f["input_ids"]) for f in features)
        seen["computed"] += batch["input_ids"].numel()
        return batch

    model = build_model(len(tokenizer))
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench_hf_"),
        per_device_train_batch_size=args.micro_batch,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        num_train_epochs=1,
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        optim="adamw_torch",
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model, args=targs, train_dataset=datasets.Dataset.from_list(train), data_collator=collate
    )
    clock = _Clock()
    trainer.train()
    elapsed = clock.stop()
    torch.set_grad_enabled(True)
    steps = trainer.state.global_step
    return _result(name, seen["real"], seen["computed"], elapsed, steps, eval_loss(model, held))


class _Clock:
    """Wall time and this process's CPU time (the fairer measure on a shared machine: one thread per run)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def _result(name: str, real: int, computed: int, elapsed: tuple, steps: int, loss: float) -> dict:
    wall, cpu = elapsed
    return {
        "variant": name,
        "steps": steps,
        "real_tokens": real,
        "tokens_per_s": real / wall,
        "tokens_per_cpu_s": real / cpu,
        "padding": 1 - real / computed,
        "seconds": wall,
        "peak_rss_mb": peak_rss_bytes() / 2**20,
        "eval_loss": loss,
    }


def run_one(name: str, args: argparse.Namespace) -> dict:
    """One variant in this process."""
    import torch

    torch.set_num_threads(args.threads)
    examples = make_examples(args.examples + args.held_out, args.cutoff, seed=0)
    train, held = examples[: args.examples], examples[args.examples :]
    runner = run_hf if name in HF else run_ours
    return runner(name, args, train, held)


def table(rows: list[dict]) -> str:
    """The markdown table, with the speed-up over HF's default padding (wall clock and CPU time)."""
    base = next((r for r in rows if r["variant"] == HF[0]), None)
    lines = [
        "| variant | steps | real tokens/s | vs HF padding | real tokens/CPU-s | vs HF padding | padding share "
        "| peak RSS (MB) | held-out loss |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        wall = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base else "-"
        cpu = f"{r['tokens_per_cpu_s'] / base['tokens_per_cpu_s']:.2f}x" if base else "-"
        lines.append(
            f"| {r['variant']} | {r['steps']} | {r['tokens_per_s']:,.0f} | {wall} | {r['tokens_per_cpu_s']:,.0f} "
            f"| {cpu} | {r['padding']:.1%} | {r['peak_rss_mb']:,.0f} | {r['eval_loss']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=384)
    parser.add_argument("--held-out", type=int, default=32)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--cutoff", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="run only these variants")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: one variant in this process
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.run:
        print(json.dumps(run_one(args.run, args)))
        return
    rows = []
    passthrough = [
        f"--{key.replace('_', '-')}={getattr(args, key)}"
        for key in ("examples", "held_out", "micro_batch", "cutoff", "threads")
    ]
    for name in args.only or [*HF, *OURS]:
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run(
            [sys.executable, __file__, *passthrough, "--run", name],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{name}: done in {rows[-1]['seconds']:.1f} s", file=sys.stderr)
    print(table(rows))


if __name__ == "__main__":
    main()
