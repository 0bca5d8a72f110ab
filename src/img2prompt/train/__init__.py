"""Training: the shard loader (data), the accelerate loop (loop) and the fine-tuning tools (optim)."""
