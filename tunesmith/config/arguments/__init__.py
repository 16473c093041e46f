"""The argument dataclasses; every field name is unique across them, so a flat config works."""

from tunesmith.config.arguments.data import DataArguments
from tunesmith.config.arguments.generation import GenerationArguments
from tunesmith.config.arguments.methods import MethodArguments
from tunesmith.config.arguments.model import ModelArguments
from tunesmith.config.arguments.parallel import ParallelArguments
from tunesmith.config.arguments.preference import PreferenceArguments
from tunesmith.config.arguments.profiling import ProfilingArguments
from tunesmith.config.arguments.training import TrainingArguments

__all__ = [
    "DataArguments",
    "GenerationArguments",
    "MethodArguments",
    "ModelArguments",
    "ParallelArguments",
    "PreferenceArguments",
    "ProfilingArguments",
    "TrainingArguments",
]
