"""Error types that the CLI turns into one-line messages."""


class TunesmithError(Exception):
    """Base class: the message is shown to the user as-is, on one line."""


class ConfigError(TunesmithError):
    """A configuration key or value is wrong; the message names the key and what is allowed."""


class DataError(TunesmithError):
    """Input data is wrong; the message names the file, the line or row, and the field."""
