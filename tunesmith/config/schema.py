"""The index of every argument: canonical name -> section, dataclass field and type; alias -> canonical name."""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from tunesmith.config.fields import ArgInfo, arg_info


@dataclasses.dataclass(frozen=True)
class ArgField:
    """One canonical argument."""

    name: str
    section: str
    field: dataclasses.Field
    hint: Any
    info: ArgInfo

    @property
    def default(self) -> Any:
        """The default value (a fresh copy for mutable defaults)."""
        if self.field.default_factory is not dataclasses.MISSING:
            return self.field.default_factory()
        return self.field.default


def section_classes() -> dict[str, type]:
    """Section name -> argument dataclass, in the order sections are shown."""
    from tunesmith.config.arguments import (
        DataArguments,
        GenerationArguments,
        MethodArguments,
        ModelArguments,
        ParallelArguments,
        PreferenceArguments,
        ProfilingArguments,
        TrainingArguments,
    )

    return {
        "model": ModelArguments,
        "data": DataArguments,
        "train": TrainingArguments,
        "parallel": ParallelArguments,
        "profiling": ProfilingArguments,
        "preference": PreferenceArguments,
        "methods": MethodArguments,
        "generation": GenerationArguments,
    }


@functools.cache
def fields_by_name() -> dict[str, ArgField]:
    """Canonical name -> ArgField for every argument of every section."""
    index: dict[str, ArgField] = {}
    for section, cls in section_classes().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in index:
                raise RuntimeError(f"argument {f.name!r} is declared in two sections")
            index[f.name] = ArgField(f.name, section, f, hints[f.name], arg_info(f))
    return index


@functools.cache
def alias_table() -> dict[str, str]:
    """Every accepted key (canonical names and aliases) -> canonical name."""
    table = {name: name for name in fields_by_name()}
    for name, entry in fields_by_name().items():
        for alias in entry.info.aliases:
            if table.get(alias, name) != name:
                raise RuntimeError(f"alias {alias!r} of {name!r} is already taken by {table[alias]!r}")
            table[alias] = name
    return table


def normalize_key(key: str) -> str:
    """`--per-device-train-batch-size` -> `per_device_train_batch_size`."""
    return key.lstrip("-").replace("-", "_").strip()
