"""Configuration: argument dataclasses, dialect aliases, loading, validation, plugins and derived numbers."""

from tunesmith.config.loader import TunesmithConfig, load_config

__all__ = ["TunesmithConfig", "load_config"]
