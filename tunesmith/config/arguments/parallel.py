"""ParallelArguments: the device mesh (tensor, context, expert, sharded data parallel) and process-group options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.config.fields import arg

MESH_DTYPES = ("bf16", "fp16", "fp32")
MESH_DTYPE_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


@dataclass
class ParallelArguments:
    """Mesh sizes, which modules each technique applies to, and DDP / process-group settings."""

    # --- mesh sizes -----------------------------------------------------------------------------------------------
    tp_size: int = arg(
        1, "Tensor-parallel size.", aliases=("tensor_model_parallel_size",), minimum=1, sources="003"
    )
    cp_size: int = arg(
        1,
        "Context-parallel size (the sequence is split across ranks).",
        aliases=("context_parallel_size",),
        minimum=1,
        sources="003",
    )
    cp_type: str = arg(
        "ulysses",
        "Context-parallel algorithm.",
        aliases=("context_parallel_algo",),
        choices=("ulysses",),
        value_aliases={"ulysses_cp_algo": "ulysses"},
        sources="003",
    )
    fsdp_size: int = arg(
        1, "Fully sharded data-parallel size; above 1 selects FSDP2.", minimum=1, sources="003"
    )
    ep_size: int = arg(
        1,
        "Expert-parallel size (MoE experts are split across ranks).",
        aliases=("expert_model_parallel_size",),
        minimum=1,
        sources="003",
    )
    ep_fsdp_size: int = arg(1, "FSDP size inside each expert-parallel group.", minimum=1, sources="003")

    # --- FSDP2 ----------------------------------------------------------------------------------------------------
    fsdp_modules: list[str] = arg(
        help="Module patterns wrapped as FSDP units ({} or {*} matches a layer index); must not be empty.",
        factory=lambda: ["model.layers.{}", "model.embed_tokens", "lm_head"],
        sources="003",
    )
    ignored_modules: list[str] | None = arg(None, "Module patterns left out of FSDP sharding.", sources="003")
    reshard_after_forward: bool = arg(
        True,
        "FSDP: free gathered parameters after forward (less memory, one more all-gather).",
        sources="000,003",
    )
    shard_placement_fn: str | None = arg(
        None, "FSDP: import path of a function choosing each parameter's shard dimension.", sources="003"
    )
    param_dtype: str = arg(
        "bf16",
        "FSDP mixed precision: dtype parameters are gathered and computed in.",
        choices=MESH_DTYPES,
        value_aliases=MESH_DTYPE_ALIASES,
        sources="003",
        default_note="effective default: unset follows dist_config fsdp2 mixed_precision, else the training "
        "precision (bf16/fp16), else fp32; bf16 applies only when written.",
    )
    reduce_dtype: str = arg(
        "fp32",
        "FSDP mixed precision: dtype gradients are reduced in.",
        choices=MESH_DTYPES,
        value_aliases=MESH_DTYPE_ALIASES,
        sources="003",
    )
    num_to_forward_prefetch: int = arg(
        1, "FSDP: modules whose parameters are prefetched in forward.", minimum=0, sources="003"
    )
    num_to_backward_prefetch: int = arg(
        1, "FSDP: modules whose parameters are prefetched in backward.", minimum=0, sources="003"
    )

    # --- tensor / expert parallel plans and recompute -------------------------------------------------------------
    tp_colwise: list[str] = arg(
        help="Module patterns split column-wise by tensor parallelism.",
        factory=lambda: ["*.q_proj", "*.k_proj", "*.v_proj", "*.gate_proj", "*.up_proj"],
        sources="003",
    )
    tp_rowwise: list[str] = arg(
        help="Module patterns split row-wise by tensor parallelism.",
        factory=lambda: ["*.o_proj", "*.down_proj"],
        sources="003",
    )
    ep_modules: list[str] = arg(
        help="Module patterns of MoE expert blocks split by expert parallelism.",
        factory=lambda: ["model.layers.{*}.mlp.experts"],
        sources="003",
    )
    ep_fsdp_modules: list[str] = arg(
        help="Expert module patterns sharded by FSDP inside each expert-parallel group.",
        factory=lambda: ["model.layers.{*}.mlp.experts"],
        sources="003",
    )
    ep_dispatcher: str = arg(
        "eager", "How tokens are dispatched to experts.", choices=("eager", "fused", "mc2"), sources="003"
    )
    recompute_modules: list[str] = arg(
        help="Module patterns whose activations are recomputed when gradient_checkpointing is on.",
        factory=lambda: ["model.layers.{*}"],
        sources="003",
    )

    # --- process group and DDP ------------------------------------------------------------------------------------
    local_rank: int = arg(-1, "This process's rank on its node; set by the launcher.", sources="001")
    ddp_backend: str | None = arg(
        None,
        "Process-group backend; unset picks nccl on GPU and gloo on CPU.",
        choices=("nccl", "mpi", "ccl", "gloo", "hccl"),
        sources="001",
    )
    ddp_timeout: int = arg(1800, "Process-group timeout in seconds.", minimum=1, sources="001")
    ddp_find_unused_parameters: bool | None = arg(
        None,
        "DDP find_unused_parameters flag; unset means false.",
        sources="001",
    )
    ddp_bucket_cap_mb: int | None = arg(None, "DDP gradient bucket size in MB.", minimum=1, sources="001")
    ddp_broadcast_buffers: bool | None = arg(None, "DDP broadcast_buffers flag.", sources="001")
    accelerator_config: str | dict[str, Any] | None = arg(
        None,
        "HF Accelerator options (a JSON file or dict).",
        sources="001",
    )
    parallelism_config: dict[str, Any] | None = arg(
        None,
        "HF ParallelismConfig as a dict (dp_replicate_size, dp_shard_size, tp_size, cp_size).",
        sources="001",
    )
