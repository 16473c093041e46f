"""`build_batcher`: pick the strategy the config asks for and wire it to the dataset and tokenizer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import datasets
import pyarrow.compute as pc
from transformers import PreTrainedTokenizerBase

from tunesmith.config.plugins import BATCHING
from tunesmith.data.batching.base import Batcher, Strategy
from tunesmith.data.batching.packing import pack_dataset
from tunesmith.data.batching.strategies import BatchSettings, document_rows, packed_rows
from tunesmith.data.batching.stream import StreamBatcher
from tunesmith.data.batching.workers import BatchWorkers
from tunesmith.data.tokenize import pretrain_eos_id
from tunesmith.utils.errors import ConfigError, DataError

logger = logging.getLogger("tunesmith")
COLUMNS = ("input_ids", "labels", "position_ids", "loss_weights")
VARLEN = ("flash_attn", "flash_attention_2", "flash_attention_3")


def build_batcher(
    cfg: Any,
    dataset: datasets.Dataset | datasets.IterableDataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> Batcher | StreamBatcher:
    """This rank's batcher over `dataset`, as `batching_strategy`, `packing` and `group_by_length` ask."""
    train = cfg.train
    settings = batch_settings(cfg, tokenizer)
    seed = train.data_seed if train.data_seed is not None else train.seed
    if isinstance(dataset, datasets.IterableDataset):
        strategy = _stream_strategy(cfg, settings)
        return StreamBatcher(dataset, strategy, settings.micro_batch_size, rank=rank, world_size=world_size)
    lengths = example_lengths(dataset, train.length_column_name if train.group_by_length else None)
    dataset, lengths, strategy = _choose(cfg, dataset, lengths, settings)
    columns = [c for c in COLUMNS if c in dataset.column_names]
    return Batcher(
        _fetcher(dataset.select_columns(columns)),
        lengths,
        strategy,
        seed=seed,
        shuffle=not train.disable_shuffling,
        drop_last=train.dataloader_drop_last,
        rank=rank,
        world_size=world_size,
        workers=batch_workers(train),
    )


def batch_workers(train: Any) -> BatchWorkers | None:
    """The thread pool building micro-batches (`batching_workers` threads, each `dataloader_prefetch_factor`
    batches ahead); None builds them in the training thread."""
    if train.batching_workers == 0:
        return None
    return BatchWorkers(
        train.batching_workers,
        prefetch=train.dataloader_prefetch_factor or 2,
        pin_memory=train.dataloader_pin_memory,
        persistent=train.dataloader_persistent_workers,
    )


def batch_settings(cfg: Any, tokenizer: PreTrainedTokenizerBase) -> BatchSettings:
    """The strategy settings from the config and the tokenizer (pad id and padding side)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ConfigError("tokenizer: it has neither a pad token nor an eos token to pad micro-batches with")
    return BatchSettings(
        micro_batch_size=cfg.train.per_device_train_batch_size,
        cutoff_len=_row_length(cfg),
        pad_id=int(pad_id),
        left_padding=getattr(tokenizer, "padding_side", "right") == "left",
        mask_4d=cfg.data.create_attention_mask_in_dataloader,
        group_by_length=cfg.train.group_by_length,
        drop_last=cfg.train.dataloader_drop_last,
        separator_id=pretrain_eos_id(tokenizer, cfg.data.template),
        label_pad_id=-100 if cfg.data.ignore_pad_token_for_loss else int(pad_id),
    )


def _strategy(name: str, settings: BatchSettings) -> Strategy:
    plugin = BATCHING.get(name)
    return plugin.factory(settings, plugin.params())


def example_lengths(dataset: datasets.Dataset, length_column: str | None = None) -> list[int]:
    """Token count of every example: the `length_column` when the dataset has it, else len(input_ids)."""
    if length_column and length_column in dataset.column_names:
        return [int(n) for n in dataset[length_column]]
    if "input_ids" not in dataset.column_names:
        raise DataError(
            f"training data: no 'input_ids' column to batch (columns: {', '.join(dataset.column_names)})"
        )
    table = dataset.select_columns(["input_ids"]).with_format("arrow")[:]
    return pc.list_value_length(table.column("input_ids")).to_pylist()


def _choose(
    cfg: Any, dataset: datasets.Dataset, lengths: list[int], settings: BatchSettings
) -> tuple[datasets.Dataset, list[int], Strategy]:
    """The dataset to batch (packed when `packing`), its lengths, and the strategy."""
    name = cfg.train.batching_strategy
    if "position_ids" in dataset.column_names:  # rows packed earlier (a saved tokenized_path)
        _only_normal(name, "the training data is already packed (it has position_ids)")
        return dataset, lengths, packed_rows(settings)
    if cfg.data.packing:
        _only_normal(name, "packing: rows are packed offline into cutoff_len rows")
        if getattr(cfg.train, "stage", "sft") == "pt":
            return dataset, lengths, _pretraining_blocks(cfg, settings)
        return _pack(dataset, lengths, settings)
    if name != "normal":
        _check_fits(lengths, settings.cutoff_len, name)
    if name == "dynamic_padding_free" and not varlen_attention(cfg):
        logger.info(
            "dynamic_padding_free with dense attention (%s): a packed row costs the square of its length, so "
            "the budget of %d real tokens is packed as %d rows of at most cutoff_len (one row needs flash "
            "attention)",
            cfg.model.attn_impl or "sdpa",
            settings.budget,
            settings.micro_batch_size,
        )
        return _pack(dataset, lengths, settings)
    return dataset, lengths, _strategy(name, settings)


def varlen_attention(cfg: Any) -> bool:
    """True when the model runs a variable-length attention kernel (flash attention), whose cost grows with each
    packed sequence's length rather than the row's."""
    return cfg.model.attn_impl in VARLEN or bool(getattr(cfg.model, "use_flash_attn", False))


def _stream_strategy(cfg: Any, settings: BatchSettings) -> Strategy:
    if cfg.data.packing and getattr(cfg.train, "stage", "sft") == "pt":
        _only_normal(cfg.train.batching_strategy, "packing: pre-training blocks are packed already")
        return _pretraining_blocks(cfg, settings)
    if cfg.data.packing:
        raise ConfigError(
            "packing: offline packing needs the whole dataset, which streaming does not give; use "
            "batching_strategy: padding_free with streaming instead"
        )
    return _strategy(cfg.train.batching_strategy, settings)


def _only_normal(name: str, why: str) -> None:
    if name != "normal":
        raise ConfigError(
            f"batching_strategy: {why}, which replaces batching_strategy {name!r}; "
            "use batching_strategy: normal with it, or turn packing off"
        )


def _check_fits(lengths: Sequence[int], cutoff_len: int, what: str) -> None:
    for row, n in enumerate(lengths):
        if n > cutoff_len:
            raise DataError(
                f"training data row {row}: {n} tokens exceed cutoff_len {cutoff_len}, which {what} "
                "needs as the per-example limit; raise cutoff_len or truncate the data"
            )


def _row_length(cfg: Any) -> int:
    """The longest row: cutoff_len, or packing_length for packed rows (ms-swift)."""
    data = cfg.data
    if data.packing_length is None:
        return data.cutoff_len
    if not (data.packing or data.neat_packing):
        raise ConfigError(
            f"{cfg.where('packing_length')}: only used with packing (or neat_packing); set packing: true"
        )
    return data.packing_length


def _pack(
    dataset: datasets.Dataset, lengths: list[int], settings: BatchSettings
) -> tuple[datasets.Dataset, list[int], Strategy]:
    """Offline packing (`packing` / `neat_packing`) of fine-tuning examples, attention kept inside each."""
    _check_fits(lengths, settings.cutoff_len, "packing")
    packed, report = pack_dataset(dataset, lengths, settings.cutoff_len)
    logger.info("%s; attention stays inside each example", report.describe())
    return packed, example_lengths(packed), packed_rows(settings)


def _pretraining_blocks(cfg: Any, settings: BatchSettings) -> Strategy:
    """Pre-training blocks are concatenated documents: neat_packing keeps attention inside each document (cut
    after every EOS); plain packing lets it cross document boundaries, as pre-training usually does."""
    if not cfg.data.neat_packing:
        logger.info(
            "packing (stage pt): documents are concatenated into cutoff_len blocks and attention crosses "
            "document boundaries inside a block; set neat_packing: true to keep it inside each document"
        )
        return _strategy("normal", settings)
    if settings.separator_id is None:
        raise ConfigError(
            "neat_packing (stage pt): the tokenizer has no EOS token to find document boundaries"
        )
    logger.info("neat_packing (stage pt): attention stays inside each document of a block")
    return document_rows(settings)


def _fetcher(dataset: datasets.Dataset) -> Callable[[list[int]], list[dict[str, Any]]]:
    """Rows by index, as a list of dicts (one Arrow read per micro-batch)."""

    def fetch(indices: list[int]) -> list[dict[str, Any]]:
        part = dataset[indices]
        return [dict(zip(part, values, strict=True)) for values in zip(*part.values(), strict=True)]

    return fetch
