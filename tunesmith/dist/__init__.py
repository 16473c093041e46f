"""Parallelism engines: process group setup, device mesh, DDP, FSDP2, tensor / context (Ulysses) / expert parallel,
DeepSpeed, sharded checkpoints. `parallelize(model, cfg, world_size)` applies them from a config."""
