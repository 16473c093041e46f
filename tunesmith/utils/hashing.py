"""Content checksums of files (checkpoints, data files, cache entries): BLAKE2b, streamed."""

from __future__ import annotations

import hashlib
from pathlib import Path

ALGORITHM = "blake2b"


def file_digest(path: str | Path) -> str:
    """The hex BLAKE2b-128 digest of a file's bytes, read in chunks (any size, constant memory)."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
