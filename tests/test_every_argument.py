"""Every argument takes effect: it is read by engine code, refused with a reason, marked obsolete, or listed here
as accepted-but-inert (with why). "Read" means a real read in the syntax tree: an attribute load `x.name` (not on an
imported module), `x.get("name")` or `getattr(x, "name")`; a name in a docstring, comment, string or error message
does not count."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from tunesmith.config.schema import fields_by_name
from tunesmith.config.unsupported import REFUSED

PACKAGE = Path(__file__).resolve().parents[1] / "tunesmith"
# The config layer declares, aliases, parses and validates arguments: a read there is not a use...
CONFIG = "config"
# ...except for these, which act by deriving other arguments that engines read (validate.py, hf_fsdp.py, ...).
ACT_THROUGH_CONFIG = {
    "dataloader_num_workers": "sets batching_workers (validate._loader_workers)",
    "do_train": "decides TunesmithConfig.evaluation_only, which data, recipes and output checks ask (config/loader.py)",
    "fsdp": "HF's FSDP options become dist_config fsdp2 (config/hf_fsdp.py)",
    "fsdp_config": "HF's FSDP config becomes dist_config fsdp2 parameters (config/hf_fsdp.py)",
    "global_batch_size": "derives gradient_accumulation_steps (validate.check_parallel_sizes)",
    "parallelism_config": "accelerate's sizes become fsdp_size, tp_size and cp_size (config/accelerate_parallelism.py)",
    "plugin_modules": "imported by validate_config so their plugins register",
}
# Accepted, but only at a value that changes nothing (any other value is refused), or always-on behaviour.
INERT = {
    "dataloader_type": "only 'single' exists (choices), which is how the batcher reads",
    "label_names": "only None or ['labels'] is accepted (config/unsupported.py): batches carry 'labels'",
    "profile_export_type": "only 'text' is accepted ('db', torch_npu's database, is refused): the profile is "
    "always the Chrome trace plus a text summary",
    "cp_type": "only 'ulysses' exists (choices), the context parallel dist/ulysses.py runs",
    "remove_unused_columns": "the collator builds the model inputs (input_ids, labels, attention_mask or "
    "position_ids) itself: other dataset columns never reach the model, true or false",
    "eval_use_gather_object": "every rank evaluates the whole eval set, so compute_metrics sees every prediction "
    "without gathering objects across ranks",
}


def reads(tree: ast.AST) -> set[str]:
    """Names read in `tree`: attribute loads (not on an imported module) and `.get("n")` / `getattr(x, "n")`."""
    modules = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            if not (isinstance(node.value, ast.Name) and node.value.id in modules):
                found.add(node.attr)
        elif isinstance(node, ast.Call):
            func, args = node.func, node.args
            if isinstance(func, ast.Attribute) and func.attr == "get" and args:
                found.update(_constant(args[0]))
            elif isinstance(func, ast.Name) and func.id == "getattr" and len(args) >= 2:
                found.update(_constant(args[1]))
    return found


def _constant(node: ast.AST) -> set[str]:
    return {node.value} if isinstance(node, ast.Constant) and isinstance(node.value, str) else set()


@cache
def reads_by_layer() -> tuple[frozenset[str], frozenset[str]]:
    """(names read by engine code outside config/, names read inside config/)."""
    engine: set[str] = set()
    config: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        found = reads(ast.parse(path.read_text(encoding="utf-8")))
        (config if path.relative_to(PACKAGE).parts[0] == CONFIG else engine).update(found)
    return frozenset(engine), frozenset(config)


def test_reads_ignore_docstrings_comments_and_messages():
    source = '''
"""Uses warmup_steps."""
import torch
from tunesmith.utils import dist_env
def f(cfg, train):
    # reads seed
    name = "logging_steps"
    rank = dist_env.local_rank()
    raise ValueError(f"{cfg.where('save_steps')}: bad max_steps {torch.bfloat16}")
def g(cfg, train):
    return cfg.train.learning_rate, cfg.get("weight_decay"), getattr(train, "adam_beta1", None)
'''
    found = reads(ast.parse(source))
    assert {"learning_rate", "weight_decay", "adam_beta1"} <= found
    assert not found & {"warmup_steps", "seed", "logging_steps", "save_steps", "max_steps", "local_rank"}


def test_every_argument_is_read_refused_obsolete_or_listed():
    engine, _ = reads_by_layer()
    unused = [
        name
        for name, entry in fields_by_name().items()
        if name not in engine
        and name not in REFUSED
        and not entry.info.obsolete
        and name not in ACT_THROUGH_CONFIG
        and name not in INERT
    ]
    assert unused == []


def test_the_lists_stay_honest():
    """A listed name exists, is not also refused/obsolete, and is not read by an engine (then drop it from the
    list); one acting through the config is really read there."""
    fields = fields_by_name()
    engine, config = reads_by_layer()
    for name in [*ACT_THROUGH_CONFIG, *INERT]:
        assert name in fields, name
        assert name not in REFUSED and not fields[name].info.obsolete, name
        assert name not in engine, f"{name} is read by an engine now: remove it from the list"
    assert not set(ACT_THROUGH_CONFIG) & set(INERT)
    assert set(ACT_THROUGH_CONFIG) <= config
    assert all(name in fields for name in REFUSED)
