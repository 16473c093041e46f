"""Loading a torch distributed checkpoint without running code from it.

DCP keeps its index (`.metadata`) as a pickle and non-tensor values as `torch.save` bytes read with
`weights_only=False`, so a crafted checkpoint could run any code on load. `SafeReader` unpickles the index with an
allow-list of DCP's own metadata classes (plus torch sizes, dtypes and paths), and `SafeLoadPlanner` reads the
non-tensor values with `weights_only=True`. Anything else is a ConfigError naming the file and the class.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import ReadItem

from tunesmith.utils.errors import ConfigError

_ALLOWED = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata",
        "MetadataIndex",
        "StorageMeta",
        "TensorProperties",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"Path", "PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals (and torch dtypes); refuses everything else."""

    def __init__(self, file: Any, where: str) -> None:
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise ConfigError(
            f"{self.where}: refused to load {module}.{name}: a torch distributed checkpoint's metadata holds only "
            "DCP's own classes, so this file was not written by torch distributed checkpoint (it could run code)"
        )


def read_metadata(path: str | Path) -> Metadata:
    """The DCP index `path` (a `.metadata` file), unpickled with the allow-list."""
    with Path(path).open("rb") as f:
        try:
            metadata = _MetadataUnpickler(f, str(path)).load()
        except ConfigError:
            raise
        except Exception as exc:  # a truncated or garbled index: name it instead of a traceback
            raise ConfigError(f"{path}: unreadable torch distributed checkpoint metadata ({exc})") from None
    if not isinstance(metadata, Metadata):
        raise ConfigError(f"{path}: not torch distributed checkpoint metadata ({type(metadata).__name__})")
    return metadata


class SafeReader(FileSystemReader):
    """A `FileSystemReader` whose `.metadata` is read by `read_metadata`."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        metadata = read_metadata(self._get_metadata_path(kwargs.get("rank")))
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's default load planner; each non-tensor value must load with `torch.load(weights_only=True)` first,
    so the planner's own (unrestricted) load of the same bytes meets only allowed classes."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        try:
            torch.load(io.BytesIO(value.getvalue()), weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as exc:
            raise ConfigError(
                f"torch distributed checkpoint: refused the value of {read_item.dest_index.fqn}: {exc}"
            ) from None
        value.seek(0)
        super().load_bytes(read_item, value)
