"""The Prefect sweep flow is built from the stage table dvc.yaml is generated from."""

from __future__ import annotations

from dataclasses import replace

from flows.pipeline import STAGE_FLOWS, matrix_lists, missing_stage_flows
from powerflow.config import load_pipeline_config
from powerflow.pipeline.stages import STAGES, matrix_items, sweep_stages


def test_every_sweep_stage_of_the_table_has_a_flow_and_nothing_else_does():
    assert missing_stage_flows() == []
    assert set(STAGE_FLOWS) == {s.name for s in sweep_stages()}
    assert "verify_exact" not in STAGE_FLOWS and sweep_stages()[-1].name == "report"


def test_a_stage_added_to_the_table_without_a_flow_is_reported():
    table = (*STAGES, replace(STAGES[0], name="new_stage"))
    assert missing_stage_flows(table) == ["new_stage"]
    assert missing_stage_flows(tuple(s for s in table if s.name != "new_stage" and s.in_sweep)) == []


def test_matrix_items_follow_dvc_order_and_the_runs_overrides():
    cfg = load_pipeline_config("params.yaml")
    cfg = replace(cfg, sweep=replace(cfg.sweep, alphas=(0.5, 4.0), objectives=("tb",), seeds=(0, 1)))
    train = next(s for s in STAGES if s.name == "train")
    items = matrix_items(train, matrix_lists(cfg))
    assert items == [{"alpha": 0.5, "objective": "tb", "seed": 0}, {"alpha": 0.5, "objective": "tb", "seed": 1},
                     {"alpha": 4.0, "objective": "tb", "seed": 0}, {"alpha": 4.0, "objective": "tb", "seed": 1}]
    assert [m.name for m in cfg.sweep.members] == [
        f"alpha-{i['alpha']}-{i['objective']}-s{i['seed']}" for i in items]  # the flow and DVC name the same runs
    assert matrix_items(next(s for s in STAGES if s.name == "prepare"), matrix_lists(cfg)) == [{}]
