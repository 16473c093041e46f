"""The argument catalog: one plain record per argument, for `tunesmith args` and for tools that need the alias table."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from typing import Any

from tunesmith.config import plugins, schema
from tunesmith.config.coerce import type_name
from tunesmith.config.fields import arg_info
from tunesmith.utils.errors import ConfigError

# Spec file number -> the system whose documentation it is (the spec files live outside the package).
SPEC_SYSTEMS: dict[str, str] = {
    "000": "LLaMA-Factory v1",
    "001": "HF TrainingArguments",
    "002": "HF TrainingArguments",
    "003": "MindSpeed-LLM FSDP2",
    "004": "ms-swift",
}


PLUGIN_REGISTRIES = (plugins.DIST, plugins.OPTIM, plugins.LR_SCHEDULER, plugins.BATCHING)


def argument_catalog() -> list[dict[str, Any]]:
    """One dict per canonical argument, in section order, then one per parameter of each built-in plugin.

    Keys: name, section, aliases, type, default, required, help, sources, systems, choices, value_aliases, minimum,
    maximum, default_note, obsolete, secret. Plugin parameters have section `<family>:<plugin>`, e.g.
    `dist_config:fsdp2`; they are written inside that `*_config` mapping, not at the top level.
    """
    entries = [_entry(f.name, f.section, f.field, f.hint) for f in schema.fields_by_name().values()]
    plugins.import_plugin_modules(plugins.BUILTIN_PLUGIN_MODULES)
    return entries + dialect_catalog() + plugin_catalog(PLUGIN_REGISTRIES)


# Keys of a field entry that a dialect entry has no value for (so every entry has the same keys).
_EMPTY: dict[str, Any] = {
    "aliases": [],
    "type": None,
    "default": None,
    "required": False,
    "sources": [],
    "choices": None,
    "value_aliases": None,
    "minimum": None,
    "maximum": None,
    "default_note": "",
    "obsolete": "",
    "secret": False,
}


def dialect_catalog() -> list[dict[str, Any]]:
    """One entry per name a peer system writes that is not a tunesmith name: section `dialect:<name>`, status
    alias / converted / fixed / refused, the system, and what it becomes (or why it is refused)."""
    from tunesmith.config.dialects import DIALECTS

    known = schema.alias_table()
    entries = []
    for dialect in DIALECTS.values():
        for name, entry in dialect.names.items():
            if name in known and name not in dialect.overrides:
                continue  # shadowed: tunesmith's own name wins (tests/test_dialect_tables.py flags these)
            status = {"alias": "alias", "convert": "converted", "fixed": "fixed", "refuse": "refused"}[
                entry.kind
            ]
            entries.append(
                {
                    **_EMPTY,
                    "name": name,
                    "section": f"dialect:{dialect.name}",
                    "status": status,
                    "target": entry.target or None,
                    "systems": [dialect.system],
                    "help": entry.describe(),
                    "overrides_tunesmith_name": name in known,
                }
            )
    return entries


def plugin_catalog(registries: Iterable[plugins.Registry]) -> list[dict[str, Any]]:
    """One catalog entry per parameter of every plugin registered in `registries`."""
    entries = []
    for registry in registries:
        for name in registry.names():
            params = registry.get(name).params
            hints = typing.get_type_hints(params)
            section = f"{registry.family}:{name}"
            entries += [_entry(f.name, section, f, hints[f.name]) for f in dataclasses.fields(params)]
    for entry in entries:
        entry["status"] = "plugin parameter"  # written inside its `*_config` mapping, not at the top level
    return entries


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def _entry(name: str, section: str, field: dataclasses.Field, hint: Any) -> dict[str, Any]:
    info = arg_info(field)
    required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    return {
        "name": name,
        "section": section,
        "status": "obsolete" if info.obsolete else "canonical",
        "aliases": list(info.aliases),
        "type": type_name(hint),
        "default": _default(field),
        "required": required,
        "help": info.help,
        "sources": list(info.sources),
        "systems": sorted({SPEC_SYSTEMS[s] for s in info.sources if s in SPEC_SYSTEMS}),
        "choices": list(info.choices) if info.choices is not None else None,
        "value_aliases": dict(info.value_aliases) if info.value_aliases else None,
        "minimum": info.minimum,
        "maximum": info.maximum,
        "default_note": info.default_note,
        "obsolete": info.obsolete,
        "secret": info.secret,
    }


def alias_table() -> dict[str, str]:
    """Every accepted key (canonical names and aliases) -> canonical name."""
    return dict(schema.alias_table())


def field_section(name: str) -> str:
    """The section (model, data, train, parallel, profiling, preference, methods, generation) of a canonical name or alias."""
    canonical = schema.alias_table().get(schema.normalize_key(name))
    if canonical is None:
        raise ConfigError(f"unknown argument {name!r}; run `tunesmith args` for the list of arguments")
    return schema.fields_by_name()[canonical].section


def format_catalog(entries: list[dict[str, Any]]) -> str:
    """A readable listing grouped by section: signature line, help, then choices, notes and sources."""
    lines: list[str] = []
    section = None
    for entry in entries:
        if entry["section"] != section:
            section = entry["section"]
            lines += [f"[{section}]"] if not lines else ["", f"[{section}]"]
        lines += _format_entry(entry)
    return "\n".join(lines)


def _format_entry(entry: dict[str, Any]) -> list[str]:
    if entry["section"].startswith("dialect:"):
        return [f"  {entry['name']}: {entry['help']}"]
    aliases = f" (also: {', '.join(entry['aliases'])})" if entry["aliases"] else ""
    default = "(required)" if entry["required"] else f"= {entry['default']!r}"
    lines = [f"  {entry['name']}{aliases}: {entry['type']} {default}"]
    if entry["help"]:
        lines.append(f"      {entry['help']}")
    if entry["choices"] is not None:
        lines.append(f"      choices: {', '.join(str(c) for c in entry['choices'])}")
    if entry["default_note"]:
        lines.append(f"      default: {entry['default_note']}")
    if entry["obsolete"]:
        lines.append(f"      OBSOLETE: {entry['obsolete']}")
    if entry["sources"]:
        lines.append(f"      spec: {', '.join(entry['sources'])} ({'; '.join(entry['systems'])})")
    return lines
