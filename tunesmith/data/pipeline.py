"""`build_datasets(cfg, tokenizer) -> DataBundle`: sources -> conversations -> mix/split -> ids and labels."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import pyarrow.compute as pc
from transformers import PreTrainedTokenizerBase

from tunesmith.data import cache
from tunesmith.data.formats import ROW_COLUMN, check_columns, detect_format, make_converter
from tunesmith.data.loaders import first_row, load_raw, not_utf8
from tunesmith.data.loss_weights import parse_scheme
from tunesmith.data.megatron_indexed import megatron_prefixes, pretraining_blocks, reads_megatron
from tunesmith.data.mixing import AnyDataset, merge, sample, split_dataset
from tunesmith.data.pairwise import make_kto_processor, make_pair_processor
from tunesmith.data.preference_formats import (
    PREFERENCE_STAGES,
    check_preference_columns,
    detect_preference_format,
    make_preference_converter,
)
from tunesmith.data.registry import DatasetSpec, resolve_datasets
from tunesmith.data.render import build_renderer
from tunesmith.data.tokenize import IGNORE_INDEX, make_pt_processor, make_sft_processor, pretrain_eos_id
from tunesmith.utils import dist_env
from tunesmith.utils.errors import ConfigError, DataError

logger = logging.getLogger("tunesmith")
STAGES = ("pt", "sft", *PREFERENCE_STAGES)


@dataclasses.dataclass
class DataBundle:
    """Processed datasets: `train`, `eval` (name -> dataset; "eval", or one per dataset with
    eval_on_each_dataset), `test` (from the `split` weights) and `stats` (examples, dropped, tokens,
    supervised_tokens of the train set, and per split under "splits"; empty when streaming)."""

    train: AnyDataset
    eval: dict[str, AnyDataset]
    stats: dict[str, Any]
    test: AnyDataset | None = None


def build_datasets(cfg: Any, tokenizer: PreTrainedTokenizerBase) -> DataBundle:
    """Load, convert, mix, split and tokenize the datasets of `cfg`; reuse the cache when inputs are unchanged."""
    data = cfg.data
    if reads_megatron(data):
        return _megatron_bundle(cfg)
    saved = cache.load_processed(Path(data.tokenized_path)) if data.tokenized_path else None
    if saved is not None:
        logger.warning(
            "tokenized_path %s exists: loaded it, other data arguments are ignored", data.tokenized_path
        )
        return _bundle(*saved, streaming=data.streaming)
    if data.tokenized_path and data.streaming:
        raise ConfigError(
            "tokenized_path: cannot save a streamed dataset; turn streaming off to write it once"
        )
    job = _Job(cfg, tokenizer)
    if data.streaming:
        return _bundle(job.process(), {}, streaming=True)
    key = cache.cache_key(data, job.specs, tokenizer, job.fingerprint, job.key_extra())
    with _main_process_first(data.data_shared_file_system) as is_main:
        cached = None if data.overwrite_cache and is_main else cache.load_cached(key)
        if cached is not None:
            logger.info("using cached processed data %s", cache.cache_root() / key)
        else:
            splits = job.process()
            cached = splits, _stats(splits, job.dropped, job.eval_names)
            cache.save_cached(key, *cached)
        if data.tokenized_path and is_main:
            cache.save_processed(Path(data.tokenized_path), *cached)
    return _bundle(*cached, streaming=False)


@contextlib.contextmanager
def _main_process_first(shared_file_system: bool) -> Iterator[bool]:
    """Under torch.distributed, the main process (per node; of the job with a shared file system) processes
    the data first and fills the cache; the other ranks wait at a barrier, then read the cache."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        yield True
        return
    is_main = (dist_env.rank() if shared_file_system else dist_env.local_rank()) == 0
    if not is_main:
        dist.barrier()
    yield is_main
    if is_main:
        dist.barrier()


class _Job:
    """One processing run: the resolved specs, the renderer, and the dropped-example counts per split."""

    def __init__(self, cfg: Any, tokenizer: PreTrainedTokenizerBase) -> None:
        data, train = cfg.data, cfg.train
        self.data, self.tokenizer = data, tokenizer
        self.stage = getattr(train, "stage", "sft") or "sft"
        if self.stage not in STAGES:
            raise ConfigError(f"stage: the data pipeline prepares {', '.join(STAGES)}, not {self.stage!r}")
        # the split, mixing and sampling follow `seed` (as HF and LLaMA-Factory); data_seed orders the batches only
        self.seed = getattr(train, "seed", 42)
        self.shuffle = not getattr(train, "disable_shuffling", False)
        self.specs = {
            "train": resolve_datasets(data.dataset, data.dataset_dir, "dataset"),
            "eval": resolve_datasets(data.eval_dataset, data.dataset_dir, "eval_dataset"),
        }
        # evaluating / predicting only (do_train false, or eval data alone) needs no training set
        eval_only = getattr(cfg, "evaluation_only", lambda: False)()
        if not self.specs["train"] and not (eval_only and self.specs["eval"]):
            raise ConfigError(
                "dataset: no training dataset given (a dataset_info.json name, a file path or a hub id)"
            )
        if data.dataset_text_field:
            text_column(self.specs, data.dataset_text_field, self.stage)
        if self.stage == "pt":
            concatenate = not (_explicitly_off(cfg, "packing") and not data.packing)
            eos_id = pretrain_eos_id(tokenizer, data.template)
            self.processor = make_pt_processor(tokenizer, data, eos_id, concatenate)
            self.fingerprint = f"pt:{data.template}:{concatenate}"
        else:
            renderer = build_renderer(data, tokenizer)
            if self.stage in ("dpo", "rm"):
                self.processor = make_pair_processor(renderer, tokenizer, data)
            elif self.stage == "kto":
                self.processor = make_kto_processor(renderer, tokenizer, data)
            else:
                self.processor = make_sft_processor(renderer, tokenizer, data)
            self.fingerprint = renderer.fingerprint
        self.dropped: dict[str, int] = {}
        self.eval_names: list[str] = []

    def key_extra(self) -> dict[str, Any]:
        """What else the output depends on: pre-training blocks are cut per batch of each worker's shard."""
        extra = {"stage": self.stage, "seed": self.seed, "shuffle": self.shuffle}
        if self.stage == "pt":
            extra["batches"] = [self.data.preprocessing_batch_size, self.data.preprocessing_num_workers]
        if self.data.token_loss_weights:  # the rules themselves: a JSON file's content may change
            extra["token_loss_weights"] = parse_scheme(self.data.token_loss_weights).fingerprint()
        return extra

    def process(self) -> datasets.DatasetDict | dict[str, AnyDataset]:
        """Every split, tokenized: keys train, eval / eval_<i> (one per eval dataset), test."""
        data = self.data
        raw: dict[str, AnyDataset | None] = {"train": None}
        if self.specs["train"]:
            train = merge(
                [self._conversations(s) for s in self.specs["train"]],
                data.mix_strategy,
                data.interleave_probs,
                self.seed,
            )
            if data.streaming and self.shuffle:
                train = train.shuffle(seed=self.seed, buffer_size=data.buffer_size)
            raw = dict(
                zip(
                    ("train", "eval", "test"),
                    split_dataset(train, data.val_size, data.split, self.seed, self.shuffle),
                    strict=True,
                )
            )
        if self.specs["eval"]:
            parts = [self._conversations(s) for s in self.specs["eval"]]
            if data.eval_on_each_dataset:
                self.eval_names = [s.name for s in self.specs["eval"]]
                raw.update({f"eval_{i}": part for i, part in enumerate(parts)})
            else:
                raw["eval"] = merge(parts, data.mix_strategy, data.interleave_probs, self.seed)
        out = {name: self._tokenize(name, ds) for name, ds in raw.items() if ds is not None}
        if "train" not in out:  # evaluation only: an empty training split with the eval set's columns
            first = next(iter(out.values()))
            out["train"] = first.take(0) if data.streaming else first.select([])
        return out if data.streaming else datasets.DatasetDict(out)

    def _conversations(self, spec: DatasetSpec) -> AnyDataset:
        data = self.data
        raw = load_raw(
            spec,
            streaming=data.streaming,
            num_proc=data.preprocessing_num_workers,
            cache_dir=str(cache.cache_root() / "hf"),
        )
        first = first_row(raw, spec)
        columns = list(first)
        _refuse_media(spec, columns)
        preference = self.stage in PREFERENCE_STAGES
        if spec.auto_format:
            (detect_preference_format if preference else detect_format)(spec, columns, first, self.stage)
        (check_preference_columns if preference else check_columns)(spec, columns, self.stage)
        if spec.num_samples is not None and not data.streaming:  # a random draw: keep each row's own position
            raw = raw.add_column(ROW_COLUMN, list(range(len(raw))))
            columns = [*columns, ROW_COLUMN]
        raw = sample(raw, spec.num_samples, getattr(data, "max_samples", None), self.seed)
        try:
            return raw.map(
                (make_preference_converter if preference else make_converter)(spec, self.stage),
                batched=True,
                with_indices=True,
                batch_size=data.preprocessing_batch_size,
                remove_columns=columns,
                **self._map_kwargs("Converting " + spec.name, raw),
            )
        except UnicodeDecodeError as err:  # the reader kept bytes that are not UTF-8: say where they are
            raise not_utf8(spec, err) from None

    def _tokenize(self, name: str, ds: AnyDataset) -> AnyDataset:
        before = None if isinstance(ds, datasets.IterableDataset) else len(ds)
        out = ds.map(
            self.processor,
            batched=True,
            batch_size=self.data.preprocessing_batch_size,
            remove_columns=_columns(ds),
            **self._map_kwargs(f"Tokenizing {name}", ds),
        )
        if before is not None:
            self.dropped[name] = before - len(out) if self.stage != "pt" else 0
            _check_kept(name, len(out), self.dropped[name], self.data.cutoff_len)
        return out

    def _map_kwargs(self, desc: str, ds: AnyDataset) -> dict[str, Any]:
        if self.data.streaming:
            return {}
        # our own cache decides reuse; a fresh fingerprint also spares `datasets` from hashing the tokenizer
        return {
            "num_proc": _num_proc(
                self.data.preprocessing_num_workers, len(ds), self.data.preprocessing_batch_size
            ),
            "load_from_cache_file": False,
            "new_fingerprint": uuid.uuid4().hex,
            "desc": desc,
        }


def text_column(specs: dict[str, list[DatasetSpec]], column: str, stage: str) -> None:
    """TRL's dataset_text_field: the text column of datasets given by path or hub id (plain text trains with
    stage pt here: every token is a label, as TRL's language-modelling SFT)."""
    if stage != "pt":
        raise ConfigError(
            f"dataset_text_field: plain-text data trains with stage: pt here (every token a label); now stage "
            f"{stage!r}, whose data are conversations (messages, instruction/output ...)"
        )
    for spec in [s for group in specs.values() for s in group if s.auto_format]:
        spec.columns.setdefault("text", column)


_ROWS_PER_PROC = 2000  # below this a worker process costs more (fork, pickling) than it saves


def _num_proc(asked: int | None, rows: int, batch_size: int) -> int | None:
    """Worker processes for `datasets.map`: what the config asks, but no more than this machine's cores, the
    number of batches, or one per _ROWS_PER_PROC rows (a 16-process map of a small set on a 2-core machine,
    common in LLaMA-Factory configs, only forks processes that wait, and they were seen to die mid-map)."""
    if not asked or asked <= 1:
        return None
    usable = min(
        asked, os.cpu_count() or 1, max(1, -(-rows // max(1, batch_size))), max(1, rows // _ROWS_PER_PROC)
    )
    if usable < asked:
        logger.info(
            "preprocessing_num_workers: %d asked, %d used (cores and batches available)", asked, usable
        )
    return usable if usable > 1 else None


MEDIA_COLUMNS = ("images", "videos", "audios", "image", "video", "audio")


def _refuse_media(spec: DatasetSpec, columns: list[str]) -> None:
    """Rows with images, videos or audio are multimodal data: refused, never trained on as text alone."""
    media = [c for c in columns if c in MEDIA_COLUMNS]
    if media:
        raise ConfigError(
            f"dataset {spec.name!r}: column {media[0]!r} holds multimodal inputs, which tunesmith does not train "
            "(text-only causal LMs); drop the column, or use the peer system for vision/audio-language training"
        )


def _explicitly_off(cfg: Any, name: str) -> bool:
    """True when the user set `name` (LLaMA-Factory turns packing on for pt unless it is set)."""
    is_set = getattr(cfg, "is_set", None)
    return bool(is_set and is_set(name))


def _columns(ds: AnyDataset) -> list[str]:
    if ds.column_names is not None:
        return list(ds.column_names)
    return list(next(iter(ds)))


def _check_kept(name: str, kept: int, dropped: int, cutoff_len: int) -> None:
    if dropped:
        logger.warning(
            "%s: dropped %d example(s) with no supervised token left after cutoff_len=%d",
            name,
            dropped,
            cutoff_len,
        )
    if kept == 0:
        raise DataError(
            f"{name} set: no example left ({dropped} dropped: nothing to train on within cutoff_len)"
        )


def split_stats(ds: datasets.Dataset, dropped: int) -> dict[str, int]:
    """examples, dropped, tokens and supervised_tokens of one processed split."""
    table = ds.data.table
    labels = pc.list_flatten(table.column("labels"))
    return {
        "examples": len(ds),
        "dropped": dropped,
        "tokens": int(pc.sum(pc.list_value_length(table.column("input_ids"))).as_py() or 0),
        "supervised_tokens": int(pc.sum(pc.not_equal(labels, IGNORE_INDEX)).as_py() or 0),
    }


def _stats(splits: datasets.DatasetDict, dropped: dict[str, int], eval_names: list[str]) -> dict[str, Any]:
    per_split = {name: split_stats(ds, dropped.get(name, 0)) for name, ds in splits.items()}
    return {**per_split["train"], "splits": per_split, "eval_names": eval_names}


def _megatron_bundle(cfg: Any) -> DataBundle:
    """`data_manager_type: mg`: pre-training blocks of `cutoff_len` tokens from the Megatron indexed datasets that
    `data_path` names (already tokenized: no template, no cache), split by val_size / split as usual."""
    data, train = cfg.data, cfg.train
    blocks = pretraining_blocks(megatron_prefixes(data.dataset), data.cutoff_len, data.max_samples)
    shuffle = not train.disable_shuffling
    parts = split_dataset(blocks, data.val_size, data.split, train.seed, shuffle)
    splits = {k: v for k, v in zip(("train", "eval", "test"), parts, strict=True) if v is not None}
    return _bundle(splits, _stats(datasets.DatasetDict(splits), {}, []), streaming=False)


def _bundle(splits: Any, stats: dict[str, Any], *, streaming: bool) -> DataBundle:
    splits = dict(splits)
    if streaming:
        splits = {
            k: v.to_iterable_dataset() if isinstance(v, datasets.Dataset) else v for k, v in splits.items()
        }
    names = stats.get("eval_names") or []
    evals = {names[int(k[5:])]: v for k, v in splits.items() if k.startswith("eval_")}
    evals.update(
        {k[11:]: v for k, v in splits.items() if k.startswith("validation_")}
    )  # LLaMA-Factory's folders
    for key in ("eval", "validation"):
        if key in splits:
            evals["eval"] = splits[key]
    return DataBundle(train=splits["train"], eval=evals, stats=stats, test=splits.get("test"))
