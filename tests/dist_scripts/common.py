"""Shared pieces of the scripts the dist tests launch: tiny models, fixed batches, one training step."""

from __future__ import annotations

import json

import torch
import torch.distributed as dist
import torch.nn.functional as F

VOCAB = 128
SEQ = 16
GLOBAL_BATCH = 4
STEPS = 3
LR = 1e-2
SGD_LR = 1.0


def tiny_model(arch: str = "llama", seed: int = 0) -> torch.nn.Module:
    """A tiny random-init transformers causal LM, identical on every rank for the same seed."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen3MoeConfig,
        Qwen3MoeForCausalLM,
    )

    common = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    elif arch == "qwen3_moe":
        config = Qwen3MoeConfig(
            **common,
            head_dim=8,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            decoder_sparse_step=1,
            norm_topk_prob=True,
            router_aux_loss_coef=0.0,
        )
        model = Qwen3MoeForCausalLM(config)
    else:
        raise ValueError(arch)
    model.config.use_cache = False
    return model.float()


def shard_last_dim(param: torch.Tensor):
    """A `shard_placement_fn`: shard matrices along their last dimension (FSDP2's default is dim 0)."""
    from torch.distributed.tensor import Shard

    return Shard(param.dim() - 1) if param.dim() == 2 else None


def batches(steps: int = STEPS, batch: int = GLOBAL_BATCH, seq: int = SEQ, seed: int = 1) -> list[dict]:
    """Fixed global batches with some unsupervised (-100) label positions."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        ids = torch.randint(0, VOCAB, (batch, seq), generator=g)
        labels = ids.clone()
        labels[:, : seq // 4] = -100
        labels[0, -3:] = -100
        out.append({"input_ids": ids, "labels": labels})
    return out


def valid_tokens(labels: torch.Tensor) -> int:
    return int((labels[:, 1:] != -100).sum())


def shard(batch: dict, rank: int, parts: int) -> dict:
    """Rows of this data-parallel rank."""
    n = next(iter(batch.values())).shape[0] // parts
    return {k: v[rank * n : (rank + 1) * n] for k, v in batch.items()}


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of token cross-entropies (labels shifted by one)."""
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        labels[:, 1:].reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )


def train_step(
    model, optimizer, batch: dict, global_tokens: int, dp_scale: int = 1, group=None, **fwd
) -> float:
    """One step: loss = sum CE / global valid tokens (times `dp_scale` to undo gradient averaging over dp ranks).
    Returns the global loss (summed over `group`)."""
    logits = model(input_ids=batch["input_ids"], use_cache=False, **fwd).logits
    loss = token_loss_sum(logits, batch["labels"]) / global_tokens
    (loss * dp_scale).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    value = loss.detach().clone()
    if group is not None or (dist.is_initialized() and dp_scale > 1):
        dist.all_reduce(value, group=group)
    return float(value)


def sgd(params) -> torch.optim.Optimizer:
    """Plain SGD: unlike AdamW, its steps scale with the gradient, so a wrongly scaled gradient shows."""
    return torch.optim.SGD(params, lr=SGD_LR)


def adamw(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=LR)


def reference_losses(arch: str = "llama", steps: int = STEPS, make_optimizer=adamw) -> list[float]:
    """Losses of the 1-process run on the whole global batch."""
    model = tiny_model(arch)
    opt = make_optimizer(model.parameters())
    return [train_step(model, opt, b, valid_tokens(b["labels"])) for b in batches(steps)]


def max_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def write_result(path: str, result: dict) -> None:
    """Rank 0 writes the JSON; then every rank leaves the group together (a rank exiting while others still work
    can abort in DeepSpeed's/gloo's threads at interpreter shutdown)."""
    if not dist.is_initialized() or dist.get_rank() == 0:
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
