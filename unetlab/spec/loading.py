"""Reading YAML spec files into plain mappings, with one-line errors."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import UnetlabError


def load_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file; a missing file or bad YAML becomes a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UnetlabError(f"{path}: no such file")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UnetlabError(f"{path}: invalid YAML{at}: {problem}") from None


def load_mapping(spec: str | os.PathLike | Mapping, what: str = "spec") -> dict:
    """A deep copy of ``spec`` if it is a mapping, else the YAML mapping in the file it names."""
    if isinstance(spec, Mapping):
        return copy.deepcopy(dict(spec))
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
