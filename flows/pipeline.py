"""The α sweep as one Prefect flow, built from the stage table that dvc.yaml is generated from.

`powerflow.pipeline.stages.sweep_stages()` lists the stages of `dvc repro report` in an order
DVC's graph allows (prepare → base → train → evaluate → register → baselines → report); this
flow runs each stage's Prefect flow (flows/stages.py) once per point of its matrix. A trained
checkpoint is registered only after its evaluation succeeded (powerflow.pipeline). A stage added
to the table without an entry in `STAGE_FLOWS` is refused before anything runs.

Deployed as `powerflow-pipeline/alpha-sweep` (prefect.yaml). Run it with
`prefect deployment run 'powerflow-pipeline/alpha-sweep' --param alphas='[0.5, 4]'` (add
`--param seeds='[0, 1, 2]'` to train each α with three seeds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow

from flows.stages import (base_flow, evaluate_flow, load_config, prepare_flow, register_baseline_flow, register_flow,
                          report_flow, train_baseline_flow, train_flow)
from powerflow.config import PipelineConfig
from powerflow.member import alpha_text
from powerflow.pipeline.layout import BASE_RUN
from powerflow.pipeline.stages import STAGES, Stage, matrix_items, sweep_stages


def _member_name(cfg: PipelineConfig, item: dict) -> str:
    return cfg.sweep.member(item["alpha"], item["objective"], item["seed"], listed=False).name


def _report(cfg: PipelineConfig, item: dict, params: str) -> dict:
    return report_flow(params, list(cfg.sweep.alphas), list(cfg.sweep.objectives), seeds=list(cfg.sweep.seeds))


# Stage of the table -> the flow call of one matrix item (cfg: the sweep with the run's overrides).
STAGE_FLOWS: dict[str, Callable[[PipelineConfig, dict, str], Any]] = {
    "prepare": lambda cfg, item, params: prepare_flow(params),
    "base": lambda cfg, item, params: base_flow(params),
    "train": lambda cfg, item, params: train_flow(item["alpha"], item["objective"], item["seed"], params),
    "evaluate_base": lambda cfg, item, params: evaluate_flow(BASE_RUN, params),
    "evaluate": lambda cfg, item, params: evaluate_flow(_member_name(cfg, item), params),
    "register": lambda cfg, item, params: register_flow(item["alpha"], item["objective"], item["seed"], params),
    "train_baseline": lambda cfg, item, params: train_baseline_flow(item["method"], params),
    "evaluate_baseline": lambda cfg, item, params: evaluate_flow(item["method"], params),
    "register_baseline": lambda cfg, item, params: register_baseline_flow(item["method"], params),
    "evaluate_method": lambda cfg, item, params: evaluate_flow(f"{item['method']}-{alpha_text(item['alpha'])}",
                                                               params),
    "evaluate_verbalized": lambda cfg, item, params: evaluate_flow("verbalized", params),
    "evaluate_high_temperature": lambda cfg, item, params: evaluate_flow("high_temperature", params),
    "report": _report,
}


def matrix_lists(cfg: PipelineConfig) -> dict[str, list]:
    """What each ${section.key} of the table's matrices names, for this run's sweep."""
    return {"sweep.alphas": list(cfg.sweep.alphas), "sweep.objectives": list(cfg.sweep.objectives),
            "sweep.seeds": list(cfg.sweep.seeds), "baselines.train": list(cfg.baselines.train),
            "baselines.inference": list(cfg.baselines.inference), "baselines.alphas": list(cfg.baselines.alphas)}


def missing_stage_flows(table: tuple[Stage, ...] = STAGES) -> list[str]:
    """Stages of the sweep that no entry of STAGE_FLOWS runs."""
    return [stage.name for stage in sweep_stages(table) if stage.name not in STAGE_FLOWS]


@flow(name="powerflow-pipeline")
def powerflow_pipeline(alphas: list[float] | None = None, objectives: list[str] | None = None,
                       params: str = "params.yaml", seeds: list[int] | None = None) -> dict:
    """Run every stage of the sweep for `alphas` × `objectives` × `seeds` (default: params.yaml's
    sweep) and the baselines of params.yaml's `baselines:` section; returns the report's result."""
    missing = missing_stage_flows()
    if missing:
        raise RuntimeError(f"stage(s) {', '.join(missing)} of powerflow/pipeline/stages.py have no flow: add them "
                           "to STAGE_FLOWS in flows/pipeline.py.")
    cfg = load_config(params, alphas, objectives, seeds)
    lists, result = matrix_lists(cfg), {}
    for stage in sweep_stages():
        for item in matrix_items(stage, lists):
            result = STAGE_FLOWS[stage.name](cfg, item, params)
    return result
