"""Rewrite a corpus entry for a CPU run: only model and data paths, the output folder, 2 steps, a small cutoff.

Everything else stays as written; what cannot work here without changing nothing the config means (pushing to a
hub, more processes than the 2 CPU cores, several nodes) is neutralised, each with a note in the report.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import yaml

from compat import fixtures
from compat.entries import CORPUS, Entry, Invocation
from compat.models import model_for_id, write_adapter
from compat.tokenizer import tokenizer_for
from tunesmith.config.dialects.swift_templates import SWIFT_TEMPLATES

TINY = "builtin:tiny"
MAX_STEPS = 2
CUTOFF = 128
MODEL_KEYS = (
    "model_name_or_path",
    "tokenizer_name_or_path",
    "ref_model",
    "reward_model",
    "reward_model_path",
    "teacher_model",
    "teacher_model_name_or_path",
)
CUTOFF_KEYS = ("cutoff_len", "max_length", "max_seq_length", "block_size", "seq_length")
NETWORK_KEYS = ("push_to_hub",)
WORKER_KEYS = (
    "preprocessing_num_workers",
    "dataset_num_proc",
    "dataloader_num_workers",
)  # capped at MAX_PROCS
PARALLEL_KEYS = (  # parallel degrees: capped at MAX_PROCS, and run with that many processes
    "fsdp_size",
    "sequence_parallel_size",
    "cp_size",
    "tp_size",
    "ep_size",
    "ulysses_size",
    "context_parallel_size",
    "tensor_parallel_size",
    "expert_parallel_size",
)
SWIFT_DATA = ("dataset", "val_dataset")
MAX_PROCS = 2
MAX_SAMPLE = 1000  # rows a `#N` dataset sample may ask for
MOE_NAME = re.compile(r"moe|-a\d+(\.\d+)?b\b|mixtral", re.IGNORECASE)  # Qwen3-30B-A3B, Mixtral-8x7B, ...-MoE
MAX_ACCUMULATION = (
    4  # gradient_accumulation_steps of a 2-step run (32 x 8 x 2 rows per step ran past 10 minutes)
)
ACCUMULATION_KEYS = ("gradient_accumulation_steps", "training.gradient_accumulation_steps")


class RunFolder:
    """The working folder of one run: data files, support files, output dir."""

    def __init__(self, root: Path, inv: Invocation) -> None:
        self.root, self.inv = root, inv
        self.degree = 1  # the largest parallel degree the config asks for (after capping)
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        fixtures.write_image(root)

    @property
    def output_dir(self) -> str:
        return str(self.root / "output")

    def data_file(self, kind: str, style: str, suffix: str = ".jsonl") -> str:
        """An absolute path to the run's data file for (style, kind), written on first use."""
        path = self.data / f"{style}_{kind.replace('+', '_')}{suffix}"
        if not path.exists():
            rows = fixtures.lf_rows(kind) if style == "lf" else fixtures.rows(style, kind)
            fixtures.write_rows(path, rows)
        return str(path)

    def text_file(self) -> str:
        """A plain text file, one document per line (run_clm.py's `--train_file path.txt`)."""
        path = self.data / "text.txt"
        path.write_text("".join(r["text"] + "\n" for r in fixtures.rows("trl", "pt")), encoding="utf-8")
        return str(path)

    def kind(self, *hints: str | None) -> str:
        return fixtures.data_kind(self.inv.stage, self.inv.model_hint, *hints)


def prepare(entry: Entry, inv: Invocation, root: Path) -> RunFolder:
    """Copy the entry's support files, rewrite `inv` in place and write the data it reads; returns the folder."""
    support = CORPUS / entry.source / "_support"
    if support.is_dir():
        shutil.copytree(support, root, dirs_exist_ok=True)
    run = RunFolder(root, inv)
    if inv.config is not None:
        _rewrite_config(run, inv.config, entry.source)
    _rewrite_flags(run)
    _model_of_id(run)
    _template_tokens(run)
    _processes_for_degree(run)
    _rewrite_env(inv)
    if inv.config is not None:
        target = root / inv.config_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(inv.config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return run


def _adapters(run: RunFolder, config: dict[str, Any]) -> None:
    """An `adapter_name_or_path` an earlier run would have saved (a relative path): a tiny random LoRA there."""
    holders = [config, *(v for v in config.values() if isinstance(v, dict))]  # LF v1's peft_config
    for holder in holders:
        path = holder.get("adapter_name_or_path")
        if isinstance(path, str) and not Path(path).is_absolute() and "," not in path:
            write_adapter(run.root / path)
            run.inv.notes.append(f"adapter_name_or_path: a tiny random LoRA adapter written at {path}")


def _processes_for_degree(run: RunFolder) -> None:
    """A config asking for a parallel degree (fsdp/cp/tp/ep size) that the processes it names cannot hold runs with
    that many processes (capped at MAX_PROCS): its launcher would start them (torchrun over the node's devices)."""
    env = run.inv.env
    if run.degree > int(env.get("NPROC_PER_NODE", "1") or 1):
        run.inv.notes.append(f"NPROC_PER_NODE={run.degree}: the processes its parallel degree needs")
        env["NPROC_PER_NODE"] = str(run.degree)


def _model_of_id(run: RunFolder) -> None:
    """MindSpeed's `model_id` names the architecture: the tiny stand-in is a random model of that type (a tiny
    Qwen3-MoE where the model named is a mixture of experts, e.g. Qwen3-30B-A3B, whose MoE options need one)."""
    inv, config = run.inv, run.inv.config
    holder = _find(config, "model_id") if config is not None else None
    model_id = (
        (holder or {}).get("model_id")
        or inv.flags.value("model.model_id")
        or inv.flags.value("model_id")
        or ("qwen3_moe" if MOE_NAME.search(inv.model_hint or "") else None)
    )
    folder = model_for_id(model_id, run.root) if model_id else None
    if folder is None:
        return
    if config is not None:
        _set_existing(config, ("model_name_or_path",), folder)
    for key in ("model.model_name_or_path", "model_name_or_path", "model"):
        if inv.flags.get(key):
            inv.flags.set(key, folder)
    inv.notes.append(f"model: a tiny random {model_id} model (the architecture the config names)")


def _template_tokens(run: RunFolder) -> None:
    """The config's template as written; the tiny tokenizer, copied, gains the special tokens it writes."""
    inv, config = run.inv, run.inv.config
    holder = _find(config, "template") if config is not None else None
    template = (
        (holder or {}).get("template") or inv.flags.value("template") or inv.flags.value("data.template")
    )
    if not isinstance(template, str) or not template:
        return
    if inv.style == "swift":  # ms-swift's template names are its own layouts (the dialect maps them)
        template = SWIFT_TEMPLATES.get(template, template)
    made = tokenizer_for(template, run.root)
    if made is None:
        return
    folder, tokens = made
    if config is not None and _find(config, "model_name_or_path") is not None:
        _find(config, "model_name_or_path")["tokenizer_name_or_path"] = folder
    elif config is not None and config.get("model") == TINY:  # LF v1 `model:`
        config["tokenizer_name_or_path"] = folder
    else:
        inv.flags.set("tokenizer_name_or_path", folder)
    inv.notes.append(
        f"tokenizer: the tiny one with {', '.join(tokens)} added (template {template} writes them)"
    )


def _sections(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The mappings a key may live in: the top level and MindSpeed-style sections."""
    return [config] + [
        v for k, v in config.items() if k in ("model", "data", "training", "parallel") and isinstance(v, dict)
    ]


def _find(config: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((s for s in _sections(config) if key in s), None)


def _set_existing(config: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    for key in keys:
        for section in _sections(config):
            if key in section and section[key] is not None:
                section[key] = value


def _rewrite_config(run: RunFolder, config: dict[str, Any], source: str) -> None:
    inv = run.inv
    model = config.get("model")
    if isinstance(model, str):  # LF v1 `model: Qwen/Qwen3-4B`
        inv.model_hint, config["model"] = model, TINY
    holder = _find(config, "model_name_or_path")
    inv.model_hint = inv.model_hint or str((holder or {}).get("model_name_or_path", ""))
    _set_existing(config, MODEL_KEYS, TINY)
    if source == "mindspeed":
        _mindspeed_defaults(run, config)
    _adapters(run, config)
    _set_existing(config, ("output_dir",), run.output_dir)
    _set_existing(config, ("export_dir",), str(run.root / "export"))
    _set_existing(config, CUTOFF_KEYS, CUTOFF)
    training = config.setdefault("training", {}) if source == "mindspeed" else config
    (_find(config, "max_steps") or training)["max_steps"] = MAX_STEPS
    if _find(config, "output_dir") is None and inv.command in ("train", "sft", "pt"):
        training["output_dir"] = run.output_dir
    for key in (*WORKER_KEYS, *PARALLEL_KEYS):
        for section in _sections(config):
            if isinstance(section.get(key), int) and section[key] > MAX_PROCS:
                inv.notes.append(f"{key}: {section[key]} -> {MAX_PROCS} (2 CPU cores)")
                section[key] = MAX_PROCS
            if key in PARALLEL_KEYS and isinstance(section.get(key), int):
                run.degree = max(run.degree, section[key])
    for section in _sections(config):
        steps = section.get("gradient_accumulation_steps")
        if isinstance(steps, int) and steps > MAX_ACCUMULATION:
            inv.notes.append(
                f"gradient_accumulation_steps: {steps} -> {MAX_ACCUMULATION} (a 2-step run on 2 cores)"
            )
            section["gradient_accumulation_steps"] = MAX_ACCUMULATION
    for key in NETWORK_KEYS:
        for section in _sections(config):
            if section.pop(key, None):
                inv.notes.append(f"{key} removed (no network here)")
    if source == "lf_v1":
        _lf_v1_data(run, config)
    elif inv.style == "lf":
        _lf_data(run, config)
    else:
        _trl_yaml_data(run, config)


def _mindspeed_defaults(run: RunFolder, config: dict[str, Any]) -> None:
    """MindSpeed YAMLs leave the model and data to the launch script: give them ours, as the script would."""
    model = config.setdefault("model", {})
    if "model_name_or_path" not in model and not run.inv.flags.get("model.model_name_or_path"):
        model["model_name_or_path"] = TINY
        run.inv.notes.append("model.model_name_or_path added (the launch script passes it)")
    data = config.setdefault("data", {})
    if "dataset" not in data and not run.inv.flags.get("data.dataset"):
        # pre-training scripts pass the raw file inline (`--data.dataset '{"file_name": ...}'`), fine-tuning ones a name
        data["dataset"] = {"file_name": "corpus.json"} if run.inv.stage == "pt" else "corpus_data"
        run.inv.notes.append("data.dataset added (the launch script passes it)")


def _lf_names(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _lf_data(run: RunFolder, config: dict[str, Any]) -> None:
    """LF names -> entries of a local dataset_info.json; paths -> a local file; inline specs -> our file."""
    registry: dict[str, Any] = {}
    for key in ("dataset", "eval_dataset"):
        holder = _find(config, key)
        if holder is None or holder[key] is None:
            continue
        holder[key] = _lf_value(run, holder[key], registry)
    if registry:
        holder = _find(config, "dataset") or config
        holder["dataset_dir"] = str(run.data)
        (run.data / "dataset_info.json").write_text(json.dumps(registry, indent=1), encoding="utf-8")
    _set_existing(config, ("tokenized_path",), str(run.root / "tokenized"))


def _lf_value(run: RunFolder, value: Any, registry: dict[str, Any]) -> Any:
    if isinstance(value, dict) or (isinstance(value, str) and value.lstrip().startswith("{")):
        spec = json.loads(value) if isinstance(value, str) else dict(value)
        spec["file_name"] = run.data_file(run.kind(), "lf", ".json")
        return json.dumps(spec) if isinstance(value, str) else spec
    names = _lf_names(value)
    for name in names:
        if "/" in name or Path(name).suffix in (".json", ".jsonl", ".csv", ".parquet"):
            _write_at(run, name, run.kind(name))
        else:
            kind = run.kind(name)
            registry[name] = fixtures.lf_entry(Path(run.data_file(kind, "lf", ".json")).name, kind)
    return value


def _write_at(run: RunFolder, relative: str, kind: str) -> None:
    """Data the config names by a relative path: written at that path (absolute paths are left alone)."""
    if not Path(relative).is_absolute():
        fixtures.write_rows(run.root / relative, fixtures.lf_rows(kind))


def _lf_v1_data(run: RunFolder, config: dict[str, Any]) -> None:
    """`train_dataset: data/v1_sft_demo.yaml`: each dataset of that file gets a local file (hub ones too)."""
    for key in ("train_dataset", "eval_dataset"):
        ref = config.get(key)
        if not isinstance(ref, str):
            continue
        path = run.root / ref
        if not ref.endswith((".yaml", ".yml")) or not path.is_file():
            _write_at(run, ref, run.kind(ref))
            continue
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for name, item in spec.items():
            kind = "pairwise" if item.get("converter") == "pair" else run.kind(name, item.get("path"))
            item["path"], item["source"] = f"data/{name}.jsonl", "local"
            item.pop("split", None)
            fixtures.write_rows(run.root / item["path"], _v1_rows(kind))
        path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")


def _v1_rows(kind: str) -> list[dict[str, Any]]:
    if kind == "pairwise":  # the layout of the hub set the demo names (HuggingFaceH4/orca_dpo_pairs)
        return [
            {"prompt": q, "chosen": _turns(q, r["chosen"]), "rejected": _turns(q, r["rejected"])}
            for r in fixtures.rows("lf", "pairwise")
            for q in [r["instruction"]]
        ]
    return fixtures.lf_rows(kind)


def _turns(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def _trl_yaml_data(run: RunFolder, config: dict[str, Any]) -> None:
    if "dataset_name" in config:
        config["dataset_name"] = run.data_file(run.kind(str(config["dataset_name"])), "trl")
    for item in config.get("datasets") or []:
        if isinstance(item, dict) and "path" in item:
            item["path"] = run.data_file(run.kind(str(item["path"])), "trl")


def _rewrite_flags(run: RunFolder) -> None:
    inv, flags = run.inv, run.inv.flags
    for key in ("model", "model.model_name_or_path", *MODEL_KEYS):
        if flags.get(key) and flags.value(key):
            inv.model_hint = inv.model_hint or flags.value(key) or ""
            flags.set(key, TINY)
    if inv.config is None or flags.get("training.output_dir"):
        flags.set("training.output_dir" if flags.get("training.output_dir") else "output_dir", run.output_dir)
    if inv.config is None:
        flags.set("max_steps", str(MAX_STEPS))
    for key in (*CUTOFF_KEYS, *(f"data.{k}" for k in CUTOFF_KEYS)):
        if flags.get(key):
            flags.set(key, str(CUTOFF))
    sections = ("", "data.", "training.", "parallel.")
    for key in [f"{section}{k}" for section in sections for k in (*WORKER_KEYS, *PARALLEL_KEYS)]:
        value = flags.value(key)
        if value and value.isdigit() and int(value) > MAX_PROCS:
            inv.notes.append(f"--{key} {value} -> {MAX_PROCS} (2 CPU cores)")
            flags.set(key, str(MAX_PROCS))
        if value and value.isdigit() and key.rpartition(".")[2] in PARALLEL_KEYS:
            run.degree = max(run.degree, min(int(value), MAX_PROCS))
    for key in ACCUMULATION_KEYS:
        value = flags.value(key)
        if value and value.isdigit() and int(value) > MAX_ACCUMULATION:
            inv.notes.append(f"--{key} {value} -> {MAX_ACCUMULATION} (a 2-step run on 2 cores)")
            flags.set(key, str(MAX_ACCUMULATION))
    for key in NETWORK_KEYS:
        if flags.remove(key):
            inv.notes.append(f"--{key} removed (no network here)")
    if inv.style == "swift":
        for key in SWIFT_DATA:
            if flags.get(key):
                flags.set(key, *[_swift_dataset(run, v) for v in flags.get(key).values])
    elif inv.style == "trl":
        _trl_flags(run)
    elif flags.get("data.dataset"):
        registry: dict[str, Any] = {}
        flags.set("data.dataset", _lf_value(run, flags.value("data.dataset"), registry))
        if registry:
            flags.set("data.dataset_dir", str(run.data))
            (run.data / "dataset_info.json").write_text(json.dumps(registry, indent=1), encoding="utf-8")


def _swift_dataset(run: RunFolder, value: str) -> str:
    """`name#500` -> `<local file>#500`: the sample suffix stays (it is part of what is tested), capped at
    MAX_SAMPLE rows (the local file has a few dozen; `#100000` made a 2-step run tokenize 100,000 copies)."""
    name, hash_, count = value.partition("#")
    if hash_ and count.isdigit() and int(count) > MAX_SAMPLE:
        run.inv.notes.append(f"{value}: #{count} -> #{MAX_SAMPLE} (sample of the small local file)")
        count = str(MAX_SAMPLE)
    return run.data_file(run.kind(name), "swift") + (f"#{count}" if hash_ else "")


def _trl_flags(run: RunFolder) -> None:
    flags = run.inv.flags
    if flags.value("dataset_name"):
        flags.set("dataset_name", run.data_file(run.kind(flags.value("dataset_name")), "trl"))
    for key in ("train_file", "validation_file"):  # run_clm.py: csv, json or txt; the README's are text files
        if flags.value(key):
            flags.set(key, run.text_file())
    if flags.get("dataset_config_name") and flags.remove("dataset_config_name"):
        run.inv.notes.append(
            "--dataset_config_name dropped with the hub dataset it selected a configuration of"
        )


def _rewrite_env(inv: Invocation) -> None:
    env = inv.env
    if int(env.get("NPROC_PER_NODE", "1") or 1) > 1:
        env["MASTER_PORT"] = str(free_port())
    if int(env.get("NNODES", "1") or 1) > 1:
        for key in ("NNODES", "NODE_RANK", "MASTER_ADDR"):
            env.pop(key, None)
        inv.notes.append("multi-node variables dropped: one node here")
    for key in ("NPROC_PER_NODE", "nproc_per_node"):
        if key in env and env[key].isdigit() and int(env[key]) > MAX_PROCS:
            inv.notes.append(f"{key}={env[key]} -> {MAX_PROCS} (2 CPU cores)")
            env[key] = str(MAX_PROCS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
