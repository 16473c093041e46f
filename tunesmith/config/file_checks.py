"""Checks on a config file before its values are read: UTF-8 text (else the byte offset and line of the first bad
byte), no key twice in one mapping (YAML and JSON would silently keep the last), and YAML aliases that expand to a
bounded number of values (a few hundred bytes of nested aliases can otherwise expand to gigabytes)."""

from __future__ import annotations

from typing import Any

import yaml

from tunesmith.utils.errors import ConfigError

MAX_EXPANDED_NODES = 100_000  # values a config may hold once aliases are expanded; real configs hold hundreds
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def decode_text(raw: bytes, name: str) -> str:
    """`raw` as UTF-8 text (a UTF-8 byte-order mark is dropped); a ConfigError naming the first bad byte."""
    if raw.startswith(_UTF16_BOMS):
        raise ConfigError(f"config file {name}: is UTF-16 text; save it as UTF-8")
    if b"\x00" in raw:
        offset = raw.index(b"\x00")
        line = raw[:offset].count(b"\n") + 1
        raise ConfigError(
            f"config file {name} line {line} (byte {offset}): a NUL byte; "
            "this is a binary file, not a YAML or JSON config"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"config file {name} line {line} (byte {exc.start}): byte 0x{raw[exc.start]:02x} is not UTF-8; "
            "save the file as UTF-8"
        ) from None


def check_yaml_tree(root: yaml.Node | None, name: str) -> None:
    """Refuse a key given twice in one mapping, and aliases expanding to more than MAX_EXPANDED_NODES values."""
    if root is None:
        return
    sizes: dict[int, int] = {}
    if _expanded_size(root, sizes, name) > MAX_EXPANDED_NODES:
        raise ConfigError(
            f"config file {name}: its YAML aliases expand to more than {MAX_EXPANDED_NODES} values; "
            "write the values out or use fewer nested aliases"
        )


def _expanded_size(node: yaml.Node, sizes: dict[int, int], name: str) -> int:
    """How many values `node` stands for with every alias expanded (each shared node counted once per use);
    checks each mapping for duplicate keys on the way. Stops counting once past the limit."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = MAX_EXPANDED_NODES + 1  # a node reached again while being counted: a recursive alias
    total = 1
    if isinstance(node, yaml.MappingNode):
        _check_keys(node, name)
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    for child in children:
        total += _expanded_size(child, sizes, name)
        if total > MAX_EXPANDED_NODES:
            break
    sizes[id(node)] = total
    return total


def _check_keys(node: yaml.MappingNode, name: str) -> None:
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
            continue
        line = key_node.start_mark.line + 1
        if key_node.value in first:
            raise ConfigError(
                f"config file {name} line {line}: key {key_node.value!r} is given twice in one mapping (also on "
                f"line {first[key_node.value]}); keep one"
            )
        first[key_node.value] = line


def unique_json_object(name: str):
    """An `object_pairs_hook` for `json.loads` that refuses a key given twice in one object."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ConfigError(f"config file {name}: key {key!r} is given twice in one object; keep one")
            result[key] = value
        return result

    return hook
