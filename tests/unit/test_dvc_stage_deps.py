"""Each DVC stage depends on exactly the pipeline modules its step runs (and so reruns only when they change)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.unit.test_import_cycles import import_graph

ROOT = Path(__file__).resolve().parents[2]

# The stage module each dvc.yaml stage's CLI command runs.
STAGE_MODULE = {
    "prepare": "prepare", "base": "base", "train": "train", "train_baseline": "train",
    "evaluate_base": "evaluate", "evaluate": "evaluate", "evaluate_baseline": "evaluate",
    "evaluate_method": "evaluate", "evaluate_verbalized": "evaluate",
    "register": "register", "register_baseline": "register", "report": "report",
}


# Split packages whose modules each stage lists one by one (the rest of powerflow/ is listed by folder).
SPLIT_PACKAGES = ("powerflow.pipeline", "powerflow.report")


def module_path(name: str) -> str:
    return f"{name.replace('.', '/')}/__init__.py" if name in SPLIT_PACKAGES else name.replace(".", "/") + ".py"


def pipeline_closure(module: str) -> set[str]:
    """The split packages' modules that importing stage `module` loads (with their packages), as paths."""
    graph, seen, todo = import_graph(), set(), [f"powerflow.pipeline.{module}"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [d for d in graph[name] if d.startswith(SPLIT_PACKAGES)]
    packages = {p for p in SPLIT_PACKAGES for n in seen if n.startswith(p + ".")}
    return {module_path(n) for n in seen | packages}


def test_every_pipeline_stage_depends_on_the_modules_it_runs_and_no_others():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(STAGE_MODULE) <= set(stages)
    for stage, module in STAGE_MODULE.items():
        listed = {d for d in stages[stage]["deps"] if d.startswith(("powerflow/pipeline", "powerflow/report"))}
        assert listed == pipeline_closure(module), (stage, sorted(listed ^ pipeline_closure(module)))


def test_the_train_stage_does_not_depend_on_the_report():
    assert "powerflow/pipeline/report.py" not in pipeline_closure("train")
    assert not any(path.startswith("powerflow/report") for path in pipeline_closure("train"))
    assert "powerflow/report/plots.py" in pipeline_closure("evaluate")  # the pass@k plot of every evaluation
