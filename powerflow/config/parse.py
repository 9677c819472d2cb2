"""The parser every params.yaml section goes through.

`section_from_dict` turns one YAML mapping into its config dataclass, refusing unknown keys and
wrong types with a ConfigError naming the dotted key; `load_params` reads the file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from powerflow.errors import ConfigError


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check one YAML value against a dataclass field annotation.

    Supported: int, float, str, bool, X | None, str | dict[str, X] (by the value's shape), tuple[X, ...],
    dict[str, X].
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) > 1:  # str | dict[str, X]: the option of the value's shape
            shaped = [a for a in options if (typing.get_origin(a) is dict) == isinstance(value, dict)]
            options = shaped[:1] or options[:1]
        return _coerce(value, options[0], key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping (key: value lines), got {value!r}.")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}.")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, e.g. [{_example(typing.get_args(annotation)[0])}]; got {value!r}.")
        inner = typing.get_args(annotation)[0]
        return tuple(_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}.")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}.")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}.")
        return value
    raise TypeError(f"unsupported annotation {annotation} for {key}")


def _example(annotation: Any) -> str:
    return {float: "0.5, 2.0", int: "1, 2", str: '"la_tb"'}.get(annotation, "...")


def section_from_dict(cls, data: Any, section: str):
    """Build a config dataclass from a params.yaml section, refusing unknown keys and bad types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"params.yaml section `{section}` must be a mapping of keys to values, got {data!r}.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"params.yaml has unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)}: "
            f"remove them or use one of {', '.join(sorted(names))}."
        )
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def load_params(path: str | Path) -> dict[str, Any]:
    """Read params.yaml as a dict; a missing file or malformed YAML is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found: run from the project root or pass --params PATH.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"params file {path} is not valid YAML ({err}): fix the syntax at the line shown.") from err
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must hold a mapping of sections (e.g. `exact:`), got {type(data).__name__}.")
    return data
