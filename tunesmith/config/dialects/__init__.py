"""Dialects: the names, conversions, refusals and defaults of each peer system, as tables (DESIGN.md)."""

from tunesmith.config.dialects.registry import DIALECTS, NATIVE
from tunesmith.config.dialects.resolve import DialectReport, home_defaults, translate

__all__ = ["DIALECTS", "NATIVE", "DialectReport", "home_defaults", "translate"]
