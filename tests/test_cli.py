"""The `tunesmith` command: args, plan, version, env, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tunesmith import __version__
from tunesmith.cli import main, split_args

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "ARGUMENTS.tsv"


def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"tunesmith {__version__}"


def test_args_json_lists_every_field_with_metadata(capsys):
    assert main(["args", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    names = {e["name"] for e in entries}
    assert {"learning_rate", "per_device_train_batch_size", "cutoff_len", "tp_size", "profile"} <= names
    lr = next(e for e in entries if e["name"] == "learning_rate")
    assert "lr" in lr["aliases"] and lr["help"] and lr["type"] == "float" and lr["sources"]


def test_args_json_covers_every_spec_name(capsys):
    assert main(["args", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    covered = {e["name"] for e in entries} | {a for e in entries for a in e["aliases"]}
    if SPEC.is_file():
        spec = {line.split("\t")[0] for line in SPEC.read_text().splitlines()[1:] if line.strip()}
        assert len(spec) == 247
        assert sorted(spec - covered) == []


def test_args_table_explains_default_choices(capsys):
    assert main(["args"]) == 0
    out = capsys.readouterr().out
    assert "learning_rate" in out and "5e-05" in out
    assert "default" in out.lower()


def test_plan_prints_derived_numbers(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: builtin:tiny\nmax_steps: 40\nwarmup_ratio: 0.1\nmicro_batch_size: 2\n")
    assert main(["plan", str(cfg), "--no-data"]) == 0
    out = capsys.readouterr().out
    assert "max_steps: 40" in out and "warmup_steps: 4" in out


def test_plan_json_with_world_size(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NPROC_PER_NODE", "4")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert (
        main(
            [
                "plan",
                "model=builtin:tiny",
                "global_batch_size=32",
                "micro_batch_size=2",
                "--json",
                "--no-data",
            ]
        )
        == 0
    )
    derived = json.loads(capsys.readouterr().out)["derived"]
    assert derived["world_size"] == 4 and derived["gradient_accumulation_steps"] == 4


def test_config_error_is_one_line_and_exit_2(capsys):
    assert main(["plan", "model=builtin:tiny", "lerning_rate=1", "--no-data"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'learning_rate'" in err


def test_unknown_command(capsys):
    assert main(["frobnicate"]) == 2


def test_split_args_separates_config_flags_and_overrides():
    config, overrides, options = split_args(["c.yaml", "--json", "lr=1", "--model", "x"], {"--json": False})
    assert config == "c.yaml" and options == {"--json": True} and overrides == ["lr=1", "--model", "x"]


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout
