"""Credentials inside URLs (`https://user:password@host/...`, pre-signed query signatures and tokens) hidden in
messages and log lines, wherever a URL is echoed."""

from __future__ import annotations

import re

HIDDEN = "***"
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+(?::[^/\s@]*)?@")
# query parameters that carry a credential: S3/GCS/Azure signatures, tokens, keys, passwords
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&](?:[\w.-]*(?:signature|token|credential|secret|password|passwd|api[_-]?key|access[_-]?key)"
    r"[\w.-]*|sig|key|sv|se|sp)=)[^&#\s'\"]+",
    re.IGNORECASE,
)


def redact_urls(text: str) -> str:
    """`text` with the user info of every URL and the values of credential-like query parameters as `***`."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{HIDDEN}@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group('name')}{HIDDEN}", text)
