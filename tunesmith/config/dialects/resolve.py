"""Read a config in its own dialect: decide which system it was written for, translate the names only that
system has onto tunesmith's arguments, and take that system's defaults where they differ from tunesmith's."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tunesmith.config.dialects.base import Dialect, Entry, truthy
from tunesmith.config.dialects.registry import DIALECTS, NATIVE
from tunesmith.config.schema import alias_table, normalize_key
from tunesmith.config.sources import Setting
from tunesmith.utils.errors import ConfigError

# Values that ask for nothing: a refused name written with one of them is accepted (it has no effect anywhere).
_ASKS_NOTHING = (None, False, "", "false", "False", "none", "None", "null", [], {})


@dataclasses.dataclass
class DialectReport:
    """Which dialect a config was read in, why, how each peer-specific key was taken, and the home defaults."""

    name: str
    system: str
    reason: str
    taken: list[dict[str, str]] = dataclasses.field(default_factory=list)  # key, origin, how
    defaults: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # canonical -> value, why

    def as_dict(self) -> dict[str, Any]:
        """For `plan --json`."""
        return dataclasses.asdict(self)


def translate(settings: list[Setting], *, hint: str | None = None) -> tuple[list[Setting], DialectReport]:
    """Settings with every peer-specific key replaced by tunesmith keys, and the report of what was done.

    `hint` is a dialect implied by the command (`tunesmith rlhf` is ms-swift's); a `dialect:` key wins over it,
    and keys only one system writes win over nothing.
    """
    stated = [s for s in settings if normalize_key(s.key) == "dialect"]
    rest = [s for s in settings if normalize_key(s.key) != "dialect"]
    dialect, reason = _choose(stated, rest, hint)
    report = DialectReport(dialect.name, dialect.system, reason)
    out: list[Setting] = [dataclasses.replace(s, key="dialect", value=dialect.name) for s in stated[-1:]]
    context = {normalize_key(s.key): s.value for s in rest}
    for setting in rest:
        out += _translate_one(setting, dialect, report, context)
    return out, report


def _choose(stated: list[Setting], rest: list[Setting], hint: str | None) -> tuple[Dialect, str]:
    if stated:
        value = str(stated[-1].value).strip().lower()
        if value in ("auto", ""):
            return _detect(rest, hint)
        if value not in DIALECTS:
            allowed = ", ".join(["auto", *DIALECTS])
            raise ConfigError(
                f"'dialect' ({stated[-1].origin}): {value!r} is not a dialect; choose one of: {allowed}"
            )
        return DIALECTS[value], f"stated with 'dialect: {value}' ({stated[-1].origin})"
    return _detect(rest, hint)


def _detect(settings: list[Setting], hint: str | None) -> tuple[Dialect, str]:
    keys = {normalize_key(s.key) for s in settings}
    scores = {name: sorted(keys & d.markers) for name, d in DIALECTS.items()}
    best = max(scores.values(), key=len)
    winners = [name for name, found in scores.items() if found and len(found) == len(best)]
    if hint in DIALECTS and (not winners or hint in winners):
        return DIALECTS[hint], "implied by the command (" + f"{DIALECTS[hint].system}'s own subcommand)"
    if len(winners) == 1:
        name = winners[0]
        return DIALECTS[name], f"detected from {DIALECTS[name].system}-only keys: {', '.join(best)}"
    if winners:
        systems = " and ".join(f"{DIALECTS[n].system} ({', '.join(scores[n])})" for n in winners)
        return (
            NATIVE,
            f"keys of {systems} in equal measure: tunesmith's own defaults (state one with 'dialect:')",
        )
    return NATIVE, "no system-specific keys: tunesmith's own defaults (those of transformers)"


def _translate_one(
    setting: Setting, dialect: Dialect, report: DialectReport, context: dict[str, Any]
) -> list[Setting]:
    key = normalize_key(setting.key)
    negated = _negated(key, setting)
    if negated is not None:
        return [negated]
    if "." in key:
        return [setting]  # a dotted plugin key (dist_config.name): the loader merges it
    entry, system = _entry_for(key, setting, dialect)
    if entry is None:
        return [setting]
    how = entry.describe()
    report.taken.append({"key": setting.key, "origin": setting.origin, "system": system, "how": how})
    speaker = f"{system}'s {setting.key}" if system == dialect.system else setting.key
    return _apply(entry, setting, speaker, context)


def _negated(key: str, setting: Setting) -> Setting | None:
    """HF argparse's `--no_remove_unused_columns` is `remove_unused_columns: false` (a bare flag only)."""
    if not key.startswith("no_") or key in alias_table() or key[3:] not in alias_table():
        return None
    if not truthy(setting.value):
        raise ConfigError(
            f"{setting.key!r} ({setting.origin}): a --no_ flag takes no value; write {key[3:]}=..."
        )
    return dataclasses.replace(setting, key=key[3:], value=False)


def _entry_for(key: str, setting: Setting, dialect: Dialect) -> tuple[Entry | None, str]:
    """The dialect's own entry; else none when tunesmith knows the key; else the one meaning all systems agree on."""
    known = key in alias_table()
    if key in dialect.names and (key in dialect.overrides or not known):
        return dialect.names[key], dialect.system
    if known:
        return None, ""
    found = {d.system: d.names[key] for d in DIALECTS.values() if key in d.names and key not in d.overrides}
    meanings = {entry.describe() for entry in found.values()}
    if len(meanings) > 1:
        listed = "; ".join(f"in {system}: {entry.describe()}" for system, entry in found.items())
        names = ", ".join(d.name for d in DIALECTS.values() if key in d.names)
        raise ConfigError(
            f"{setting.key!r} ({setting.origin}) means different things in different systems ({listed}); "
            f"say which system the config is written for with 'dialect: <{names.replace(', ', '|')}>'"
        )
    if found:
        system, entry = next(iter(found.items()))
        return entry, system
    return None, ""


def _apply(entry: Entry, setting: Setting, speaker: str, context: dict[str, Any]) -> list[Setting]:
    """`speaker` names the key in messages: "ms-swift's use_vllm" in an ms-swift config, "use_vllm" elsewhere."""
    where = f"{setting.key!r} ({setting.origin})"
    origin = f"{setting.origin}, {speaker}"
    if entry.kind == "alias":
        return [dataclasses.replace(setting, key=entry.target, origin=origin)]
    if entry.kind == "convert":
        try:
            mapped = dict(entry.fn(setting.value, context) if entry.contextual else entry.fn(setting.value))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return [Setting(k, v, origin, setting.layer) for k, v in mapped.items() if v is not None]
    if entry.kind == "fixed":
        if not _same(setting.value, entry.value):
            raise ConfigError(f"{where}: {speaker} can only be {entry.value!r} here: {entry.note}")
        return []
    if setting.value in _ASKS_NOTHING or _same(setting.value, entry.value):
        return []
    raise ConfigError(f"{where}: {speaker} {entry.note}")


def _same(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool) and isinstance(value, str):
        return value.strip().lower() in (("true", "yes", "1") if expected else ("false", "no", "0"))
    return value == expected or (isinstance(value, str) and value.strip().lower() == str(expected).lower())


def home_defaults(report: DialectReport, explicit: set[str], get: Callable[[str], Any]) -> dict[str, Any]:
    """Canonical name -> the dialect's own default, for every argument the config does not set; recorded in the
    report. `get(name)` returns an argument's value (explicit, home default, or tunesmith's default)."""
    dialect = DIALECTS.get(report.name, NATIVE)
    values: dict[str, Any] = {}

    def lookup(name: str) -> Any:
        return values[name] if name in values else get(name)

    for name, default in dialect.defaults.items():
        if name in explicit:
            continue
        values[name] = default.resolve(lookup)
        report.defaults[name] = {"value": values[name], "system": dialect.system, "why": default.why}
    return values
