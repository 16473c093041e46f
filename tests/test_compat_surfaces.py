"""Share of each peer argument surface (tests/compat/surfaces, written by scripts/extract_surfaces.py) that tunesmith knows.

Every surface is fully known (measured 2026-12-01 12:50 UTC against the committed dialect tables): the floors are
1.0, so a name that a peer surface has and tunesmith loses fails here.
`scripts/surface_coverage.py` prints the same table with the unknown names.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tunesmith.config.catalog import argument_catalog

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "surface_coverage.py"
REQUIRED = {
    "hf_run_clm": 1.0,
    "lf_v0": 1.0,
    "lf_v0_main": 1.0,
    "lf_v1": 1.0,
    "lf_v1_main": 1.0,
    "mindspeed": 1.0,
    "swift": 1.0,
    "swift_rlhf": 1.0,
    "transformers_training_args": 1.0,
    "trl_dpo": 1.0,
    "trl_kto": 1.0,
    "trl_reward": 1.0,
    "trl_script": 1.0,
    "trl_sft": 1.0,
}


def _load_script():
    spec = importlib.util.spec_from_file_location("surface_coverage", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cov():
    return _load_script()


def test_surface_files_are_well_formed(cov):
    files = cov.surface_files()
    assert set(files) == set(REQUIRED), "each surface file needs a floor in REQUIRED"
    for name, path in files.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("# ") and len(lines[0]) > 20, (
            f"{name}: header names the package and method"
        )
        rows = [line.split("\t") for line in lines[1:] if not line.startswith("#")]
        assert rows and all(len(r) == 3 and r[0].isidentifier() for r in rows), name
        names = [r[0] for r in rows]
        assert len(names) == len(set(names)), f"{name}: duplicate names"


def test_known_names_skip_plugin_parameters(cov):
    entries = [
        {"name": "a", "section": "train", "aliases": ["b"]},
        {"name": "c", "section": "dist_config:fsdp2", "aliases": []},
        {"name": "d", "section": "lf", "aliases": [], "status": "refused"},
    ]
    assert cov.known_names(entries) == {"a", "b", "d"}


def test_each_surface_share_is_at_least_its_floor(cov, capsys):
    rows = cov.coverage(cov.known_names(argument_catalog()))
    with capsys.disabled():
        print("\n" + cov.format_table(rows))
    low = {r.surface: round(r.share, 3) for r in rows if r.share < REQUIRED[r.surface]}
    assert not low, f"surfaces below their floor (REQUIRED): {low}"
