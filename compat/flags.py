"""Command-line flags as the peers write them (`--key v1 v2`, `--key=v`, bare `--flag`), edited in place."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Flag:
    key: str  # without the leading dashes
    values: list[str] = field(default_factory=list)
    joined: bool = False  # written `--key=value`

    def tokens(self) -> list[str]:
        if self.joined:
            return [f"--{self.key}={self.values[0]}", *self.values[1:]]
        return [f"--{self.key}", *self.values]


@dataclass
class Flags:
    """The flags after a command, in order; positional tokens before the first flag stay in `positional`."""

    positional: list[str] = field(default_factory=list)
    items: list[Flag] = field(default_factory=list)

    @classmethod
    def parse(cls, tokens: list[str]) -> Flags:
        out = cls()
        for token in tokens:
            if token.startswith("--") and len(token) > 2:
                key, eq, value = token[2:].partition("=")
                out.items.append(Flag(key, [value] if eq else [], joined=bool(eq)))
            elif out.items:
                out.items[-1].values.append(token)
            else:
                out.positional.append(token)
        return out

    def tokens(self) -> list[str]:
        return self.positional + [t for f in self.items for t in f.tokens()]

    def get(self, key: str) -> Flag | None:
        return next((f for f in self.items if f.key == key), None)

    def value(self, key: str) -> str | None:
        flag = self.get(key)
        return flag.values[0] if flag and flag.values else None

    def set(self, key: str, *values: str) -> None:
        """Replace the values of `key` (keeping how it was written), or append `--key values`."""
        flag = self.get(key)
        if flag is None:
            self.items.append(Flag(key, list(values)))
        else:
            flag.values = list(values)

    def remove(self, key: str) -> bool:
        before = len(self.items)
        self.items = [f for f in self.items if f.key != key]
        return len(self.items) != before
