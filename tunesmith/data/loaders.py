"""Read one `DatasetSpec` into a raw `datasets.Dataset` (or `IterableDataset` when streaming)."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path

import datasets

from tunesmith.data.registry import DatasetSpec
from tunesmith.utils.errors import DataError

BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".txt": "text",
}
TEXT_BUILDERS = ("json", "csv", "text")


def data_files(spec: DatasetSpec) -> list[Path]:
    """The local files of a file spec (a folder gives its data files, sorted); a DataError when missing."""
    path = Path(spec.path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in BUILDERS)
        if not files:
            raise DataError(f"{path}: folder has no data files ({', '.join(BUILDERS)}) [{spec.origin}]")
        return files
    if not path.is_file():
        raise DataError(f"{path}: file does not exist [{spec.origin}]")
    if path.suffix.lower() not in BUILDERS:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; allowed: {', '.join(BUILDERS)}")
    return [path]


def load_raw(
    spec: DatasetSpec, *, streaming: bool, num_proc: int | None, cache_dir: str | None
) -> datasets.Dataset | datasets.IterableDataset:
    """Load the raw rows of `spec` with the `datasets` library; bad files raise a DataError naming file and line."""
    if spec.source != "file":
        return _load_hub(spec, streaming=streaming, cache_dir=cache_dir)
    files = data_files(spec)
    builders = {BUILDERS[f.suffix.lower()] for f in files}
    if len(builders) > 1:
        raise DataError(f"{spec.path}: mixes file types {sorted(builders)}; keep one type per dataset")
    builder = builders.pop()
    try:
        loaded = datasets.load_dataset(
            builder,
            data_files=[str(f) for f in files],
            split="train",
            streaming=streaming,
            cache_dir=cache_dir,
            num_proc=None if streaming or len(files) < 2 else num_proc,
            # `datasets` keys its own copy by path, size and time: re-read, since our key (contents) changed
            download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD,
        )
    except Exception as err:  # the datasets/pyarrow message has no line number: find the bad line ourselves
        raise _explain(files, builder, err) from err
    if not streaming and len(loaded) == 0:
        raise DataError(f"{spec.path}: dataset is empty [{spec.origin}]")
    return loaded


def first_row(raw: datasets.Dataset | datasets.IterableDataset, spec: DatasetSpec) -> dict:
    """The first row (reads only the first chunk of a stream); a DataError when empty or unreadable."""
    try:
        return next(iter(raw))
    except StopIteration:
        raise DataError(f"{spec.path}: dataset is empty [{spec.origin}]") from None
    except Exception as err:  # a stream parses lazily: its bad lines surface here
        if spec.source != "file":
            raise
        files = data_files(spec)
        raise _explain(files, BUILDERS[files[0].suffix.lower()], err) from err


def _explain(files: list[Path], builder: str, err: Exception) -> DataError:
    if builder in TEXT_BUILDERS:
        for path in files:
            problem = encoding_problem(path)
            if problem:
                return DataError(problem)
    if builder == "json":
        for path in files:
            problem = find_json_problem(path)
            if problem:
                return DataError(problem)
    names = ", ".join(str(f) for f in files)
    return DataError(f"{names}: cannot be read as {builder}: {_root_cause(err)}")


def _root_cause(err: BaseException) -> str:
    """The innermost message of an error chain: `datasets` wraps the parser's own message (e.g. pandas' "Expected
    2 fields in line 3, saw 3") in a generic "An error occurred while generating the dataset"."""
    while err.__cause__ is not None or (err.__context__ is not None and not err.__suppress_context__):
        err = err.__cause__ or err.__context__
    text = " ".join(str(err).split())  # one line
    return (text[:300] + " ...") if len(text) > 300 else text or repr(err)


def not_utf8(spec: DatasetSpec, err: UnicodeDecodeError) -> DataError:
    """The DataError for a spec whose text turned out not to be UTF-8 while being read: file, line, byte."""
    files = data_files(spec) if spec.source == "file" else []
    problem = next((p for p in map(encoding_problem, files) if p), None)
    return DataError(problem or f"{spec.path}: not UTF-8 text ({err.reason}) [{spec.origin}]")


def encoding_problem(path: Path, chunk: int = 1 << 20) -> str | None:
    """Where a text data file stops being UTF-8 (file, line, byte offset), or None when it all decodes."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1
    with path.open("rb") as f:
        while block := f.read(chunk):
            try:
                decoder.decode(block, final=len(block) < chunk)
            except UnicodeDecodeError as exc:
                start = max(exc.start, 0)
                bad = offset + start
                line = lines + block[:start].count(b"\n")
                return f"{path} line {line} (byte {bad}): not UTF-8 text (byte 0x{block[start]:02x}); save it as UTF-8"
            lines += block.count(b"\n")
            offset += len(block)
    return None


def find_json_problem(path: Path) -> str | None:
    """Describe the first malformed line of a JSON Lines file (or a malformed/empty JSON document), else None."""
    with path.open(encoding="utf-8") as fh:
        head = fh.read(1)
        while head.isspace():
            head = fh.read(1)
    if not head:
        return f"{path}: file is empty"
    if head == "[" or (head == "{" and not _first_line_is_json(path)):  # one JSON document, not JSON Lines
        return _json_document_problem(path)
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                return f"{path} line {number}: malformed JSON ({e.msg} at column {e.colno})"
            if not isinstance(row, dict):
                return f"{path} line {number}: expected a JSON object, got {type(row).__name__}"
    return None


def _first_line_is_json(path: Path) -> bool:
    with path.open(encoding="utf-8") as fh:
        first = fh.readline()
    try:
        json.loads(first)
    except json.JSONDecodeError:
        return False
    return True


def _json_document_problem(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        return f"{path} line {e.lineno}: malformed JSON ({e.msg} at column {e.colno})"
    if isinstance(data, list):
        if not data:
            return f"{path}: dataset is empty"
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                return f"{path} record {i + 1}: expected a JSON object, got {type(row).__name__}"
    return None


def _load_hub(
    spec: DatasetSpec, *, streaming: bool, cache_dir: str | None
) -> datasets.Dataset | datasets.IterableDataset:
    if _offline():
        raise DataError(
            f"{spec.path}: not a local file or folder, and the hub is offline (HF_HUB_OFFLINE=1); "
            f"download the dataset and point file_name at it [{spec.origin}]"
        )
    if spec.source == "ms_hub":
        return _load_modelscope(spec, streaming=streaming, cache_dir=cache_dir)
    try:
        return datasets.load_dataset(
            spec.path,
            name=spec.subset,
            data_dir=spec.folder,
            split=spec.split,
            streaming=streaming,
            cache_dir=cache_dir,
        )
    except Exception as err:
        raise DataError(f"{spec.path}: cannot load from the Hugging Face hub: {err} [{spec.origin}]") from err


def _load_modelscope(
    spec: DatasetSpec, *, streaming: bool, cache_dir: str | None
) -> datasets.Dataset | datasets.IterableDataset:
    try:
        from modelscope import MsDataset  # type: ignore[import-not-found]
    except ImportError:
        raise DataError(
            f"{spec.path}: ms_hub_url needs the modelscope package (pip install modelscope)"
        ) from None
    loaded = MsDataset.load(
        spec.path, subset_name=spec.subset, split=spec.split, cache_dir=cache_dir, use_streaming=streaming
    )
    return loaded.to_hf_dataset() if isinstance(loaded, MsDataset) else loaded


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
