"""How much of each peer argument surface (tests/compat/surfaces/*.txt) tunesmith knows, and which names it does not.

A name is known when the argument catalog (`tunesmith args --json`) lists it: as a canonical name or an alias of a
top-level argument, or as an entry with a status (alias, converted, refused ...) for a name that is not a field.
Parameters of plugins (`dist_config:fsdp2` ...) do not count: they are written inside a `*_config` mapping.

Usage: .venv/bin/python scripts/surface_coverage.py [SURFACE ...] [--names-only]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SURFACES = Path(__file__).resolve().parents[1] / "tests" / "compat" / "surfaces"


@dataclass(frozen=True)
class Coverage:
    surface: str
    names: tuple[str, ...]
    unknown: tuple[str, ...]

    @property
    def share(self) -> float:
        return 1.0 - len(self.unknown) / len(self.names) if self.names else 1.0


def surface_names(path: Path) -> list[str]:
    """The names of one surface file (comment and #override lines skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[0] for line in lines if line and not line.startswith("#")]


def surface_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SURFACES.glob("*.txt"))}


def known_names(entries: list[dict[str, Any]]) -> set[str]:
    """Every name the catalog lists at the top level of a config (names, aliases, entries with a status)."""
    known: set[str] = set()
    for entry in entries:
        if ":" in str(entry.get("section", "")) and entry.get("status") in (None, "plugin parameter"):
            continue
        known.add(entry["name"])
        known.update(entry.get("aliases") or ())
    return known


def catalog_known_names() -> set[str]:
    from tunesmith.config.catalog import argument_catalog

    return known_names(argument_catalog())


def coverage(known: set[str], only: list[str] | None = None) -> list[Coverage]:
    files = surface_files()
    chosen = only or list(files)
    missing = sorted(set(chosen) - set(files))
    if missing:
        raise SystemExit(f"unknown surface(s) {missing}; have: {', '.join(files)}")
    out = []
    for name in chosen:
        names = surface_names(files[name])
        out.append(Coverage(name, tuple(names), tuple(n for n in names if n not in known)))
    return out


def format_table(rows: list[Coverage]) -> str:
    width = max(len(r.surface) for r in rows)
    lines = [f"{'surface':<{width}}  names  known  share", f"{'-' * width}  -----  -----  -----"]
    lines += [
        f"{r.surface:<{width}}  {len(r.names):5d}  {len(r.names) - len(r.unknown):5d}  {r.share:5.1%}"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("surfaces", nargs="*", help="surface file stems (default: all)")
    parser.add_argument(
        "--names-only", action="store_true", help="print only the unknown names, one per line"
    )
    args = parser.parse_args(argv)
    rows = coverage(catalog_known_names(), args.surfaces or None)
    if args.names_only:
        print("\n".join(f"{r.surface}\t{n}" for r in rows for n in r.unknown))
        return 0
    print(format_table(rows))
    for r in rows:
        if r.unknown:
            print(f"\n{r.surface}: {len(r.unknown)} unknown\n  " + " ".join(r.unknown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
