"""Typed configuration read once from params.yaml, validated with errors that say how to fix them.

params.yaml is the single source of run settings: DVC tracks it per stage, the CLI and Prefect
read it through `load_params`. Each section maps to one dataclass; an unknown or missing key, a
wrong type or an out-of-range value raises `ConfigError` naming the dotted key and the fix.

This module only assembles the sections into a `PipelineConfig`: each section's dataclass lives
beside its code (powerflow.sections holds the pipeline's own: model, sweep, train, report, exact,
and the parser), and the errors live in powerflow.errors, which imports nothing of the project.
The names below are re-exported so `from powerflow.config import TrainConfig` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from powerflow.errors import ConfigError, UserError
from powerflow.sections import (
    LR_SCHEDULES,
    WORLD_MODEL,
    ExactCheckConfig,
    ModelConfig,
    ReportConfig,
    SweepConfig,
    TrainConfig,
    check_alpha,
    load_exact_config,
    load_params,
    section_from_dict,
)

__all__ = [
    "LR_SCHEDULES", "REQUIRED_KEYS", "WORLD_MODEL", "ConfigError", "ExactCheckConfig", "ModelConfig",
    "PipelineConfig", "ReportConfig", "SweepConfig", "TrainConfig", "UserError", "check_alpha",
    "load_exact_config", "load_params", "load_pipeline_config", "section_from_dict",
]


def _section_classes() -> dict[str, type]:
    """params.yaml section name -> config dataclass (imported here: they live beside their code)."""
    from powerflow.baselines.config import BaselinesConfig
    from powerflow.data.config import DataConfig
    from powerflow.eval.config import EvalConfig
    from powerflow.tracking import TrackingConfig
    from powerflow.world.config import PretrainConfig, WorldConfig

    return {
        "model": ModelConfig, "world": WorldConfig, "base": PretrainConfig, "data": DataConfig,
        "sweep": SweepConfig, "train": TrainConfig, "evaluate": EvalConfig, "tracking": TrackingConfig,
        "report": ReportConfig, "baselines": BaselinesConfig,
    }


@dataclass(frozen=True)
class PipelineConfig:
    """Every section the pipeline reads, validated together; `raw` keeps the YAML for logging."""

    model: ModelConfig
    world: Any
    base: Any
    data: Any
    sweep: SweepConfig
    train: TrainConfig
    evaluate: Any
    tracking: Any
    report: ReportConfig
    baselines: Any
    raw: dict = field(repr=False)
    path: Path = field(repr=False)

    def __post_init__(self):
        if self.train.accelerate_config is not None:
            from powerflow.distributed import load_accelerate_config

            load_accelerate_config(self.project_root / self.train.accelerate_config, "train.accelerate_config")

    @property
    def project_root(self) -> Path:
        """Directory of params.yaml (absolute): every relative path in the pipeline hangs off it."""
        return self.path.parent


# Keys a pipeline params file must state: the rest have documented defaults.
REQUIRED_KEYS = {"model": ("name_or_path",), "data": ("source",), "sweep": ("alphas", "objectives"),
                 "train": (), "evaluate": ()}


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Read and validate every pipeline section of params.yaml (missing sections -> defaults)."""
    path = Path(path).resolve()
    params = load_params(path)
    known = set(_section_classes()) | {"exact"}
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
    sections = {name: section_from_dict(cls, params.get(name), name) for name, cls in _section_classes().items()}
    return PipelineConfig(**sections, raw=params, path=path)
