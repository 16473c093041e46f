"""Reasons shared by several dialects' refusals: why a feature cannot run here, and what to use instead."""

MULTIMODAL = (
    "is for multimodal (image/video/audio) models, which tunesmith does not train; it trains text-only causal "
    "language models: drop the key, or use the peer system for vision-language training"
)
ROLLOUT = (
    "needs online generation (PPO/GRPO-style rollouts), which tunesmith does not run; offline preference "
    "training runs here: stage dpo, kto or rm"
)
MEGATRON = (
    "selects a Megatron-core backend, which tunesmith does not have; tunesmith's own engines cover the same "
    "layouts: tp_size, cp_size, ep_size, fsdp_size, dist_config (fsdp2 or deepspeed)"
)
VLLM = (
    "configures a vLLM/SGLang/LMDeploy inference engine, which tunesmith does not use; generation runs on the "
    "transformers model (tunesmith generate / chat / serve)"
)
NPU = "is an Ascend NPU-only switch; tunesmith runs on CPU and CUDA GPUs: drop it"
HUB = (
    "uploads or downloads through a model hub, which is not implemented (runs are offline): download first and "
    "pass local paths; upload output_dir afterwards with `hf upload`"
)
UNSLOTH = "needs unsloth's CUDA kernels; the nearest thing here is LoRA with gradient_checkpointing and chunk_loss_size"
RAY = "runs through Ray, which tunesmith does not use; start more processes with NPROC_PER_NODE or torchrun"
WEBUI = "configures the peer's web UI; tunesmith's is `tunesmith board`"
QUANT_BACKEND = (
    "selects a pre-quantised checkpoint format (GPTQ/AWQ/AQLM/HQQ/EETQ/FP8...) that tunesmith cannot train on; "
    "QLoRA with bitsandbytes runs here: quantization_bit: 4 (or 8)"
)
EVAL_HARNESS = (
    "configures an external evaluation harness (benchmarks such as MMLU/C-Eval through the peer's evaluator), "
    "which tunesmith does not run; evaluate with eval_dataset / do_eval, or run the harness on the exported model"
)
REMOTE_LOG = "is a setting of a remote logging service that tunesmith does not report to; use report_to"
