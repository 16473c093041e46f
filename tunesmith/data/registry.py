"""Dataset sources: `dataset_info.json` entries, inline specs and plain paths / hub ids -> `DatasetSpec`."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from tunesmith.utils.builtin import is_builtin, resolve_builtin
from tunesmith.utils.errors import ConfigError

DATA_CONFIG = "dataset_info.json"
FORMATTINGS = ("alpaca", "sharegpt", "openai", "text")
COLUMN_KEYS = ("prompt", "query", "response", "history", "messages", "system", "tools", "text")
# preference data: LLaMA-Factory's ranking columns and kto_tag, ms-swift's rejected answer / conversation
PREFERENCE_KEYS = ("chosen", "rejected", "rejected_messages", "kto_tag")
TAG_KEYS = (
    "role_tag",
    "content_tag",
    "user_tag",
    "assistant_tag",
    "observation_tag",
    "function_tag",
    "system_tag",
)
SPEC_KEYS = (
    "file_name",
    "hf_hub_url",
    "ms_hub_url",
    "formatting",
    "columns",
    "tags",
    "ranking",
    "subset",
    "split",
    "folder",
    "num_samples",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclasses.dataclass
class DatasetSpec:
    """One dataset to load: where it lives, its format, its column and role-tag names."""

    name: str
    source: str  # "file" | "hf_hub" | "ms_hub"
    path: str  # absolute local path (file or folder) or a hub id
    formatting: str = "alpaca"
    columns: dict[str, str] = dataclasses.field(default_factory=dict)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    subset: str | None = None
    split: str = "train"
    folder: str | None = None
    num_samples: int | None = None
    origin: str = ""  # where the spec was written, for error messages
    auto_format: bool = False  # formatting not given: detect it from the columns
    ranking: bool = False  # preference pairs (chosen/rejected), for stages dpo and rm


def resolve_datasets(value: Any, dataset_dir: str | None, field: str = "dataset") -> list[DatasetSpec]:
    """`dataset` / `eval_dataset` (names, a comma-separated string, inline dicts, or a list of those) -> specs."""
    if value is None or value == "" or value == []:
        return []
    items = _split_items(value)
    base = _dataset_dir(dataset_dir)
    registry, registry_path = _read_registry(base)
    return [_resolve_item(item, base, registry, registry_path, field) for item in items]


def _split_items(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, dict):
        return [value]
    if isinstance(value, (list, tuple)):
        return [item for v in value for item in _split_items(v)]
    raise ConfigError(
        f"dataset: expected a name, a comma-separated list, an inline spec or a list, got {value!r}"
    )


def _dataset_dir(dataset_dir: str | None) -> Path:
    if dataset_dir and is_builtin(dataset_dir):
        return resolve_builtin(dataset_dir, field="dataset_dir")
    return Path(dataset_dir or ".")


def _read_registry(base: Path) -> tuple[dict[str, Any], Path]:
    path = base / DATA_CONFIG
    if not path.is_file():
        return {}, path
    try:
        registry = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(registry, dict):
        raise ConfigError(f"{path}: expected a JSON object mapping dataset names to specs")
    return registry, path


def _resolve_item(item: Any, base: Path, registry: dict, registry_path: Path, field: str) -> DatasetSpec:
    if isinstance(item, dict):
        name = str(item.get("name") or item.get("file_name") or item.get("hf_hub_url") or "inline")
        entry = {k: v for k, v in item.items() if k != "name"}
        return spec_from_entry(name, entry, Path("."), f"{field} (inline spec)")
    if not isinstance(item, str):
        raise ConfigError(f"{field}: each dataset must be a name or an inline spec, got {item!r}")
    name, num_samples = _sample_suffix(item, field)
    if name in registry:
        spec = spec_from_entry(name, registry[name], base, f"{registry_path} entry {name!r}")
    else:
        spec = _spec_from_path(name, base, registry_path, field)
    if num_samples is not None:
        spec.num_samples = num_samples
    return spec


def _sample_suffix(item: str, field: str) -> tuple[str, int | None]:
    """ms-swift's `name#500` takes 500 samples of the dataset."""
    if "#" not in item:
        return item, None
    name, count = item.rsplit("#", 1)
    if not count.isdigit() or int(count) <= 0:
        raise ConfigError(f"{field}: {item!r}: the part after '#' must be a positive sample count")
    return name, int(count)


def spec_from_entry(name: str, entry: Any, base: Path, origin: str) -> DatasetSpec:
    """Build a spec from one `dataset_info.json` entry (or inline dict); relative file names join `base`."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{origin}: expected an object with file_name and formatting, got {entry!r}")
    unknown = sorted(set(entry) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {unknown}; allowed: {', '.join(SPEC_KEYS)}")
    formatting = entry.get("formatting", "alpaca")
    if formatting not in FORMATTINGS:
        raise ConfigError(f"{origin}: unknown formatting {formatting!r}; allowed: {', '.join(FORMATTINGS)}")
    source, path = _location(entry, base, origin)
    columns = _str_map(entry.get("columns", {}), COLUMN_KEYS + PREFERENCE_KEYS, f"{origin} columns")
    tags = _str_map(entry.get("tags", {}), TAG_KEYS, f"{origin} tags")
    return DatasetSpec(
        name=name,
        source=source,
        path=path,
        formatting=formatting,
        columns=columns,
        tags=tags,
        subset=entry.get("subset"),
        split=entry.get("split", "train"),
        folder=entry.get("folder"),
        num_samples=entry.get("num_samples"),
        origin=origin,
        ranking=bool(entry.get("ranking", False)),
    )


def _location(entry: dict, base: Path, origin: str) -> tuple[str, str]:
    if "hf_hub_url" in entry:
        return "hf_hub", str(entry["hf_hub_url"])
    if "ms_hub_url" in entry:
        return "ms_hub", str(entry["ms_hub_url"])
    if "file_name" not in entry:
        raise ConfigError(f"{origin}: needs file_name (a local file or folder) or hf_hub_url / ms_hub_url")
    path = Path(str(entry["file_name"])).expanduser()
    if not path.is_absolute():
        path = base / path
    return "file", str(path.resolve())


def _str_map(value: Any, allowed: tuple[str, ...], where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object, got {value!r}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}")
    return {k: str(v) for k, v in value.items() if v is not None}


def _spec_from_path(name: str, base: Path, registry_path: Path, field: str) -> DatasetSpec:
    """A name that is not in the registry: a local file/folder (as given or under dataset_dir), or a hub id."""
    for candidate in (Path(name).expanduser(), base / name):
        if candidate.exists():
            return DatasetSpec(
                name, "file", str(candidate.resolve()), origin=f"{field} {name!r}", auto_format=True
            )
    if _HUB_ID.match(name):
        return DatasetSpec(name, "hf_hub", name, origin=f"{field} {name!r}", auto_format=True)
    if registry_path.is_file():
        known = f"; {registry_path} defines: {', '.join(sorted(_registry_names(registry_path)))}"
    else:
        known = f" (no {DATA_CONFIG} in {registry_path.parent})"
    raise ConfigError(
        f"{field}: {name!r} is not in {registry_path}, not an existing file or folder, and not a hub id{known}"
    )


def _registry_names(path: Path) -> list[str]:
    return list(json.loads(path.read_text(encoding="utf-8")))
