"""The memory planner's arithmetic on hand-computed cases, its activation terms against what autograd saves, and
its estimate against a measured small training run."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmarks.memory import llama_config, measure_in_child
from tunesmith.config import load_config
from tunesmith.plan_memory import (
    ModelShape,
    RunSetup,
    activation_bytes,
    estimate,
    largest_micro_batch,
    layer_activation_bytes,
)
from tunesmith.plan_memory_config import memory_plan, parse_memory, run_setup
from tunesmith.planning import describe_plan

LLAMA_7B = {
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "tie_word_embeddings": False,
}
PSI = 6_738_415_616  # Llama-2-7B's parameter count


def test_7b_parameter_count() -> None:
    assert ModelShape.from_config(LLAMA_7B).total_params() == PSI


@pytest.mark.parametrize(
    ("stage", "per_rank"),
    [("zero1", 2 * PSI + 2 * PSI + 12 * PSI / 8), ("zero2", 2 * PSI + 14 * PSI / 8), ("zero3", 16 * PSI / 8)],
)
def test_zero_state_bytes_equal_the_closed_form(stage: str, per_rank: float) -> None:
    """ZeRO paper: bf16 weights (2), bf16 gradients (2), AdamW with fp32 master, momentum and variance (K = 12)."""
    run = RunSetup(param_dtype="bfloat16", master_weights=True, sharding=stage, world=8)
    est = estimate(ModelShape.from_config(LLAMA_7B), run)
    assert est.weights + est.gradients + est.optimizer == pytest.approx(per_rank, abs=8)


def test_zero3_offload_and_fp32_adamw_states() -> None:
    shape = ModelShape.from_config(LLAMA_7B)
    offload = estimate(shape, RunSetup(param_dtype="bfloat16", master_weights=True, sharding="zero3", world=8,
                                       offload_optimizer=True))  # fmt: skip
    assert offload.optimizer == 0 and offload.offloaded == pytest.approx(12 * PSI / 8, abs=8)
    single = estimate(shape, RunSetup())
    assert (single.weights, single.gradients, single.optimizer) == (4 * PSI, 4 * PSI, 8 * PSI)
    eight_bit = estimate(shape, RunSetup(optimizer="adamw_8bit"))
    assert eight_bit.optimizer == 2 * PSI
    assert estimate(shape, RunSetup(optimizer="sgd")).optimizer == 0
    fsdp = estimate(
        shape, RunSetup(sharding="fsdp2", world=8, offload_params=True)
    )  # fp32 weights, grads, AdamW
    assert (fsdp.weights, fsdp.gradients, fsdp.optimizer) == (0, 0, 0)
    assert fsdp.offloaded == pytest.approx(16 * PSI / 8, abs=8)


def test_every_optimizer_has_a_state_size() -> None:
    from tunesmith.plan_memory import STATE_BYTES
    from tunesmith.train.optimizers import OPTIMIZERS

    assert set(OPTIMIZERS) - set(STATE_BYTES) <= {"adafactor"}  # adafactor's depends on the matrix shapes


def test_lora_trains_rank_times_in_plus_out_per_target() -> None:
    shape = ModelShape.from_config(LLAMA_7B)
    est = estimate(shape, RunSetup(finetuning="lora", lora_rank=16, lora_targets=("q_proj", "v_proj")))
    assert est.trainable == 32 * 2 * 16 * (4096 + 4096)
    assert est.optimizer == 8 * est.trainable


def _saved_bytes_per_layer_token(config: dict, rows: int, seq: int, **flags: bool) -> float:
    """What autograd saves per token in one decoder layer (3 layers minus 1 layer, parameters excluded)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    counts = []
    for layers in (1, 3):
        torch.manual_seed(0)
        model = LlamaForCausalLM(
            LlamaConfig(**{**config, "num_hidden_layers": layers}, attn_implementation="sdpa")
        )
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor, params: set = params, seen: dict = seen) -> torch.Tensor:
            key = t.untyped_storage().data_ptr()
            if key not in params:
                seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
            return t

        ids = torch.randint(0, config["vocab_size"], (rows, seq))
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=flags.get("bf16", False))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
            model.model(input_ids=ids, use_cache=False)
        counts.append(sum(seen.values()))
    return (counts[1] - counts[0]) / 2 / (rows * seq)


@pytest.mark.parametrize("bf16", [False, True])
def test_layer_activations_match_what_autograd_saves(bf16: bool) -> None:
    config = llama_config(hidden=128, layers=1, vocab=512, intermediate=384)
    shape = ModelShape.from_config(config)
    measured = _saved_bytes_per_layer_token(config, rows=2, seq=64, bf16=bf16)
    if bf16:  # autocast's bf16 copy of each layer's weights is saved too; the planner counts it apart
        linear, _ = shape.layer_params()
        measured -= 2 * linear / (2 * 64)
    run = RunSetup(micro_batch=2, seq_len=64, autocast="bf16" if bf16 else None)
    assert layer_activation_bytes(shape, run) == pytest.approx(measured, rel=0.03)


def test_checkpointing_keeps_one_hidden_vector_per_layer_and_token() -> None:
    shape = ModelShape.from_config(LLAMA_7B)
    run = RunSetup(micro_batch=1, seq_len=4096)
    full, ckpt = (
        activation_bytes(shape, run),
        activation_bytes(shape, dataclasses.replace(run, checkpointing=True)),
    )
    fixed = 4096 * (12 * 4096 + 8 * 128)
    assert ckpt - fixed == 4096 * 32 * 4 * 4096
    assert full > 10 * ckpt


def test_largest_micro_batch_is_the_last_that_fits() -> None:
    shape, run = ModelShape.from_config(LLAMA_7B), RunSetup(seq_len=2048, checkpointing=True, autocast="bf16",
                                                           sharding="fsdp2", world=8)  # fmt: skip
    budget = parse_memory("80GB")
    best = largest_micro_batch(shape, run, budget)
    assert best > 0
    assert estimate(shape, dataclasses.replace(run, micro_batch=best)).peak <= budget
    assert estimate(shape, dataclasses.replace(run, micro_batch=best + 1)).peak > budget
    assert parse_memory("1.5GiB") == 3 * 2**29 and parse_memory("81559MiB") == 81559 * 2**20


def test_plan_carries_the_memory_section() -> None:
    cfg = load_config(None, ["model_name_or_path=builtin:tiny", "output_dir=/tmp/unused", "finetuning_type=full",
                             "gradient_checkpointing=true", "bf16=true"])  # fmt: skip
    run = run_setup(cfg, 1)
    assert (run.checkpointing, run.autocast, run.finetuning, run.sharding) == (True, "bf16", "full", "none")
    memory = describe_plan(cfg, count_data=False, memory="8GB")["memory"]
    assert memory["estimate"]["peak"] > memory["estimate"]["weights"] > 0
    assert set(memory["fits"]) == {"--memory", "H100 80GB", "H200 141GB"}
    assert memory == memory_plan(cfg, 1, "8GB")


def test_estimate_agrees_with_a_measured_cpu_run() -> None:
    """Peak RSS growth of a real 2-step run (full fine-tuning, AdamW, fp32) within 15% of the estimate."""
    settings = {"finetuning_type": "full", "per_device_train_batch_size": 2, "cutoff_len": 256}
    result = measure_in_child(llama_config(hidden=256, layers=2, vocab=8192), settings)
    assert result["estimate"]["peak"] == pytest.approx(result["measured_peak_growth"], rel=0.15)
