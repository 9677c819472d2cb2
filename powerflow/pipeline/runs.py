"""Tracking helpers shared by the train, register and report stages: the experiment, the sweep's
parent run, the tags every run carries, and a trained member's run id."""

from __future__ import annotations

import json

from powerflow.config import PipelineConfig
from powerflow.pipeline.layout import require_input, git_commit, layout_of, params_sha256, run_params, training_seed


def tracking_experiment(cfg: PipelineConfig) -> str:
    """Connect to the tracking store (fails fast with a fix when unreachable); the experiment id."""
    from powerflow import tracking

    return tracking.connect(cfg.tracking, cfg.project_root)


def sweep_parent(cfg: PipelineConfig, experiment_id: str) -> str:
    from powerflow import tracking

    return tracking.sweep_parent_run(experiment_id, cfg.sweep.name,
                                     tags={"powerflow.base_model": cfg.model.name_or_path})


def run_tags(cfg: PipelineConfig, alpha: float | None, objective: str | None, prompts_sha: str,
             method: str | None = None, seed: int | None = None) -> dict[str, str]:
    """Tags every run and registered version carries: what it is and where it came from (`seed`: the
    training seed of a trained run)."""
    params = run_params(cfg, alpha, objective, method, seed)
    tags = {
        "base_model": cfg.model.name_or_path,
        "prompts_sha256": prompts_sha,
        "git_commit": git_commit(cfg.project_root),
        "params_sha256": params_sha256(params),
        "sweep": cfg.sweep.name,
    }
    if alpha is not None:
        tags["alpha"] = f"{alpha:g}"
    if objective is not None:
        tags["objective"] = str(objective)
    if alpha is not None or method is not None:
        tags["method"] = method or "power_flow"
    seed = training_seed(cfg, method, seed) if alpha is not None or method is not None else None
    if seed is not None:
        tags["seed"] = str(seed)
    return tags


def training_run_id(cfg: PipelineConfig, name: str) -> str:
    path = require_input(layout_of(cfg).train_outputs(name) / "run.json", "train")
    return json.loads(path.read_text())["run_id"]
