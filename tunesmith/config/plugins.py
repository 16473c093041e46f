"""Plugin registries for `dist_config`, `optim_config`, `lr_scheduler_config` and batching strategies.

A plugin is a factory registered under a name with a parameter dataclass::

    from dataclasses import dataclass
    from tunesmith.config.plugins import OPTIM

    @dataclass
    class MyOptimParams:
        momentum: float = 0.9

    @OPTIM.register("my_optim", params=MyOptimParams)
    def build_my_optim(param_groups, lr, params: MyOptimParams):
        ...

Users register their own plugins in their own module and list it under `plugin_modules` in the config.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Iterable
from typing import Any

from tunesmith.utils.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Plugin:
    """A registered plugin: its name, parameter dataclass and factory."""

    name: str
    params: type
    factory: Callable[..., Any]
    help: str = ""


@dataclasses.dataclass
class PluginSpec:
    """A validated plugin choice: the plugin's name and an instance of its parameter dataclass."""

    name: str
    params: Any

    def to_dict(self) -> dict[str, Any]:
        """The `{name: ..., **params}` form users write."""
        return {"name": self.name, **dataclasses.asdict(self.params)}


@dataclasses.dataclass
class NoParams:
    """Parameter dataclass of plugins that take no parameters."""


class Registry:
    """A family of plugins selected by name."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._plugins: dict[str, Plugin] = {}

    def register(self, name: str, params: type = NoParams, help: str = "") -> Callable:
        """Decorator registering `factory` under `name` with parameter dataclass `params`."""
        if not dataclasses.is_dataclass(params):
            raise TypeError(f"{self.family} plugin {name!r}: params must be a dataclass, got {params!r}")

        def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
            known = self._plugins.get(name)
            if known is not None and known.factory is not factory:
                raise ConfigError(f"{self.family}: plugin {name!r} is registered twice")
            self._plugins[name] = Plugin(name, params, factory, help or (factory.__doc__ or "").strip())
            return factory

        return decorate

    def names(self) -> list[str]:
        """Registered plugin names, sorted."""
        return sorted(self._plugins)

    def get(self, name: str) -> Plugin:
        """The plugin registered under `name`; a ConfigError lists the known names otherwise."""
        if name not in self._plugins:
            raise ConfigError(
                f"{self.family}: unknown plugin {name!r}{_suggest(name, self._plugins)}; "
                f"known: {', '.join(self.names()) or '(none)'}"
            )
        return self._plugins[name]

    def parse(self, value: dict[str, Any] | PluginSpec, key: str) -> PluginSpec:
        """Validate a `{name: ..., **params}` dict against the plugin's parameter dataclass."""
        if isinstance(value, PluginSpec):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping with a 'name' key, got {type(value).__name__}")
        if not value.get("name"):
            raise ConfigError(
                f"{key}: 'name' is required; known {self.family} plugins: {', '.join(self.names())}"
            )
        plugin = self.get(str(value["name"]))
        given = {k: v for k, v in value.items() if k != "name"}
        return PluginSpec(plugin.name, build_params(plugin.params, given, f"{key}.{plugin.name}"))


def build_params(cls: type, given: dict[str, Any], key: str) -> Any:
    """Instantiate parameter dataclass `cls` from `given`, checking names, required fields and types."""
    from tunesmith.config.coerce import coerce_value  # local: coerce imports nothing from here

    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in given if k not in fields]
    if unknown:
        name = unknown[0]
        raise ConfigError(
            f"{key}: unknown parameter {name!r}{_suggest(name, fields)}; known: {', '.join(fields)}"
        )
    hints = _type_hints(cls)
    values = {k: coerce_value(v, hints[k], f"{key}.{k}") for k, v in given.items()}
    missing = [
        n
        for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{key}: parameter {missing[0]!r} is required")
    return cls(**values)


def _type_hints(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def import_plugin_modules(modules: Iterable[str]) -> None:
    """Import modules that register plugins (built-in engines and the user's `plugin_modules`)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"plugin_modules: cannot import {module!r}: {exc}") from exc
        except Exception as exc:  # the user's module raised while being imported
            raise ConfigError(
                f"plugin_modules: importing {module!r} failed: {type(exc).__name__}: {exc}"
            ) from None


# Modules whose import registers the built-in plugins (imported by name so the config layer does not import
# the engines at module load).
BUILTIN_PLUGIN_MODULES: list[str] = [
    "tunesmith.data.batching.strategies",
    "tunesmith.dist.plugins",
    "tunesmith.train.optim_plugins",
    "tunesmith.train.schedulers",
]

DIST = Registry("dist_config")
OPTIM = Registry("optim_config")
LR_SCHEDULER = Registry("lr_scheduler_config")
BATCHING = Registry("batching_strategy")
