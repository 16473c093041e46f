"""Peak memory of one forward+backward with the full cross-entropy vs `chunk_loss_size` chunks.

Each variant runs in its own process and reports its peak resident memory (ru_maxrss), so the numbers do not
mix. Usage: `python benchmarks/chunk_loss.py [--vocab 32000 --seq 1024 --batch 4 --chunk 128]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def measure(vocab: int, seq: int, batch: int, chunk: int | None) -> dict:
    """Run one training forward/backward of a small Llama with a large vocabulary; return loss, time, peak RSS."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tunesmith.train.loss import CausalLMLoss, valid_tokens
    from tunesmith.utils.memory import peak_rss_bytes

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=seq,
    )
    model = LlamaForCausalLM(config).train()
    ids = torch.randint(0, vocab, (batch, seq))
    base = peak_rss_bytes()
    start = time.perf_counter()
    ce, _ = CausalLMLoss(chunk_size=chunk)(model, {"input_ids": ids, "labels": ids})
    loss = ce / valid_tokens(ids)
    loss.backward()
    peak = peak_rss_bytes()
    return {
        "chunk_loss_size": chunk,
        "loss": round(float(loss), 6),
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mib": round(peak / 2**20),
        "step_extra_mib": round((peak - base) / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child process: chunk or 0
    a = parser.parse_args()
    if a.one is not None:
        print(json.dumps(measure(a.vocab, a.seq, a.batch, a.one or None)))
        return
    logits_mib = a.batch * a.seq * a.vocab * 4 / 2**20
    print(f"batch {a.batch} x seq {a.seq}, vocab {a.vocab}: full fp32 logits = {logits_mib:.0f} MiB")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rows = []
    for chunk in (0, a.chunk):
        cmd = [
            sys.executable,
            __file__,
            "--vocab",
            str(a.vocab),
            "--seq",
            str(a.seq),
            "--batch",
            str(a.batch),
            "--one",
            str(chunk),
        ]
        rows.append(
            json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)
        )
    for row in rows:
        print(json.dumps(row))
    full, chunked = rows
    print(
        f"peak step memory: {full['step_extra_mib']} MiB -> {chunked['step_extra_mib']} MiB "
        f"({1 - chunked['step_extra_mib'] / full['step_extra_mib']:.0%} less); loss {full['loss']} vs {chunked['loss']}"
    )


if __name__ == "__main__":
    main()
