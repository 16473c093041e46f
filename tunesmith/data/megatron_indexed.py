"""Megatron / MindSpeed indexed datasets (`data_manager_type: mg`, `data_path: PREFIX`): the `PREFIX.bin` /
`PREFIX.idx` pair written by Megatron's `preprocess_data.py` (the MMapIndexedDataset format), read with numpy
memory maps and cut into pre-training blocks.

The index file holds, in order (little endian): the magic `MMIDIDX\\x00\\x00`, version (u64, 1), the token dtype code
(u8), the number of sequences (u64), the number of document indices (u64), then the arrays sequence lengths
(int32, tokens per sequence), sequence pointers (int64, byte offset of each sequence in `.bin`) and document indices
(int64, `[start, end)` boundaries of the documents over the sequences, starting with 0). The data file is the
sequences' tokens back to back.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from tunesmith.utils.errors import ConfigError, DataError

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPES: dict[int, type[np.number]] = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
}
_HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, sequence count, document index count


class IndexedDataset:
    """The sequences of one Megatron `.bin`/`.idx` pair; `ds[i]` is sequence i as a numpy array (memory-mapped)."""

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = str(prefix)
        idx, bin_path = Path(self.prefix + ".idx"), Path(self.prefix + ".bin")
        for path in (idx, bin_path):
            if not path.is_file():
                raise ConfigError(
                    f"data_path: {path} does not exist (a Megatron dataset is PREFIX.bin + PREFIX.idx)"
                )
        index = np.memmap(idx, dtype=np.uint8, mode="r")
        if index.size < _HEADER.size:
            raise DataError(f"{idx}: too short for a Megatron index header")
        magic, version, code, count, doc_count = _HEADER.unpack(index[: _HEADER.size].tobytes())
        if magic != MAGIC or version != VERSION or code not in DTYPES:
            raise DataError(
                f"{idx}: not a Megatron MMapIndexedDataset index (magic/version/dtype {magic!r} {version} {code})"
            )
        self.dtype = np.dtype(DTYPES[code])
        offset = _HEADER.size
        self.sequence_lengths = np.frombuffer(index, np.int32, count, offset)
        offset += self.sequence_lengths.nbytes
        self.sequence_pointers = np.frombuffer(index, np.int64, count, offset)
        offset += self.sequence_pointers.nbytes
        self.document_indices = np.frombuffer(index, np.int64, doc_count, offset)
        self.tokens = np.memmap(bin_path, dtype=self.dtype, mode="r")
        end = (self.sequence_pointers[-1] + self.sequence_lengths[-1] * self.dtype.itemsize) if count else 0
        if end > bin_path.stat().st_size:
            raise DataError(
                f"{bin_path}: shorter ({bin_path.stat().st_size} bytes) than its index says ({end})"
            )

    def __len__(self) -> int:
        return len(self.sequence_lengths)

    def __getitem__(self, i: int) -> np.ndarray:
        start = int(self.sequence_pointers[i]) // self.dtype.itemsize
        return self.tokens[start : start + int(self.sequence_lengths[i])]

    def documents(self) -> int:
        """The number of documents (the document index has one boundary more)."""
        return max(len(self.document_indices) - 1, 0)


def write_indexed(
    prefix: str | Path,
    sequences: Iterable[Sequence[int]],
    dtype: type[np.number] = np.int32,
    document_ends: Sequence[int] | None = None,
) -> None:
    """Write `sequences` as a Megatron `.bin`/`.idx` pair; `document_ends` are the sequence counts at which each
    document ends (default: one sequence per document, as `preprocess_data.py` writes without sentence splitting)."""
    code = {np.dtype(v): k for k, v in DTYPES.items()}[np.dtype(dtype)]
    arrays = [np.asarray(s, dtype=dtype) for s in sequences]
    lengths = np.array([len(a) for a in arrays], dtype=np.int32)
    pointers = np.concatenate(
        [[0], np.cumsum(lengths[:-1], dtype=np.int64) * np.dtype(dtype).itemsize]
    ).astype(np.int64)[: len(arrays)]
    ends = list(document_ends) if document_ends is not None else list(range(1, len(arrays) + 1))
    documents = np.array([0, *ends], dtype=np.int64)
    Path(str(prefix) + ".bin").write_bytes(b"".join(a.tobytes() for a in arrays))
    header = _HEADER.pack(MAGIC, VERSION, code, len(arrays), len(documents))
    Path(str(prefix) + ".idx").write_bytes(
        header + lengths.tobytes() + pointers.tobytes() + documents.tobytes()
    )


# Suffixes of raw data files: with `data_manager_type: mg` MindSpeed-LLM tokenizes such a file into pre-training
# blocks itself (its dataset `{file_name: raw.parquet}`), which tunesmith's pt pipeline does too.
RAW_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".arrow", ".txt")


def reads_megatron(data: Any) -> bool:
    """`data_manager_type: mg` naming Megatron prefixes; raw files (inline specs such as `{file_name: x.parquet}`
    or paths with a data suffix) go through the ordinary pipeline, as MindSpeed preprocesses them."""
    if data.data_manager_type != "mg":
        return False
    items = data.dataset if isinstance(data.dataset, list) else [data.dataset]
    return not any(isinstance(i, dict) or Path(str(i)).suffix.lower() in RAW_SUFFIXES for i in items)


def megatron_prefixes(value: str | list[str]) -> list[str]:
    """The dataset prefixes of `data_path` (a string, comma/space separated, or a list). Megatron's blend weights
    ("0.7 a 0.3 b") are refused: tunesmith reads each corpus once, in order."""
    items = [value] if isinstance(value, str) else [str(v) for v in value]
    prefixes = [p for item in items for p in item.replace(",", " ").split() if p]
    if any(_is_number(p) for p in prefixes):
        raise ConfigError(
            "data_path: Megatron blend weights are not supported with data_manager_type mg; list the prefixes only"
        )
    if not prefixes:
        raise ConfigError(
            "data_path: give the Megatron dataset prefix (PREFIX for PREFIX.bin and PREFIX.idx)"
        )
    return [p.removesuffix(".bin").removesuffix(".idx") for p in prefixes]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def pretraining_blocks(
    prefixes: Sequence[str], block_size: int, max_samples: int | None = None
) -> datasets.Dataset:
    """Every corpus's tokens back to back (documents already end with the EOD token Megatron appends), cut into
    blocks of `block_size` tokens (the last partial one dropped) as pre-training rows: input_ids = labels."""
    stream = np.concatenate([np.asarray(IndexedDataset(p).tokens, dtype=np.int64) for p in prefixes])
    count = len(stream) // block_size
    if max_samples is not None:
        count = min(count, max_samples)
    if count == 0:
        raise DataError(
            f"data_path: {len(stream)} tokens in {', '.join(prefixes)} make no block of cutoff_len={block_size}"
        )
    blocks = stream[: count * block_size].reshape(count, block_size).tolist()
    return datasets.Dataset.from_dict({"input_ids": blocks, "labels": blocks})
