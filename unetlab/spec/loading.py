"""Reading YAML spec files into plain mappings, with one-line errors."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import UnetlabError


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key repeated in one mapping is an error (YAML says keys
    are unique; the plain loader silently keeps the last value)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:  # the keys written here; ``<<: *anchor`` may be overridden
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    break
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first given on line {first.line + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text (keys unique in every mapping); a problem is one line naming ``source``."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UnetlabError(f"{source}: invalid YAML{at}: {problem}") from None


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The UTF-8 text of ``path``; missing, unreadable or not UTF-8 is a one-line error."""
    path = Path(path)
    if path.is_dir():
        raise UnetlabError(f"{path}: is a folder, not a {what}")
    if not path.exists():
        raise UnetlabError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnetlabError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UnetlabError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
                           f"save the {what} as UTF-8") from None


def load_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file; a missing, unreadable or non-UTF-8 file, bad YAML or a repeated key
    becomes a one-line error."""
    return parse_yaml(read_text(path, "YAML file"), str(path))


def load_mapping(spec: str | os.PathLike | Mapping, what: str = "spec") -> dict:
    """A deep copy of ``spec`` if it is a mapping, else the YAML mapping in the file it names."""
    if isinstance(spec, Mapping):
        return copy.deepcopy(dict(spec))
    if not isinstance(spec, (str, os.PathLike)):
        raise UnetlabError(f"expected a {what} mapping or the path of a YAML file, got "
                           f"{type(spec).__name__} {spec!r}")
    data = load_yaml(spec)
    if not isinstance(data, dict):
        raise UnetlabError(f"{spec}: a {what} file must hold a mapping, not {type(data).__name__}")
    return data


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """``override`` laid over ``base``; nested mappings merge, everything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(mapping: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested ``mapping``, creating mappings on the way."""
    keys = dotted.split(".")
    node = mapping
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise UnetlabError(f"{'.'.join(keys[:i + 1])}: is a {type(child).__name__}, cannot set {dotted}")
        node = child
    node[keys[-1]] = copy.deepcopy(value)


def expand_dotted(mapping: Mapping) -> dict:
    """Turn keys like ``model.dropout`` into nested mappings, merged with the rest."""
    out: dict = {}
    plain = {k: v for k, v in mapping.items() if "." not in str(k)}
    out = deep_merge(out, {k: expand_dotted(v) if isinstance(v, Mapping) else v for k, v in plain.items()})
    for key, value in mapping.items():
        if "." in str(key):
            set_dotted(out, str(key), expand_dotted(value) if isinstance(value, Mapping) else value)
    return out
