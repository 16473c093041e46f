"""The argument declarations keep the spec's promise: every documented name is accepted, defaults match the spec
where only one system documents a name, dialect conflicts are decided as recorded, and the catalog reflects it all."""

from __future__ import annotations

import ast
import dataclasses
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config import catalog
from tunesmith.config.arguments import (
    ParallelArguments,
    TrainingArguments,
)
from tunesmith.config.coerce import coerce_value
from tunesmith.config.loader import check_value, load_config
from tunesmith.config.plugins import Registry
from tunesmith.config.schema import fields_by_name, section_classes
from tunesmith.utils.errors import ConfigError

SPEC_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "spec"
needs_spec = pytest.mark.skipif(
    not (SPEC_DIR / "ARGUMENTS.tsv").is_file(),
    reason=f"spec tables not found at {SPEC_DIR} (outside the package)",
)

# Parameters of spec 000's dist_config plugins: declared by the plugin parameter dataclasses, not as arguments.
PLUGIN_PARAMS = {"mixed_precision", "offload_params", "pin_memory", "dcp_path", "config_file", "name"}
# Spec 000 documents these plugin mappings in prose; ARGUMENTS.tsv does not list them.
SOURCES_BEYOND_TSV = {"dist_config": {"000"}, "optim_config": {"000"}, "lr_scheduler_config": {"000"}}
SYSTEM_OF = {"000": "LLaMA-Factory", "001": "HF", "002": "HF", "003": "MindSpeed", "004": "ms-swift"}


def spec_names() -> dict[str, set[str]]:
    """ARGUMENTS.tsv: documented name -> spec file numbers."""
    rows = (SPEC_DIR / "ARGUMENTS.tsv").read_text(encoding="utf-8").splitlines()
    names = {}
    for row in rows:
        if row.strip() and not row.startswith("#"):
            name, sources = row.split("\t")
            names[name] = set(sources.split(","))
    return names


def documented_defaults(number: str) -> dict[str, str]:
    """name -> default cell of the argument tables of spec 001 (markdown) or 003 (HTML), first occurrence."""
    path = next(SPEC_DIR.glob(f"{number}_*.txt"))
    text = html.unescape(path.read_text(encoding="utf-8"))
    if number == "003":
        pattern = r"<tr>\s*<td>([a-z_0-9]+)</td>\s*<td>[^<]*</td>\s*<td>([^<]*)</td>\s*<td>.*?</td>\s*</tr>"
        matches = re.findall(pattern, text, re.S)
    else:
        matches = re.findall(r"^\|\s*`([a-z_0-9]+)`\s*\|[^|\n]*\|\s*([^|\n]*?)\s*\|", text, re.M)
    cells: dict[str, str] = {}
    for name, cell in matches:
        cells.setdefault(name, cell.strip().strip("`"))
    return cells


def parse_cell(cell: str) -> Any:
    """A spec default cell as a Python value: None/True/False, numbers, quoted strings, lists; else the text."""
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        return {"None": None, "True": True, "False": False}.get(cell, cell)
    return cell if isinstance(value, tuple) else value  # "100,0,0" is a string, not a tuple


# ------------------------------------------------------------------------------------------------------------------
# coverage and sources


@needs_spec
def test_every_spec_name_is_a_field_or_alias():
    table = catalog.alias_table()
    names = spec_names()
    assert len(names) == 247
    missing = sorted(n for n in names if n not in table and n not in PLUGIN_PARAMS)
    assert missing == [], f"spec names without a field or alias: {missing}"


@needs_spec
def test_sources_name_every_spec_file_that_documents_the_name_or_an_alias():
    names = spec_names()
    for name, entry in fields_by_name().items():
        expected = set().union(*(names.get(key, set()) for key in (name, *entry.info.aliases)))
        expected |= SOURCES_BEYOND_TSV.get(name, set())
        assert set(entry.info.sources) == expected, (
            f"{name}: sources {entry.info.sources} != {sorted(expected)}"
        )


@needs_spec
def test_single_system_defaults_match_their_spec_table():
    """Where only one system documents a name, our default is what that system's table says (typed)."""
    names = spec_names()
    deliberate = {
        "run_name": "HF writes `output_dir` for 'derived from output_dir'; None means the same",
        "model_name_or_path": "MindSpeed marks it required; None here, the validator requires it",
        "dataset_dir": "MindSpeed's default is a path inside its own repository (see default_note)",
    }
    fields = fields_by_name()
    checked = 0
    for number in ("001", "003"):
        for name, cell in documented_defaults(number).items():
            systems = {SYSTEM_OF[s] for s in names.get(name, ())}
            if name not in fields or len(systems) != 1 or name in deliberate:
                continue
            spec_value, ours = parse_cell(cell), fields[name].default
            assert ours == spec_value, f"{name}: default {ours!r}, spec {number} says {cell!r}"
            if spec_value is not None:
                assert type(ours) is type(spec_value), f"{name}: {type(ours).__name__} vs spec {cell!r}"
            checked += 1
    assert checked >= 150
    for name in deliberate:
        assert fields[name].info.default_note or name == "run_name"


# A hand-picked table of single-system defaults, typed (float 3.0 is not int 3, "0" is not 0).
SINGLE_SYSTEM_DEFAULTS: list[tuple[str, Any]] = [
    ("batching_strategy", "normal"),  # 000
    ("batching_workers", 16),  # 000
    ("global_batch_size", None),  # 000
    ("per_device_eval_batch_size", 8),  # HF
    ("eval_strategy", "no"),
    ("logging_strategy", "steps"),
    ("save_strategy", "steps"),
    ("log_level", "passive"),
    ("log_level_replica", "warning"),
    ("ddp_timeout", 1800),
    ("local_rank", -1),
    ("half_precision_backend", "auto"),
    ("hub_strategy", "every_save"),
    ("lr_scheduler_kwargs", {}),
    ("include_for_metrics", []),
    ("fsdp", []),
    ("average_tokens_across_devices", True),
    ("label_smoothing_factor", 0.0),
    ("length_column_name", "length"),
    ("tf32", None),
    ("cp_type", "ulysses"),  # MindSpeed
    ("param_dtype", "bf16"),
    ("reduce_dtype", "fp32"),
    ("buffer_size", 16384),
    ("preprocessing_batch_size", 1000),
    ("mix_strategy", "concat"),
    ("val_size", 0.0),
    ("split", "100,0,0"),
    ("enable_thinking", True),
    ("init_special_tokens", "noise_init"),
    ("quant_block_size", 32),
    ("gdn_chunk_size", 64),
    ("save_epochs", 1),
    ("save_hf_weights", True),
    ("profile_ranks", [-1]),
    ("profile_step_end", -1),
    ("profile_level", "level0"),
    ("stage", "sft"),
    ("fsdp_modules", ["model.layers.{}", "model.embed_tokens", "lm_head"]),
]


@pytest.mark.parametrize(("name", "expected"), SINGLE_SYSTEM_DEFAULTS)
def test_single_system_default_table(name, expected):
    default = fields_by_name()[name].default
    assert default == expected and type(default) is type(expected)


# ------------------------------------------------------------------------------------------------------------------
# dialect decisions


@dataclasses.dataclass
class Decision:
    name: str
    default: Any
    aliases: tuple[str, ...] = ()
    choices: tuple[Any, ...] | None = None
    noted: bool = False  # the default_note records why this default won


DECISIONS = [
    Decision("per_device_train_batch_size", 8, ("micro_batch_size",), noted=True),
    Decision("learning_rate", 5e-5, ("lr",), noted=True),
    Decision("cutoff_len", 2048, ("max_length", "seq_length")),
    Decision("gradient_checkpointing", False, ("enable_activation_checkpointing", "recompute"), noted=True),
    Decision("model_name_or_path", None, ("model", "load")),
    Decision(
        "finetuning_type",
        "full",
        ("train_type",),
        ("full", "freeze", "lora", "qlora", "oft", "boft", "vera", "adalora"),
        noted=True,
    ),
    Decision("optim", "adamw_torch", ("optimizer",), noted=True),
    Decision("adam_beta2", 0.999, noted=True),
    Decision("weight_decay", 0.0, noted=True),
    Decision("lr_scheduler_type", "linear", ("lr_decay_style",), noted=True),
    Decision("warmup_ratio", 0.0, ("lr_warmup_fraction",), noted=True),
    Decision("warmup_steps", 0),
    Decision("learning_rate_end", None, ("min_lr",), noted=True),
    Decision("power", 1.0),
    Decision("num_train_epochs", 3.0),
    Decision("max_steps", -1, ("train_iters",), noted=True),
    Decision("logging_steps", 500, ("log_interval",), noted=True),
    Decision("save_steps", 500, ("save_interval",)),
    Decision("save_total_limit", None, noted=True),
    Decision("save_strategy", "steps", choices=("no", "steps", "epoch", "best")),
    Decision("eval_strategy", "no", ("evaluation_strategy",), ("no", "steps", "epoch")),
    Decision("logging_strategy", "steps"),
    Decision("output_dir", "trainer_output", noted=True),
    Decision("report_to", "none", noted=True),  # transformers 5
    Decision("dataset_dir", "data", noted=True),
    Decision("save_hf_weights", True),
    Decision("seed", 42),
    Decision("bf16", False),
    Decision("fp16", False),
    Decision("max_grad_norm", 1.0),
    Decision("stage", "sft", choices=("pt", "sft", "dpo", "kto", "rm")),
    Decision("template", None),
    Decision("enable_thinking", True),
    Decision("val_size", 0.0),
    Decision("attn_impl", None, ("attn_implementation",)),
    Decision("torch_dtype", None, choices=("bfloat16", "float16", "float32", "auto"), noted=True),
    Decision("lora_rank", 8),
    Decision("lora_alpha", 32, noted=True),
    Decision("target_modules", "all-linear", ("lora_target",), noted=True),
    Decision("router_aux_loss_coef", None),
    Decision("overwrite_output_dir", False),
    Decision("packing", False, ("pack",)),
    Decision("disable_shuffling", False, ("no_shuffle",)),
    Decision("tp_size", 1, ("tensor_model_parallel_size",)),
    Decision("torch_compile_backend", None, ("torchdynamo",)),
]


@pytest.mark.parametrize("decision", DECISIONS, ids=lambda d: d.name)
def test_dialect_decision(decision):
    entry = fields_by_name()[decision.name]
    assert entry.default == decision.default and type(entry.default) is type(decision.default)
    assert set(decision.aliases) <= set(entry.info.aliases)
    if decision.choices is not None:
        assert entry.info.choices == decision.choices
    assert bool(entry.info.default_note) or not decision.noted


def test_choice_lists():
    fields = fields_by_name()
    assert fields["optim"].info.choices == (
        "adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit",
        "adafactor", "sgd", "lion", "adagrad", "rmsprop",
        "adamw_bnb_8bit", "paged_adamw_32bit", "lion_32bit", "lion_8bit", "paged_lion_32bit", "paged_lion_8bit",
        "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit", "ademamix", "ademamix_8bit",
        "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "apollo_adamw",
        "galore_adamw_layerwise", "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise",
        "apollo_adamw_layerwise",
    )  # fmt: skip
    assert set(fields["lr_scheduler_type"].info.choices) == {
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
        "cosine_with_min_lr", "warmup_stable_decay", "inverse_sqrt",
    }  # fmt: skip
    assert fields["batching_strategy"].info.choices is None  # checked against the BATCHING plugin registry
    from tunesmith.config.plugins import BATCHING, BUILTIN_PLUGIN_MODULES, import_plugin_modules

    import_plugin_modules(BUILTIN_PLUGIN_MODULES)
    assert {"normal", "padding_free", "dynamic_batching", "dynamic_padding_free"} <= set(BATCHING.names())
    from tunesmith.config.arguments.model import ATTENTION

    assert fields["attn_impl"].info.choices is None  # ATTENTION or a hub kernel: checked in value_rules
    assert ATTENTION == (
        "eager", "sdpa", "flash_attn", "flash_attention_2", "flash_attention_3", "flex_attention",
    )  # fmt: skip
    assert fields["swanlab_mode"].info.choices == ("cloud", "local", "offline", "disabled")
    assert fields["quantization_bit"].info.choices == (4, 8)


@pytest.mark.parametrize(
    ("override", "name", "value"),
    [
        ("optimizer=adamw", "optim", "adamw_torch"),  # MindSpeed
        ("optim=adamw_hf", "optim", "adamw_torch"),  # old HF name
        ("torch_dtype=bf16", "torch_dtype", "bfloat16"),
        ("param_dtype=bfloat16", "param_dtype", "bf16"),
        ("--context-parallel-algo=ulysses_cp_algo", "cp_type", "ulysses"),  # Megatron
        ("--micro-batch-size=4", "per_device_train_batch_size", 4),
        ("--train-iters=30", "max_steps", 30),
        ("--save-interval=10", "save_steps", 10),
        ("--log-interval=2", "logging_steps", 2),
        ("--seq-length=512", "cutoff_len", 512),
        ("--no-shuffle=true", "disable_shuffling", True),
        ("--lr-warmup-fraction=0.1", "warmup_ratio", 0.1),
        ("--lr-decay-style=inverse-square-root", "lr_scheduler_type", "inverse_sqrt"),
        ("--data-path=corpus.jsonl", "dataset", "corpus.jsonl"),
        ("lora_target=q_proj,v_proj", "target_modules", ["q_proj", "v_proj"]),
        ("evaluation_strategy=epoch", "eval_strategy", "epoch"),
        ("save_steps=0.25", "save_steps", 0.25),
        ("warmup_steps=0.1", "warmup_steps", 0.1),
        ("report_to=tensorboard,wandb", "report_to", ["tensorboard", "wandb"]),
        ("val_size=100", "val_size", 100),
        ("enable_thinking=null", "enable_thinking", None),
        ("fsdp=full_shard auto_wrap", "fsdp", "full_shard auto_wrap"),
    ],
)
def test_aliases_and_value_aliases_through_the_loader(override, name, value):
    cfg = load_config(None, [override], validate=False)
    got = cfg.get(name)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("finetuning_type=adapter", "finetuning_type.*choose one of: full, freeze, lora, qlora"),
        ("micro_batch_size=0", "micro_batch_size.*must be >= 1"),
        ("warmup_ratio=1.5", "warmup_ratio.*must be <= 1"),
        ("report_to=comet", "report_to.*'comet' is not allowed"),
        ("quantization_bit=3", "quantization_bit.*choose one of: 4, 8"),
        ("save_steps=0", "save_steps.*must be > 0"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override], validate=False)


# ------------------------------------------------------------------------------------------------------------------
# declaration hygiene


def test_aliases_are_unique_and_distinct_from_field_names():
    fields = fields_by_name()
    owner: dict[str, str] = {name: name for name in fields}
    for name, entry in fields.items():
        for alias in entry.info.aliases:
            assert alias not in owner, f"alias {alias!r} of {name!r} collides with {owner[alias]!r}"
            assert alias == alias.lower().replace("-", "_"), f"alias {alias!r} is not normalised"
            owner[alias] = name


def test_every_field_has_one_line_english_help():
    for name, entry in fields_by_name().items():
        text = entry.info.help
        assert text and "\n" not in text and text.isascii(), f"{name}: help {text!r}"
        assert len(text) <= 160, f"{name}: help is too long ({len(text)} chars)"


def test_every_default_passes_its_own_type_choices_and_range():
    for name, entry in fields_by_name().items():
        default = entry.default
        assert coerce_value(default, entry.hint, name) == default, name
        assert check_value(name, default) == default, name


def test_secrets_and_obsolete_fields():
    fields = fields_by_name()
    secrets = {n for n, e in fields.items() if e.info.secret}
    assert secrets == {
        "hub_token",
        "hf_hub_token",
        "ms_hub_token",
        "om_hub_token",
        "swanlab_token",
        "api_key",
    }
    obsolete = {n for n, e in fields.items() if e.info.obsolete}
    assert obsolete == {
        "use_mps_device",
        "tpu_num_cores",
        "jit_mode_eval",
        "ray_scope",
        "past_index",
        "fp16_opt_level",
        "low_cpu_mem_usage",
    }
    for name in ("overwrite_output_dir", "logging_dir", "save_safetensors", "warmup_ratio"):
        assert not fields[name].info.obsolete


def test_sections_and_mutable_defaults_are_fresh():
    classes = section_classes().values()
    counts = [len(dataclasses.fields(cls)) for cls in classes]
    assert sum(counts) == len(fields_by_name()) and min(counts) >= 12
    first, second = ParallelArguments(), ParallelArguments()
    first.fsdp_modules.append("x")
    assert "x" not in second.fsdp_modules
    assert TrainingArguments().plugin_modules == [] and TrainingArguments().plugin_modules is not (
        TrainingArguments().plugin_modules
    )


def test_engine_facing_names_live_in_their_sections():
    expected = {
        "model": ["model_name_or_path", "finetuning_type", "target_modules", "lora_rank", "torch_dtype", "attn_impl"],
        "data": ["dataset", "cutoff_len", "packing", "neat_packing", "train_on_prompt", "mask_history", "val_size"],
        "train": ["per_device_train_batch_size", "learning_rate", "gradient_checkpointing", "batching_strategy",
                  "dist_config", "optim_config", "lr_scheduler_config", "deepspeed", "fsdp", "plugin_modules"],
        "parallel": ["tp_size", "cp_size", "ep_size", "fsdp_size", "reshard_after_forward", "ddp_backend"],
        "profiling": ["profile", "profile_ranks"],
    }  # fmt: skip
    for section, names in expected.items():
        for name in names:
            assert catalog.field_section(name) == section, name


# ------------------------------------------------------------------------------------------------------------------
# catalog


def test_catalog_entries():
    entries = catalog.argument_catalog()
    arguments = [e for e in entries if ":" not in e["section"]]
    assert [e["name"] for e in arguments] == list(fields_by_name())
    json.dumps(entries)  # plain data only
    by_name = {e["name"]: e for e in arguments}
    lr = by_name["learning_rate"]
    assert (
        lr["section"] == "train"
        and lr["aliases"] == ["lr"]
        and lr["type"] == "float"
        and lr["default"] == 5e-5
    )
    assert set(lr["systems"]) == {
        "LLaMA-Factory v1",
        "HF TrainingArguments",
        "MindSpeed-LLM FSDP2",
        "ms-swift",
    }
    assert by_name["save_steps"]["type"] == "int | float"
    assert by_name["fsdp"]["type"] == "bool | str | list[str]" and by_name["fsdp"]["default"] == []
    assert by_name["hub_token"]["secret"] and by_name["past_index"]["obsolete"]
    assert by_name["optim"]["value_aliases"] == {"adamw": "adamw_torch", "adamw_hf": "adamw_torch"}
    assert not any(e["required"] for e in arguments)


def test_alias_table_and_field_section():
    table = catalog.alias_table()
    assert table["micro_batch_size"] == "per_device_train_batch_size"
    assert table["train_type"] == "finetuning_type" and table["min_lr"] == "learning_rate_end"
    assert all(table[name] == name for name in fields_by_name())
    assert catalog.field_section("--micro-batch-size") == "train"
    assert catalog.field_section("seq_length") == "data"
    with pytest.raises(ConfigError, match="unknown argument 'lerning_rate'"):
        catalog.field_section("lerning_rate")


def test_plugin_parameters_are_listed_under_their_plugin():
    @dataclasses.dataclass
    class Params:
        config_file: str
        stage: int = 2

    registry = Registry("dist_config")
    registry.register("zero", params=Params)(lambda params: None)
    entries = catalog.plugin_catalog([registry])
    assert [(e["name"], e["section"], e["required"], e["default"], e["type"]) for e in entries] == [
        ("config_file", "dist_config:zero", True, None, "str"),
        ("stage", "dist_config:zero", False, 2, "int"),
    ]
    text = catalog.format_catalog(entries)
    assert "[dist_config:zero]" in text and "config_file: str (required)" in text and "stage: int = 2" in text


def test_format_catalog_lists_sections_notes_and_sources():
    text = catalog.format_catalog(catalog.argument_catalog())
    for header in ("[model]", "[data]", "[train]", "[parallel]", "[profiling]"):
        assert header in text
    assert "per_device_train_batch_size (also: micro_batch_size): int = 8" in text
    assert "LLaMA-Factory v1's micro_batch_size defaults to 1" in text
    assert "OBSOLETE:" in text and "spec: 000, 001, 002, 003, 004" in text
