#!/bin/bash
# Multi-node tunesmith training under Slurm: one launcher per node, torchrun starts the ranks on each node.
# Usage: sbatch --nodes N examples/multinode/slurm_train.sh CONFIG.yaml [key=value ...]
#SBATCH --job-name=tunesmith
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --output=tunesmith-%j.log
set -euo pipefail

export NNODES="$SLURM_NNODES"
export NPROC_PER_NODE="${NPROC_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}"
export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
export MASTER_PORT="${MASTER_PORT:-29500}"

# NODE_RANK must be evaluated on each node, hence the inner shell.
srun --kill-on-bad-exit=1 bash -c 'NODE_RANK=$SLURM_NODEID exec tunesmith train "$@"' _ "$@"
