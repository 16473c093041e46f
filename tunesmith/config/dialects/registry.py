"""Every dialect by the name a config states it with (`dialect: lf`)."""

from __future__ import annotations

from tunesmith.config.dialects import hf, lf, lf_v1, mindspeed, swift, trl
from tunesmith.config.dialects.base import Dialect

NATIVE = Dialect("tunesmith", "tunesmith", {}, frozenset())
DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (NATIVE, hf.DIALECT, trl.DIALECT, lf.DIALECT, lf_v1.DIALECT, swift.DIALECT, mindspeed.DIALECT)
}
