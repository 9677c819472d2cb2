"""Typed configuration read once from params.yaml, validated with errors that say how to fix them.

params.yaml is the single source of run settings: DVC tracks it per stage, the CLI and Prefect
read it through `load_params`. Each section maps to one dataclass; an unknown or missing key, a
wrong type or an out-of-range value raises `ConfigError` naming the dotted key and the fix.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from powerflow.objectives import LOGZ_MODES, OBJECTIVES


class UserError(Exception):
    """A problem the user can fix (bad params, missing or invalid input, unreachable server).

    The CLI prints its message as one line, "powerflow: error: ...", and exits with status 2; the
    message names the problem and the fix. Subclasses say which kind of input was wrong.
    """


class ConfigError(UserError, ValueError):
    """A params.yaml problem; the message names the key and what to write instead."""


@dataclass(frozen=True)
class ExactCheckConfig:
    """The exact-verification job: train on an enumerable model, compare with the exact target.

    Section `exact:` of params.yaml.
    """

    seed: int = field(default=0, metadata={"help": "Seed of the base model's weights and of training."})
    prompt: str = field(default="d", metadata={"help": "Prompt, space-separated letters of the vocabulary."})
    n_symbols: int = field(default=4, metadata={"help": "Letters besides EOS; vocabulary = n_symbols + 1 (≤ 8)."})
    base_init_scale: float = field(default=0.3, metadata={"help": "Init std of the random base (structure of p_base)."})
    alphas: tuple[float, ...] = field(default=(0.5, 2.0, 4.0), metadata={"help": "Powers α to train, each > 0."})
    objectives: tuple[str, ...] = field(default=("la_tb", "tb"), metadata={"help": "Objectives: la_tb, tb, tb_token."})
    logz: str = field(default="head", metadata={"help": "log Z estimator: head or group."})
    max_completion_length: int = field(default=4, metadata={"help": "Maximum completion length L (≤ 6)."})
    num_generations: int = field(default=64, metadata={"help": "Samples per prompt per step (G)."})
    steps: int = field(default=800, metadata={"help": "Optimizer steps per run."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Learning rate of the LoRA adapter."})
    logz_learning_rate: float = field(default=0.1, metadata={"help": "Learning rate of the log Z head."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank; 0 trains all weights with a frozen reference copy."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator."})
    low_temperature_alpha: float = field(
        default=4.0, metadata={"help": "α of the token-level low-temperature comparison on the forked base."}
    )

    def __post_init__(self):
        section = "exact"
        for name in ("alphas",):
            for a in getattr(self, name):
                if not math.isfinite(a) or a <= 0:
                    raise ConfigError(f"{section}.{name} contains {a}: every α must be a finite number > 0 (e.g. 0.5, 2, 4).")
        for obj in self.objectives:
            if obj not in OBJECTIVES:
                raise ConfigError(f"{section}.objectives contains {obj!r}: use any of {', '.join(OBJECTIVES)}.")
        if self.logz not in LOGZ_MODES:
            raise ConfigError(f"{section}.logz={self.logz!r}: use one of {', '.join(LOGZ_MODES)}.")
        positive = {"n_symbols": self.n_symbols, "max_completion_length": self.max_completion_length,
                    "num_generations": self.num_generations, "steps": self.steps,
                    "learning_rate": self.learning_rate, "logz_learning_rate": self.logz_learning_rate,
                    "base_init_scale": self.base_init_scale, "low_temperature_alpha": self.low_temperature_alpha}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{section}.{name}={value}: must be > 0.")
        if self.n_symbols + 1 > 8 or self.max_completion_length > 6:
            raise ConfigError(
                f"{section}: n_symbols={self.n_symbols}, max_completion_length={self.max_completion_length} is too "
                "large to enumerate: keep n_symbols <= 7 and max_completion_length <= 6."
            )
        if self.lora_r < 0:
            raise ConfigError(f"{section}.lora_r={self.lora_r}: use a rank >= 1, or 0 for full fine-tuning.")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check one YAML value against a dataclass field annotation.

    Supported: int, float, str, bool, X | None, tuple[X, ...], dict[str, X].
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
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


def load_exact_config(path: str | Path) -> ExactCheckConfig:
    """The `exact:` section of a params file as an ExactCheckConfig."""
    params = load_params(path)
    if "exact" not in params:
        raise ConfigError(f"params file {path} has no `exact:` section: add one (see params.yaml in the repository).")
    return section_from_dict(ExactCheckConfig, params["exact"], "exact")
