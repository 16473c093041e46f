"""Secret redaction: tokens and API keys never reach a log line, a backend, a saved config or an error message."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from tunesmith.config.schema import fields_by_name
from tunesmith.config.serialize import REDACTED, config_to_dict

# names of environment variables whose values are credentials (HF_TOKEN, WANDB_API_KEY, AWS_SECRET_ACCESS_KEY, ...)
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:TOKEN|API_?KEY|ACCESS_KEY|PRIVATE_KEY|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE
)
_MIN_LENGTH = 4  # shorter values ("1", "yes") would redact ordinary text


def looks_secret(name: str) -> bool:
    """Whether an environment-variable name looks like it holds a credential."""
    return bool(_SECRET_NAME.search(name))


def secret_values(cfg: Any = None, environ: Mapping[str, str] | None = None) -> set[str]:
    """The values to hide: every set `secret=True` argument of `cfg` plus credential-looking environment variables."""
    environ = os.environ if environ is None else environ
    found = {v for k, v in environ.items() if looks_secret(k)}
    if cfg is not None:
        fields = fields_by_name()
        for args in cfg.sections().values():
            for name in vars(args):
                value = getattr(args, name)
                if name in fields and fields[name].info.secret and isinstance(value, str):
                    found.add(value)
    return {v for v in found if len(v) >= _MIN_LENGTH}


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of a secret value replaced by `***` (longest first)."""
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of nested data with every secret value inside its strings replaced by `***`."""
    secrets = set(secrets)
    if isinstance(value, Mapping):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, str):
        return redact(value, secrets)
    return value


def public_config(cfg: Any) -> dict[str, Any]:
    """The resolved config as one flat {name: value} dict with secrets shown as `***`, for backends' hparams."""
    flat: dict[str, Any] = {}
    for section in config_to_dict(cfg, redact=True).values():
        flat.update(section)
    return scrub(flat, secret_values(cfg))
