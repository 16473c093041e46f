"""Built-in assets shipped inside the package: `builtin:tiny` (tokenizer + tiny Qwen2 config, no weights) and
`builtin:demo` (the quick-start datasets and their `dataset_info.json`)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from tunesmith.utils.errors import ConfigError

BUILTIN_PREFIX = "builtin:"


def _assets_dir() -> Path:
    return Path(str(files("tunesmith") / "assets"))


def builtin_names() -> list[str]:
    """The known built-in names, with their prefix (e.g. `builtin:tiny`), sorted."""
    return sorted(
        BUILTIN_PREFIX + p.name
        for p in _assets_dir().iterdir()
        if p.is_dir() and not p.name.startswith(("_", "."))
    )


def is_builtin(name: object) -> bool:
    """True when `name` is a string that starts with `builtin:` (known or not)."""
    return isinstance(name, str) and name.startswith(BUILTIN_PREFIX)


def resolve_builtin(name: str, *, field: str = "model_name_or_path") -> Path:
    """The folder of a built-in asset, e.g. `builtin:tiny` -> `.../tunesmith/assets/tiny`; `field` names the
    config key in the error raised for an unknown name."""
    known = builtin_names()
    if name not in known:
        raise ConfigError(f"{field}: unknown built-in {name!r}; known built-ins are {', '.join(known)}")
    return _assets_dir() / name.removeprefix(BUILTIN_PREFIX)
