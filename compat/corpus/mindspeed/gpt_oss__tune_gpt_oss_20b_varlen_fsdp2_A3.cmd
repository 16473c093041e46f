NPUS_PER_NODE=16
MASTER_ADDR=localhost
MASTER_PORT=6499
NNODES=1
NODE_RANK=0
WORLD_SIZE=$(($NPUS_PER_NODE*$NNODES))
torchrun $DISTRIBUTED_ARGS train_fsdp2.py examples/fsdp2/gpt_oss/tune_gpt_oss_20b_varlen_fsdp2_A3.yaml \
    --model.model_name_or_path /home/data/gpt-oss-20b-hf/ \
    --model.tokenizer_name_or_path None \
    --data.dataset alpaca_full \
    --parallel.fsdp_size 16 \
    --parallel.ep_size 4 \
    --parallel.ep_fsdp_size 4 \
    --training.per_device_train_batch_size 1 \
    --training.gradient_accumulation_steps 1 \
    --training.output_dir ./output \
    --optimization.use_fused_rmsnorm True \
    --optimization.moe_grouped_gemm True \
    --optimization.use_fused_rotary_pos_emb True \
    --optimization.use_flash_attn True
