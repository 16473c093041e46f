"""Peak memory per device of a training run, from the model's shape alone (nothing is loaded).

The parts, in bytes: weights (by dtype and quantisation), gradients, optimizer state (by optimizer), their
sharding (DDP, FSDP2, ZeRO 1/2/3, offload), activations per decoder layer (with and without checkpointing;
attention implementation), the logits (full or chunked), and the bf16 weight copies autocast keeps.

Activation terms are what autograd saves in a transformers 5 Llama/Qwen2 decoder layer, counted with
`torch.autograd.graph.saved_tensors_hooks` (tests/test_plan_memory.py checks them against that count): per token
and layer, fp32 saves 24h + 8q + 8kv + 16i bytes (+ 4 per head for sdpa's log-sum-exp), where h is the hidden
size, q = heads x head_dim, kv = kv heads x head_dim, i the intermediate size; bf16 autocast 22h + 8q + 4kv + 8i;
eager attention adds the (heads x seq) probabilities and the repeated key/value heads.
"""

from __future__ import annotations

import dataclasses
import math

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# optimizer -> bytes of state per trainable parameter at 4-byte (fp32) parameters; adafactor, muon and galore
# depend on the matrix shapes (see `optimizer_bytes`)
STATE_BYTES = {
    "adamw_torch": 8,
    "adamw_torch_fused": 8,
    "paged_adamw_32bit": 8,
    "adamw_8bit": 2,
    "adamw_bnb_8bit": 2,
    "paged_adamw_8bit": 2,
    "lion": 4,
    "lion_32bit": 4,
    "lion_8bit": 1,
    "paged_lion_32bit": 4,
    "paged_lion_8bit": 1,
    "ademamix": 12,  # two first moments and a second moment
    "ademamix_8bit": 3,
    "rmsprop_bnb": 4,
    "rmsprop_bnb_32bit": 4,
    "rmsprop_bnb_8bit": 1,
    "sgd": 0,
    "adagrad": 4,
    "rmsprop": 4,
}
SHARDING = ("none", "ddp", "fsdp2", "zero1", "zero2", "zero3")


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """What the estimate needs from a model's config.json."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool = False
    qkv_bias: bool = False
    experts: int = 0  # routed experts per layer (0: dense MLP)
    experts_per_token: int = 0
    expert_intermediate: int = 0

    @classmethod
    def from_config(cls, config: dict) -> ModelShape:
        """The shape of a transformers config.json (Llama, Qwen2/3, Mistral and their MoE variants)."""
        text = config.get("text_config") or config
        hidden, heads = int(text["hidden_size"]), int(text["num_attention_heads"])
        experts = int(text.get("num_experts") or text.get("num_local_experts") or 0)
        return cls(
            vocab=int(text["vocab_size"]),
            hidden=hidden,
            intermediate=int(text.get("intermediate_size") or 4 * hidden),
            layers=int(text["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(text.get("num_key_value_heads") or heads),
            head_dim=int(text.get("head_dim") or hidden // heads),
            tied=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
            qkv_bias=text.get("model_type") == "qwen2" or bool(text.get("attention_bias", False)),
            experts=experts,
            experts_per_token=int(text.get("num_experts_per_tok") or 0) if experts else 0,
            expert_intermediate=int(text.get("moe_intermediate_size") or text.get("intermediate_size") or 0),
        )

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def matrices(self) -> dict[str, tuple[int, int]]:
        """(out, in) of each linear layer of one decoder layer (a MoE layer's experts in `experts`)."""
        h, i = self.hidden, self.intermediate
        mats = {"q_proj": (self.q_dim, h), "k_proj": (self.kv_dim, h), "v_proj": (self.kv_dim, h)}
        mats["o_proj"] = (h, self.q_dim)
        if self.experts:
            i = self.expert_intermediate
        mats.update({"gate_proj": (i, h), "up_proj": (i, h), "down_proj": (h, i)})
        return mats

    def layer_params(self) -> tuple[int, int]:
        """(linear weights, other parameters: norms, biases, router) of one decoder layer."""
        per_expert = sum(o * n for name, (o, n) in self.matrices().items() if name in LINEARS[4:])
        attn = sum(o * n for name, (o, n) in self.matrices().items() if name in LINEARS[:4])
        linear = attn + per_expert * max(self.experts, 1)
        other = 2 * self.hidden + (self.q_dim + 2 * self.kv_dim if self.qkv_bias else 0)
        return linear, other + self.hidden * self.experts

    def embedding_params(self) -> int:
        """Input embedding plus the output head (counted once when tied) plus the final norm."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    def total_params(self) -> int:
        linear, other = self.layer_params()
        return self.layers * (linear + other) + self.embedding_params()


@dataclasses.dataclass(frozen=True)
class RunSetup:
    """The training settings that decide memory."""

    micro_batch: int = 1
    seq_len: int = 1024
    param_dtype: str = "float32"  # dtype the weights are stored in
    autocast: str | None = None  # bf16/fp16 autocast over float32 weights
    finetuning: str = "full"  # full | freeze | lora | qlora
    lora_rank: int = 8
    lora_targets: tuple[str, ...] = LINEARS
    trainable_layers: int = 0  # freeze tuning: layers that train
    quant_bits: int | None = None
    optimizer: str = "adamw_torch"
    galore_rank: int = 0  # > 0: GaLore on the decoder's matrices
    sharding: str = "none"
    world: int = 1  # data-parallel ranks sharing the state
    offload_optimizer: bool = False
    offload_params: bool = False
    master_weights: bool = False  # DeepSpeed bf16/fp16: fp32 master copy in the optimizer state
    checkpointing: bool = False
    attention: str = "sdpa"
    chunk_size: int | None = None
    accumulation: int = 1
    label_share: float = 1.0  # positions with a target: the unchunked loss runs the LM head only there


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device: each part, and the peak (forward/backward or optimizer step, whichever is larger)."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    backward_scratch: int
    logits: int
    autocast_copies: int
    working: int  # gathered shards (FSDP2/ZeRO-3), DDP gradient buckets
    offloaded: int  # bytes moved to host memory
    peak: int
    peak_phase: str
    params: int
    trainable: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def trainable_params(shape: ModelShape, run: RunSetup) -> int:
    """Parameters that receive gradients."""
    linear, other = shape.layer_params()
    if run.finetuning == "full":
        return shape.total_params()
    if run.finetuning == "freeze":
        return min(run.trainable_layers, shape.layers) * (linear + other)
    mats = shape.matrices()
    per_layer = 0
    for name in run.lora_targets:
        out, inp = mats[name]
        copies = max(shape.experts, 1) if name in LINEARS[4:] else 1
        per_layer += copies * run.lora_rank * (out + inp)
    return shape.layers * per_layer


def weight_bytes(shape: ModelShape, run: RunSetup) -> int:
    """Stored weights: the decoder's linear weights quantised when asked, everything else in `param_dtype`."""
    linear, other = shape.layer_params()
    size = DTYPE_BYTES[run.param_dtype]
    bits = run.quant_bits or (4 if run.finetuning == "qlora" else None)
    # NF4 with double quantisation: 4 bits + one 8-bit absmax per 64 weights (+ fp32 per 256 blocks); int8: 1 byte
    per_linear = {4: 0.5 + 1 / 64 + 4 / (64 * 256), 8: 1.0}.get(bits, size) if bits else size
    base = shape.layers * (linear * per_linear + other * size) + shape.embedding_params() * size
    adapters = trainable_params(shape, run) * size if run.finetuning in ("lora", "qlora") else 0
    return int(base + adapters)


def optimizer_bytes(shape: ModelShape, run: RunSetup, trainable: int) -> int:
    """Optimizer state of the trainable parameters (before sharding; master weights included)."""
    scale = DTYPE_BYTES[run.param_dtype] / 4 if not run.master_weights else 1.0
    master = 4 * trainable if run.master_weights else 0
    if run.finetuning != "full" or (run.optimizer in STATE_BYTES and not run.galore_rank):
        per = STATE_BYTES.get(run.optimizer, 8)
        return int(trainable * per * scale) + master
    mats = [m for _ in range(shape.layers) for m in _layer_matrices(shape)]
    embed = shape.vocab * shape.hidden * (1 if shape.tied else 2)
    rest = trainable - sum(o * n for o, n in mats) - embed
    if run.galore_rank:  # Adam moments of the projected (rank x long side) gradient, plus the projector
        r = run.galore_rank
        state = sum(8 * r * max(o, n) + 4 * r * min(o, n) for o, n in mats) + 8 * (embed + rest)
    elif run.optimizer == "adafactor":  # factored second moment: one row and one column vector per matrix
        state = sum(4 * (o + n) for o, n in mats) + 4 * (shape.vocab + shape.hidden) + 4 * rest
    elif run.optimizer == "muon":  # momentum for the hidden matrices, AdamW for embeddings, head and vectors
        state = 4 * sum(o * n for o, n in mats) + 8 * (embed + rest)
    else:
        state = 8 * trainable
    return int(state * scale) + master


def _layer_matrices(shape: ModelShape) -> list[tuple[int, int]]:
    mats = shape.matrices()
    experts = max(shape.experts, 1)
    return [mats[n] for n in LINEARS[:4]] + [mats[n] for n in LINEARS[4:] for _ in range(experts)]


def layer_activation_bytes(shape: ModelShape, run: RunSetup) -> float:
    """Bytes autograd saves per token in one decoder layer (no checkpointing)."""
    h, q, kv, i = shape.hidden, shape.q_dim, shape.kv_dim, shape.intermediate
    if shape.experts:  # routed tokens pass through top-k experts
        i = shape.expert_intermediate * shape.experts_per_token
    if run.autocast or run.param_dtype != "float32":
        total = 22 * h + 8 * q + 4 * kv + 8 * i + 8
    else:
        total = 24 * h + 8 * q + 8 * kv + 16 * i + 8
    if run.attention == "eager":  # probabilities (heads x seq) and key/value repeated to every head
        probs = 4 if not (run.autocast or run.param_dtype != "float32") else 6
        total += probs * shape.heads * run.seq_len + (8 if probs == 4 else 4) * (q - kv)
    else:
        total += 4 * shape.heads  # log-sum-exp per head
    if run.finetuning in ("lora", "qlora"):
        total += DTYPE_BYTES[run.param_dtype] * run.lora_rank * len(run.lora_targets)
    return total


def activation_bytes(shape: ModelShape, run: RunSetup) -> int:
    """Activations kept through the forward pass of one micro-batch: every layer's saved tensors, or with
    checkpointing only each layer's input; plus the final norm and the rotary tables."""
    tokens = run.micro_batch * run.seq_len
    if run.checkpointing:
        per_token = shape.layers * (4 if run.param_dtype == "float32" else 2) * shape.hidden
    else:
        per_token = shape.layers * layer_activation_bytes(shape, run)
    return int(tokens * (per_token + 12 * shape.hidden + 8 * shape.head_dim))


def backward_scratch(shape: ModelShape, run: RunSetup) -> int:
    """Memory one layer's backward needs on top of what is kept: its recomputed activations (checkpointing) and
    the gradients of its largest intermediate tensors (three of the MLP's)."""
    tokens = run.micro_batch * run.seq_len
    inter = shape.expert_intermediate * shape.experts_per_token if shape.experts else shape.intermediate
    recompute = layer_activation_bytes(shape, run) if run.checkpointing else 0
    return int(tokens * (recompute + 12 * inter))


def logits_bytes(shape: ModelShape, run: RunSetup) -> int:
    """Peak of the output layer and cross-entropy: the logits, their fp32 copy and log-softmax at the end of the
    forward pass, or three fp32 vocabulary-sized gradients in backward; for the positions with a target
    (`label_share`: all of them unless the data says otherwise, an upper bound), or for one chunk of `chunk_size`
    positions (chunked loss)."""
    out = 4 if run.param_dtype == "float32" and not run.autocast else 2
    positions = min(run.chunk_size, run.seq_len) if run.chunk_size else run.seq_len * run.label_share
    return int(run.micro_batch * positions * shape.vocab * max(out + 8, 12))


def estimate(shape: ModelShape, run: RunSetup) -> MemoryEstimate:
    """Peak memory per device of one training step of `run` on a model of `shape`."""
    if run.sharding not in SHARDING:
        raise ValueError(f"sharding must be one of {SHARDING}, got {run.sharding!r}")
    n = max(run.world, 1) if run.sharding not in ("none", "ddp") else 1
    trainable = trainable_params(shape, run)
    grad_size = DTYPE_BYTES[run.param_dtype]
    weights, grads = weight_bytes(shape, run), trainable * grad_size
    optim = optimizer_bytes(shape, run, trainable)
    offloaded = 0
    stage = {"zero1": 1, "zero2": 2, "zero3": 3, "fsdp2": 3}.get(run.sharding, 0)
    weights = _shard(weights, n if stage >= 3 else 1)
    grads = _shard(grads, n if stage >= 2 else 1)
    optim = _shard(optim, n if stage >= 1 else 1)
    fsdp_offload = (
        run.offload_params and run.sharding == "fsdp2"
    )  # CPUOffloadPolicy: weights, grads and state
    if run.offload_optimizer or fsdp_offload:
        offloaded, optim = offloaded + optim, 0
    if run.offload_params:
        offloaded, weights = offloaded + weights, 0
    if fsdp_offload:
        offloaded, grads = offloaded + grads, 0
    linear, other = shape.layer_params()
    working = 0
    if stage >= 3:  # the gathered layer and the prefetched next one, plus the unsharded gradient of one layer
        working = 3 * (linear + other) * grad_size
    elif run.sharding == "ddp":
        working = trainable * grad_size  # gradient buckets (a copy of the gradients)
    copies = 2 * shape.layers * linear if run.autocast and run.param_dtype == "float32" else 0
    acts, logits, scratch = (
        activation_bytes(shape, run),
        logits_bytes(shape, run),
        backward_scratch(shape, run),
    )
    held = grads if run.accumulation > 1 else _first_grads(shape, run, grad_size, n if stage >= 2 else 1)
    static = weights + optim + working
    phases = {
        "forward/backward": static + held + copies + acts + max(logits, scratch),
        "optimizer step": static + grads + _step_scratch(shape, run, grad_size, n),
    }
    phase = max(phases, key=phases.get)
    return MemoryEstimate(
        weights, grads, optim, acts, scratch, logits, copies, working, offloaded, phases[phase], phase,
        shape.total_params(), trainable,
    )  # fmt: skip


def _step_scratch(shape: ModelShape, run: RunSetup, size: int, n: int) -> int:
    """Temporaries of a per-tensor optimizer step: two buffers the size of the largest trained matrix."""
    if run.finetuning != "full" or STATE_BYTES.get(run.optimizer, 8) == 0:
        return 0
    return 2 * shape.vocab * shape.hidden * size // n


def _first_grads(shape: ModelShape, run: RunSetup, size: int, n: int) -> int:
    """Gradients alive at the start of backward: the output head's (when it trains)."""
    return shape.vocab * shape.hidden * size // n if run.finetuning == "full" else 0


def _shard(value: int, n: int) -> int:
    return math.ceil(value / n)


def largest_micro_batch(shape: ModelShape, run: RunSetup, budget: int, limit: int = 65536) -> int:
    """The largest micro batch whose estimated peak fits `budget` bytes (0 when not even one row fits)."""
    if estimate(shape, dataclasses.replace(run, micro_batch=1)).peak > budget:
        return 0
    low, high = 1, 2
    while high <= limit and estimate(shape, dataclasses.replace(run, micro_batch=high)).peak <= budget:
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:
        mid = (low + high) // 2
        fits = estimate(shape, dataclasses.replace(run, micro_batch=mid)).peak <= budget
        low, high = (mid, high) if fits else (low, mid)
    return low
