"""The extension points: which objectives a sweep member can train with, which baselines can run.

Both registries hold built-ins (named here as "module:attribute" text, so looking up a name never
imports torch) and whatever the modules of params.yaml's `plugins:` list define. A plugin is one
Python module in the project's `plugins/` folder (PLUGIN_DIR, beside params.yaml), holding
`OBJECTIVE = <an Objective>` and/or `BASELINE = <a Baseline>`; nothing else in the project changes,
and every stage that reads a registry lists `plugins/` among its DVC deps, so editing a plugin
reruns what it can change:

    plugins: [my_objective]            # plugins/my_objective.py
    sweep:
      objectives: [tb, my_objective]   # trained, evaluated, registered and reported like tb

The exact check (powerflow.exact), the world's oracle, the trainer and the evaluation ask
`objective(name)`; the baselines section, the evaluation and the report ask `baseline(name)`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from powerflow.errors import ConfigError

# The folder of the plugin modules, relative to the project (the folder of params.yaml).
PLUGIN_DIR = "plugins"

# The objective whose fixed point is p_base^α itself: the exact rows of every report use it.
EXACT_POWER = "tb"

_BUILTIN_OBJECTIVES = {
    "tb": "powerflow.objectives:TRAJECTORY_BALANCE",
    "la_tb": "powerflow.objectives:LENGTH_AWARE_TB",
    "tb_token": "powerflow.objectives:TOKEN_NORMALIZED_TB",
}
_BUILTIN_BASELINES = {
    "grpo": "powerflow.baselines.trainers:GRPO",
    "empo": "powerflow.baselines.trainers:EMPO",
    "low_temperature": "powerflow.sampling.temperature:LOW_TEMPERATURE",
    "mcmc": "powerflow.sampling.mcmc:MCMC",
    "smc": "powerflow.sampling.smc:POWER_SMC",
    "verbalized": "powerflow.sampling.verbalized.sampler:VERBALIZED",
    "high_temperature": "powerflow.sampling.temperature:HIGH_TEMPERATURE",
}
_BUILTIN_KINDS = {"grpo": "trained", "empo": "trained", "low_temperature": "inference", "mcmc": "inference",
                  "smc": "inference", "verbalized": "always", "high_temperature": "always"}

# Plugins loaded in this process: module name -> (objective or None, baseline or None).
_PLUGINS: dict[str, tuple[Any, Any]] = {}


class Objective(Protocol):
    """A Power-Flow objective: the residual training drives to zero and the fixed point it reaches.

    name: the word sweep.objectives and run names use (no '-').
    exact_power: True when the fixed point is p_base^α itself (TB); False when it is another target.
    needs_length: whether the residual reads |y| (the trainer always passes it; the flag documents it).
    """

    name: str
    summary: str
    exact_power: bool

    def residual(self, log_z: Any, log_pi: Any, log_p_base: Any, length: Any, alpha: float,
                 psi: Any = None) -> Any:
        """δ(y) per sequence ([B] tensors in, [B] out); δ = 0 for every y at the fixed point."""

    def fixed_point(self, log_p_base: Any, length: Any, alpha: float) -> tuple[Any, float | None]:
        """log π*(y) on an enumerated support (all y, [N] tensors), and λ when the target has one."""


@dataclass(frozen=True)
class Baseline:
    """A comparison method.

    kind: "trained" (fine-tuned on the train: budget, registered like a policy), "inference" (the
    base model with another sampler, one run per α of baselines.alphas) or "always" (an inference
    method without α that every sweep runs: verbalized sampling, high temperature).
    build: trained -> build(model, tokenizer, dataset, args, graders) returns a TRL trainer (see
    powerflow.baselines.trainers); inference -> build(cfg, alpha) returns an evaluation Sampler.
    """

    name: str
    kind: str
    summary: str
    build: Callable[..., Any]


def _attribute(spec: str) -> Any:
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


def load_plugins(modules: tuple[str, ...] | list[str], root: Path) -> None:
    """Import each plugin module (from `root`/plugins, root being the project folder) and register what
    it defines."""
    folder = str(Path(root) / PLUGIN_DIR)
    if modules and folder not in sys.path:
        sys.path.insert(0, folder)
    for name in modules:
        if name in _PLUGINS:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"plugins: {name!r} cannot be imported ({err}): put {name}.py in {folder}/ "
                              "(or install it), or remove it from plugins.") from err
        found = getattr(module, "OBJECTIVE", None), getattr(module, "BASELINE", None)
        if found == (None, None):
            raise ConfigError(f"plugins: module {name!r} defines neither OBJECTIVE nor BASELINE: add one of them "
                              "(see powerflow/registry.py), or remove it from plugins.")
        clash = [x.name for x in found if x is not None and (x.name in _BUILTIN_OBJECTIVES or x.name in
                                                             _BUILTIN_BASELINES or x.name in _plugin_names())]
        if clash:
            raise ConfigError(f"plugins: {name!r} defines {clash[0]!r}, a name already taken: rename it.")
        _PLUGINS[name] = found


def _plugin_names() -> set[str]:
    return {x.name for pair in _PLUGINS.values() for x in pair if x is not None}


def objective_names() -> tuple[str, ...]:
    """Every objective a member can name: the built-ins, then the loaded plugins'."""
    return tuple(_BUILTIN_OBJECTIVES) + tuple(o.name for o, _ in _PLUGINS.values() if o is not None)


def objective(name: str) -> Objective:
    """The objective called `name`; a ConfigError naming the choices when there is none."""
    if name in _BUILTIN_OBJECTIVES:
        return _attribute(_BUILTIN_OBJECTIVES[name])
    for found, _ in _PLUGINS.values():
        if found is not None and found.name == name:
            return found
    raise ConfigError(f"objective {name!r} is unknown: use one of {', '.join(objective_names())} (or add a plugin "
                      "module defining OBJECTIVE to params.yaml's plugins).")


def baseline_names(kind: str) -> tuple[str, ...]:
    """The baselines of one kind (trained, inference, always): built-ins, then the loaded plugins'."""
    builtin = tuple(n for n, k in _BUILTIN_KINDS.items() if k == kind)
    return builtin + tuple(b.name for _, b in _PLUGINS.values() if b is not None and b.kind == kind)


def baseline(name: str) -> Baseline:
    """The baseline called `name`; a ConfigError naming the choices when there is none."""
    if name in _BUILTIN_BASELINES:
        return _attribute(_BUILTIN_BASELINES[name])
    for _, found in _PLUGINS.values():
        if found is not None and found.name == name:
            return found
    choices = [*baseline_names("trained"), *baseline_names("inference")]
    raise ConfigError(f"baseline {name!r} is unknown: use one of {', '.join(choices)} (or add a plugin module "
                      "defining BASELINE to params.yaml's plugins).")
