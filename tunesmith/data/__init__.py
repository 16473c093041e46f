"""Data engine: dataset sources, formats, chat templates, masking, mixing, caching (and batching, in `batching/`)."""

from tunesmith.data.pipeline import DataBundle, build_datasets

__all__ = ["DataBundle", "build_datasets"]
