"""Load a config: file + command-line overrides -> aliases resolved -> typed, checked `TunesmithConfig`."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import typing
from pathlib import Path
from typing import Any

from tunesmith.config.coerce import coerce_value, type_name
from tunesmith.config.dialects import DialectReport, home_defaults, translate
from tunesmith.config.schema import alias_table, fields_by_name, normalize_key, section_classes
from tunesmith.config.sources import SECTION_KEYS, Setting, parse_overrides, read_file
from tunesmith.utils.errors import ConfigError

logger = logging.getLogger("tunesmith")


@dataclasses.dataclass
class TunesmithConfig:
    """The argument sections, plus where each explicitly set argument came from."""

    model: Any
    data: Any
    train: Any
    parallel: Any
    profiling: Any
    preference: Any
    methods: Any
    generation: Any
    origins: dict[str, str] = dataclasses.field(default_factory=dict)  # canonical name -> "key at origin"
    config_path: str | None = None
    dialect: DialectReport | None = None  # which system's dialect the config was read in, and what it changed

    def sections(self) -> dict[str, Any]:
        """Section name -> argument dataclass instance."""
        return {name: getattr(self, name) for name in section_classes()}

    def get(self, name: str) -> Any:
        """The value of canonical argument `name`, whatever its section."""
        return getattr(getattr(self, fields_by_name()[name].section), name)

    def is_set(self, name: str) -> bool:
        """True when the user set canonical argument `name` (under any alias)."""
        return name in self.origins

    def evaluation_only(self) -> bool:
        """Evaluate / predict the loaded model instead of training it: `do_train: false` set, or (do_train unset)
        do_eval / do_predict / predict_with_generate with evaluation data and no training dataset, as the peers'
        predict-only configs are written (there is nothing to train on)."""
        train, data = self.train, self.data
        if self.is_set("do_train"):
            return not train.do_train
        asked = train.do_eval or train.do_predict or train.predict_with_generate
        return bool(asked and data.eval_dataset and not data.dataset)

    def where(self, name: str) -> str:
        """How the user set `name`, e.g. `'lr' (config.yaml line 4)`, or `name` when left at its default."""
        return self.origins.get(name, name)


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    validate: bool = True,
    hint: str | None = None,
) -> TunesmithConfig:
    """Read `path` (YAML/JSON, optional) and `overrides`, read them in their dialect (stated, detected, or
    `hint` from the command), resolve aliases, coerce and validate."""
    settings = read_file(path) if path is not None else []
    settings += parse_overrides(list(overrides or []))
    settings, report = translate(_merge_dotted(settings), hint=hint)
    chosen = resolve_settings(settings)
    cfg = build_config(chosen, report)
    cfg.config_path = str(path) if path is not None else None
    if validate:
        from tunesmith.config.validate import validate_config

        validate_config(cfg)
    return cfg


def resolve_settings(settings: list[Setting]) -> dict[str, Setting]:
    """Canonical name -> the setting that wins; two aliases of one argument with different values conflict."""
    table = alias_table()
    chosen: dict[str, Setting] = {}
    for setting in settings:
        key = normalize_key(setting.key)
        if key not in table:
            raise ConfigError(_unknown_key_message(setting, key, table))
        canonical = table[key]
        previous = chosen.get(canonical)
        if previous is not None and _conflict(canonical, previous, setting):
            raise ConfigError(
                f"conflicting values for {canonical!r}: {previous.key!r}={previous.value!r} ({previous.origin}) "
                f"and {setting.key!r}={setting.value!r} ({setting.origin}); keep one of them"
            )
        chosen[canonical] = setting
    return chosen


def _conflict(canonical: str, previous: Setting, setting: Setting) -> bool:
    """Two different keys for one argument in the same layer (file, or command line) with different values."""
    if previous.layer != setting.layer or normalize_key(previous.key) == normalize_key(setting.key):
        return False
    return check_value(canonical, previous.value) != check_value(canonical, setting.value)


def _merge_dotted(settings: list[Setting]) -> list[Setting]:
    """`dist_config.name=fsdp2` on the command line -> merged into the mapping under `dist_config`;
    MindSpeed's sectioned flags (`--model.model_name_or_path X`, `--parallel.fsdp_size 8`) lose their section."""
    merged: list[Setting] = []
    nested: dict[tuple[str, int], dict[str, Any]] = {}
    for setting in settings:
        if "." not in setting.key or setting.layer == 0:
            merged.append(setting)
            continue
        head, sub = normalize_key(setting.key).split(".", 1)
        if head in SECTION_KEYS:
            merged.append(dataclasses.replace(setting, key=sub))
            continue
        target = nested.get((head, setting.layer))
        if target is None:
            target = nested[(head, setting.layer)] = {}
            merged.append(Setting(head, target, setting.origin, setting.layer))
        target[sub] = setting.value
    return merged


def _unknown_key_message(setting: Setting, key: str, table: dict[str, str]) -> str:
    """'unknown key', with a suggestion only when a known name (tunesmith's or a peer's) is really close."""
    from tunesmith.config.dialects import DIALECTS

    names = set(table) | {name for d in DIALECTS.values() for name in d.names}
    close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.82)
    hint = f"; did you mean {close[0]!r}?" if close else "; run `tunesmith args` for the list of arguments"
    return f"unknown key {setting.key!r} ({setting.origin}){hint}"


def build_config(chosen: dict[str, Setting], report: DialectReport | None = None) -> TunesmithConfig:
    """Instantiate the sections from the chosen settings, coercing and range-checking each value; arguments
    left unset take the dialect's home default where its system differs from tunesmith."""
    fields = fields_by_name()
    values: dict[str, dict[str, Any]] = {section: {} for section in section_classes()}
    origins: dict[str, str] = {}
    for name, setting in chosen.items():
        entry = fields[name]
        where = f"{setting.key!r} ({setting.origin})"
        values[entry.section][name] = check_value(name, setting.value, where)
        origins[name] = where
        if entry.info.obsolete:
            logger.warning("%s is obsolete and has no effect: %s", setting.key, entry.info.obsolete)
    if report is not None:
        _take_home_defaults(values, set(chosen), report)
    sections = {section: cls(**values[section]) for section, cls in section_classes().items()}
    return TunesmithConfig(**sections, origins=origins, dialect=report)


def _take_home_defaults(values: dict[str, dict[str, Any]], explicit: set[str], report: DialectReport) -> None:
    fields = fields_by_name()

    def get(name: str) -> Any:
        section = values[fields[name].section]
        return section[name] if name in section else fields[name].default

    defaults = home_defaults(report, explicit, get)
    for name, value in defaults.items():
        values[fields[name].section][name] = check_value(name, value, f"{name!r} ({report.system}'s default)")
    values["train"]["dialect"] = report.name


def check_value(name: str, value: Any, where: str | None = None) -> Any:
    """Apply value aliases, coerce to the declared type and check choices and range; `where` names the key."""
    entry = fields_by_name()[name]
    info = entry.info
    where = where or repr(name)
    if value is None and not _admits_none(entry.hint):
        return entry.default  # `max_steps: null` (LLaMA-Factory style) means "not set"
    if info.value_aliases and _hashable(value) and value in info.value_aliases:
        value = info.value_aliases[value]
    try:
        value = coerce_value(value, entry.hint, where)
    except ConfigError:
        if not info.secret:
            raise
        raise ConfigError(
            f"{where}: expected {type_name(entry.hint)} (the value given is hidden: a secret)"
        ) from None
    if isinstance(value, str) and info.value_aliases and value in info.value_aliases:
        value = info.value_aliases[value]
    _check_choices(value, info.choices, where)
    _check_range(value, info, where)
    return value


def _admits_none(hint: Any) -> bool:
    return hint is Any or type(None) in typing.get_args(hint)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _check_choices(value: Any, choices: tuple[Any, ...] | None, where: str) -> None:
    if choices is None or value is None:
        return
    items = value if isinstance(value, list) else [value]
    for item in items:
        if item not in choices:
            allowed = ", ".join(str(c) for c in choices)
            raise ConfigError(f"{where}: {item!r} is not allowed; choose one of: {allowed}")


def _check_range(value: Any, info: Any, where: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    low, high = info.minimum, info.maximum
    if low is not None and (value < low or (info.exclusive_minimum and value == low)):
        op = ">" if info.exclusive_minimum else ">="
        raise ConfigError(f"{where}: {value!r} is out of range; must be {op} {low}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: {value!r} is out of range; must be <= {high}")
