"""The processed-data cache and `tokenized_path`.

The key is a hash of the data files' contents (BLAKE2b, streamed), every argument that changes the tokens, the
tokenizer (vocabulary, merges, special tokens, chat template, split_special_tokens) and tunesmith's processing
version: an edit that keeps a file's size and time still makes a new entry. An entry is written to a temporary
folder and renamed into place only when processing succeeded, so a failed run leaves nothing behind; its files'
sizes and checksums are stored beside it and checked on load, and an entry that fails the check (or does not load)
is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase

from tunesmith.data.loaders import data_files
from tunesmith.data.registry import DatasetSpec
from tunesmith.utils.hashing import file_digest

logger = logging.getLogger("tunesmith")

CACHE_VERSION = "2"  # bump when processing changes the ids it produces (2: content-hashed keys)
STATS_FILE = "tunesmith_stats.json"
MANIFEST_FILE = "tunesmith_manifest.json"
KEY_FIELDS = (
    "cutoff_len",
    "truncation_strategy",
    "model_name",
    "model_author",
    "dataset_text_field",
    "template",
    "train_on_prompt",
    "mask_history",
    "default_system",
    "enable_thinking",
    "tool_format",
    "max_samples",
    "val_size",
    "split",
    "mix_strategy",
    "interleave_probs",
    "eval_on_each_dataset",
    "packing",
    "neat_packing",
    "ignore_pad_token_for_loss",
)


def cache_root() -> Path:
    """`$TUNESMITH_DATA_CACHE`, else `~/.cache/tunesmith/data`."""
    return Path(os.environ.get("TUNESMITH_DATA_CACHE") or Path.home() / ".cache" / "tunesmith" / "data")


def cache_key(
    data: Any,
    specs: dict[str, list[DatasetSpec]],
    tokenizer: PreTrainedTokenizerBase,
    renderer_fingerprint: str,
    extra: dict[str, Any],
) -> str:
    """A hash of everything the processed examples depend on."""
    parts = {
        "version": CACHE_VERSION,
        "data_args": {name: getattr(data, name, None) for name in KEY_FIELDS},
        "datasets": {role: [_spec_fingerprint(s) for s in group] for role, group in specs.items()},
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "template": renderer_fingerprint,
        **extra,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of the tokenizer's vocabulary, merges, special tokens and chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = json.dumps(
        [
            type(tokenizer).__name__,
            tokenizer.special_tokens_map,
            getattr(tokenizer, "chat_template", None),
            getattr(tokenizer, "split_special_tokens", None),
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256((body + extra).encode()).hexdigest()


def _spec_fingerprint(spec: DatasetSpec) -> dict[str, Any]:
    desc = {k: v for k, v in vars(spec).items() if k != "origin"}
    if spec.source == "file":
        desc["files"] = [[str(f), f.stat().st_size, file_digest(f)] for f in data_files(spec)]
    return desc


def load_cached(key: str) -> tuple[datasets.DatasetDict, dict[str, Any]] | None:
    """The processed splits and stats stored under `key`, or None."""
    return load_processed(cache_root() / key)


def save_cached(key: str, splits: datasets.DatasetDict, stats: dict[str, Any]) -> Path:
    """Store the processed splits and stats under `key` (atomically)."""
    return save_processed(cache_root() / key, splits, stats)


def load_processed(path: Path) -> tuple[datasets.DatasetDict, dict[str, Any]] | None:
    """Load a folder written by `save_processed` (or LLaMA-Factory's `tokenized_path`), or None if absent or
    damaged (a file that fails its stored checksum, or a folder `datasets` cannot load: rebuilt, with a warning)."""
    if not (path / "dataset_dict.json").is_file():
        return None
    why = _damage(path)
    if why is None:
        try:
            splits = datasets.load_from_disk(str(path))
            stats_file = path / STATS_FILE
            stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
            return splits, stats
        except Exception as exc:  # a truncated arrow file, garbled JSON: any failure means "process again"
            why = f"it does not load ({type(exc).__name__}: {exc})"
    logger.warning("processed data %s is damaged (%s): processing the data again", path, why)
    return None


def _damage(path: Path) -> str | None:
    """Why the folder's files do not match the manifest written with them (None: they match, or no manifest)."""
    manifest = path / MANIFEST_FILE
    if not manifest.is_file():
        return None
    try:
        files = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"{MANIFEST_FILE} is unreadable"
    for name, (size, digest) in files.items():
        file = path / name
        if not file.is_file() or file.stat().st_size != size or file_digest(file) != digest:
            return f"{name} does not match its checksum"
    return None


def _write_manifest(folder: Path) -> None:
    files = {
        p.relative_to(folder).as_posix(): [p.stat().st_size, file_digest(p)]
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(files))


def save_processed(path: Path, splits: datasets.DatasetDict, stats: dict[str, Any]) -> Path:
    """Write the splits and stats to a temporary sibling folder, then rename it to `path` (when another
    process got there first with the same key, its copy is kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        splits.save_to_disk(str(tmp))
        (tmp / STATS_FILE).write_text(json.dumps(stats, indent=2))
        _write_manifest(tmp)
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        try:
            tmp.rename(path)
        except OSError:
            if not (path / "dataset_dict.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path
