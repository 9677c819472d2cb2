"""An evaluation's own plots and metric-name rules live in powerflow/eval: the report reads them, and
nothing in powerflow/eval imports the report (so a report refactor leaves every evaluation cached)."""

from __future__ import annotations

import pytest

from powerflow.eval.families import families_in, families_of, family_of, pass_at_ks
from powerflow.eval.plots import plot_run_pass_at_k
from powerflow.pipeline import stages

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_families_and_pass_at_ks_follow_the_metric_names():
    metrics = {"math500/pass@4": 0.5, "math500/pass@1": 0.2, "math500/pass@8": float("nan"), "cost/pass@1": 1.0,
               "diag/residual_var": 0.1, "reasoning/accuracy_mean": 0.3, "plain": 1}
    assert families_in([metrics]) == ["math500", "reasoning"]
    assert families_of([{"name": "a", "metrics": metrics}, {"name": "b"}]) == ["math500", "reasoning"]
    assert pass_at_ks(metrics, "math500") == [4, 1]  # finite values only, in key order
    assert pass_at_ks(metrics, "cost") == [1] and family_of("cost/pass@1") is None


def test_one_run_pass_at_k_plot(tmp_path):
    path = plot_run_pass_at_k({"reasoning/pass@1": 0.2, "reasoning/pass@4": 0.5}, tmp_path / "p" / "r.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in path.parent.iterdir()] == ["r.png"]  # no temporary file left
    with pytest.raises(ValueError, match="reasoning/pass@k"):
        plot_run_pass_at_k({"reasoning/pass@1": float("nan")}, tmp_path / "none.png")


def test_nothing_in_eval_imports_the_report():
    graph = stages.import_graph(stages.module_files())
    for module in (m for m in graph if m == "powerflow.eval" or m.startswith("powerflow.eval.")):
        reached = stages.closure(module, graph)
        assert not [m for m in reached if m.startswith("powerflow.report")], module
