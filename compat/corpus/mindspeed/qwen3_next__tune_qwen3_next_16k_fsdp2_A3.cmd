NPUS_PER_NODE=16
MASTER_ADDR=localhost
MASTER_PORT=6242
NNODES=4
NODE_RANK=0
torchrun $DISTRIBUTED_ARGS  train_fsdp2.py examples/fsdp2/qwen3_next/tune_qwen3_next_16k_fsdp2_A3.yaml \
    --model.model_name_or_path ./qwen3-next/ \
    --data.dataset alpaca_full \
    --parallel.fsdp_size 64 \
    --parallel.ep_size 1 \
    --parallel.ep_fsdp_size 1 \
    --training.per_device_train_batch_size 1 \
    --training.gradient_accumulation_steps 1 \
    --training.output_dir ./output \
    --optimization.chunk_loss_size 1024 \
    --optimization.use_triton_gdn False \
    --optimization.use_flash_gdn False \
    --optimization.use_fused_rmsnorm True \
    --optimization.moe_grouped_gemm True \
    --optimization.use_fused_rotary_pos_emb True \
    --optimization.use_flash_attn True
