"""The α sweep as one Prefect flow: prepare → base → train → evaluate → register → report.

A trained checkpoint is registered only after its evaluation succeeded (powerflow.pipeline).

Deployed as `powerflow-pipeline/alpha-sweep` (prefect.yaml). Run it with
`prefect deployment run 'powerflow-pipeline/alpha-sweep' --param alphas='[0.5, 4]'` (add
`--param seeds='[0, 1, 2]'` to train each α with three seeds).
"""

from __future__ import annotations

from prefect import flow

from flows.stages import (base_flow, evaluate_flow, load_config, prepare_flow, register_baseline_flow, register_flow,
                          report_flow, train_baseline_flow, train_flow)
from powerflow.pipeline.layout import BASE_RUN, baseline_runs


@flow(name="powerflow-pipeline")
def powerflow_pipeline(alphas: list[float] | None = None, objectives: list[str] | None = None,
                       params: str = "params.yaml", seeds: list[int] | None = None) -> dict:
    """Run the whole sweep for `alphas` × `objectives` × `seeds` (default: params.yaml's sweep), then
    the baselines of params.yaml's `baselines:` section on the same budget (one seed: train.seed)."""
    cfg = load_config(params, alphas, objectives, seeds)
    prepare_flow(params)
    base_flow(params)
    evaluate_flow(BASE_RUN, params)
    for member in cfg.sweep.members:
        train_flow(member.alpha, member.objective, member.seed, params)
        evaluate_flow(member.name, params)
        register_flow(member.alpha, member.objective, member.seed, params)
    for run in baseline_runs(cfg):
        if run["trained"]:
            train_baseline_flow(run["method"], params)
        evaluate_flow(run["name"], params)
        if run["trained"]:
            register_baseline_flow(run["method"], params)
    return report_flow(params, list(cfg.sweep.alphas), list(cfg.sweep.objectives), seeds=list(cfg.sweep.seeds))
