"""Typed configuration read once from params.yaml, validated with errors that say how to fix them.

params.yaml is the single source of run settings: DVC tracks it per stage, the CLI and Prefect
read it through `load_pipeline_config`. Each section maps to one dataclass; an unknown or missing
key, a wrong type or an out-of-range value raises `ConfigError` naming the dotted key and the fix.

    powerflow.config.parse      the parser every section goes through (section_from_dict, load_params)
    powerflow.config.sections   model:, sweep:, report:, exact:
    powerflow.config.train      train: (and the builder of the trainer's config from a member)
    powerflow.config.launch     the accelerate config train.accelerate_config names

The other sections live beside their code (powerflow.data.config, powerflow.eval.config,
powerflow.world.config, powerflow.baselines.config, powerflow.tracking.store). This module
assembles them into a `PipelineConfig`; it re-exports nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from powerflow.baselines.config import BaselinesConfig
from powerflow.config.launch import load_accelerate_config
from powerflow.config.parse import load_params, section_from_dict
from powerflow.config.sections import ModelConfig, ReportConfig, SweepConfig
from powerflow.config.train import TrainConfig
from powerflow.data.config import DataConfig
from powerflow.errors import ConfigError
from powerflow.eval.config import EvalConfig
from powerflow.registry import load_plugins
from powerflow.tracking.store import TrackingConfig
from powerflow.world.config import PretrainConfig, WorldConfig


def _section_classes() -> dict[str, type]:
    """params.yaml section name -> config dataclass."""
    return {
        "model": ModelConfig, "world": WorldConfig, "base": PretrainConfig, "data": DataConfig,
        "sweep": SweepConfig, "train": TrainConfig, "evaluate": EvalConfig, "tracking": TrackingConfig,
        "report": ReportConfig, "baselines": BaselinesConfig,
    }


@dataclass(frozen=True)
class PipelineConfig:
    """Every section the pipeline reads, validated together; `raw` keeps the YAML for logging."""

    model: ModelConfig
    world: WorldConfig
    base: PretrainConfig
    data: DataConfig
    sweep: SweepConfig
    train: TrainConfig
    evaluate: EvalConfig
    tracking: TrackingConfig
    report: ReportConfig
    baselines: BaselinesConfig
    raw: dict = field(repr=False)
    path: Path = field(repr=False)
    plugins: tuple[str, ...] = ()  # params.yaml `plugins:`, loaded into powerflow.registry

    def __post_init__(self):
        if self.train.accelerate_config is not None:
            load_accelerate_config(self.project_root / self.train.accelerate_config, "train.accelerate_config")
        check_world_lengths(self)

    @property
    def project_root(self) -> Path:
        """Directory of params.yaml (absolute): every relative path in the pipeline hangs off it."""
        return self.path.parent


def check_world_lengths(cfg: "PipelineConfig") -> None:
    """The long-completion world's solutions must fit the training and evaluation length caps."""
    from powerflow.world.teacher import longest_completion_tokens

    if cfg.world.max_operands is None or cfg.data.source != "world":
        return
    need = longest_completion_tokens(cfg.world)
    for key, value in (("train.max_completion_length", cfg.train.max_completion_length),
                       ("evaluate.max_new_tokens", cfg.evaluate.max_new_tokens)):
        if value < need:
            raise ConfigError(
                f"{key}={value} cuts the long-completion world's solutions (world.max_operands="
                f"{cfg.world.max_operands}: up to {need} tokens): set it to at least {need}."
            )


# Keys a pipeline params file must state: the rest have documented defaults.
REQUIRED_KEYS = {"model": ("name_or_path",), "data": ("source",), "sweep": ("alphas", "objectives"),
                 "train": (), "evaluate": ()}


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Read and validate every pipeline section of params.yaml (missing sections -> defaults)."""
    path = Path(path).resolve()
    params = load_params(path)
    known = set(_section_classes()) | {"exact", "plugins"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(
            f"params file {path} has unknown section(s) {', '.join(unknown)}: remove them or use "
            f"{', '.join(sorted(known))}."
        )
    for section, keys in REQUIRED_KEYS.items():
        if not isinstance(params.get(section), dict):
            raise ConfigError(
                f"params file {path} has no `{section}:` section: add it (with {', '.join(keys) or 'its keys'}; "
                "see params.yaml in the repository for every key and its default)."
            )
        missing = [k for k in keys if k not in params[section]]
        if missing:
            raise ConfigError(
                f"params file {path} is missing {', '.join(f'{section}.{k}' for k in missing)}: add "
                f"{'it' if len(missing) == 1 else 'them'} (e.g. sweep.alphas: [0.5, 1.0, 2.0, 4.0])."
            )
    plugins = load_plugins_of(params, path.parent)
    sections = {name: section_from_dict(cls, params.get(name), name) for name, cls in _section_classes().items()}
    check_alpha_literals(params)
    return PipelineConfig(**sections, plugins=plugins, raw=params, path=path)


def load_plugins_of(params: dict, root: Path) -> tuple[str, ...]:
    """params.yaml's `plugins:` (module names, importable from the project folder), loaded into the
    objective and baseline registries before the sections that name them are checked."""
    plugins = params.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(m, str) and m.strip() for m in plugins):
        raise ConfigError(f"plugins must be a list of module names (e.g. [my_objective]), got {plugins!r}.")
    load_plugins(plugins, root)
    return tuple(plugins)


def check_alpha_literals(params: dict) -> None:
    """Every α of sweep.alphas and baselines.alphas is written as a float (4.0, not 4).

    DVC renders `${item.alpha}` as the text params.yaml holds and names the stage's outputs with it,
    while a member's name writes α as a float (alpha-4.0-tb-s0): `4` would name two different folders.
    """
    for section in ("sweep", "baselines"):
        alphas = (params.get(section) or {}).get("alphas") if isinstance(params.get(section), dict) else None
        for i, alpha in enumerate(alphas if isinstance(alphas, list) else []):
            if isinstance(alpha, int) and not isinstance(alpha, bool):
                raise ConfigError(f"{section}.alphas[{i}] = {alpha}: write it as {float(alpha)} (DVC names each run's "
                                  f"folders with the text params.yaml holds, and run names write α as a float: "
                                  f"alpha-{float(alpha)}-...).")

