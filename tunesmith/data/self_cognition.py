"""ms-swift's self-cognition placeholders: `{{NAME}}` and `{{AUTHOR}}` in the conversations become `model_name`
and `model_author`. Each takes one value, or two (ms-swift's Chinese and English forms: the first fills a message
that contains CJK characters, the second any other)."""

from __future__ import annotations

import re

from tunesmith.utils.errors import ConfigError

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
PLACEHOLDERS = (("{{NAME}}", "model_name"), ("{{AUTHOR}}", "model_author"))


def check_names(model_name: list[str] | None, model_author: list[str] | None) -> None:
    """Each is unset, one value, or two (Chinese, English)."""
    for field, value in (("model_name", model_name), ("model_author", model_author)):
        if value is not None and len(value) not in (1, 2):
            raise ConfigError(f"{field}: give one name, or two (Chinese, English); got {len(value)}")


def fill(
    messages: list[dict[str, str]], model_name: list[str] | None, model_author: list[str] | None
) -> list[dict[str, str]]:
    """The messages with the placeholders replaced (messages without them are returned unchanged)."""
    values = {"model_name": model_name, "model_author": model_author}
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) and "{{" in content:
            for placeholder, field in PLACEHOLDERS:
                names = values[field]
                if names and placeholder in content:
                    name = names[0] if len(names) == 1 or CJK.search(content) else names[1]
                    content = content.replace(placeholder, name)
            message = {**message, "content": content}
        out.append(message)
    return out
