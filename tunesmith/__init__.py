"""tunesmith: fine-tune and continue pre-training causal language models from one config file."""

__version__ = "0.1.0"
