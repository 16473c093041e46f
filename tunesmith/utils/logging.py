"""Log levels per process (HF `log_level` / `log_level_replica` / `log_on_each_node`) and secret redaction
(secret values and URL credentials)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from tunesmith.utils.url_redact import redact_urls

LOGGER_NAMES = ("tunesmith", "transformers")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS |= {"error": logging.ERROR, "critical": logging.CRITICAL}


def process_log_level(args: Any, rank: int, local_rank: int) -> str:
    """The level name this process uses: `log_level` on the main process (each node's when `log_on_each_node`),
    `log_level_replica` elsewhere."""
    main = local_rank == 0 if args.log_on_each_node else rank == 0
    return args.log_level if main else args.log_level_replica


def setup_logging(cfg: Any, rank: int, local_rank: int) -> str:
    """Set the tunesmith and transformers loggers to this process's level ("passive" leaves them); returns it."""
    level = process_log_level(getattr(cfg, "train", cfg), rank, local_rank)
    if level != "passive":
        for name in LOGGER_NAMES:
            logging.getLogger(name).setLevel(_LEVELS[level])
    return level


class RedactFilter(logging.Filter):
    """Replaces secret values in a record's final message with `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message, redact it and keep the record."""
        record.msg, record.args = redact_message(record.getMessage(), self.secrets), None
        return True


def redact_message(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with each secret value (longest first) and every URL credential or signature as `***`."""
    for value in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(value, "***")
    return redact_urls(text)


def add_redaction(secrets: Iterable[str]) -> None:
    """Attach a RedactFilter to every handler of the root and tunesmith loggers (child loggers included)."""
    secrets = [s for s in secrets if s]  # none: the filter still hides URL credentials
    for logger in (logging.getLogger(), logging.getLogger("tunesmith")):
        for handler in logger.handlers:
            if not any(
                isinstance(f, RedactFilter) and set(f.secrets) >= set(secrets) for f in handler.filters
            ):
                handler.addFilter(RedactFilter(secrets))
