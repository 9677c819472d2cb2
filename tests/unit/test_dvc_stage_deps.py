"""Each DVC stage depends on exactly the code its entry module can import (and so reruns only when
that changes): dvc.yaml is rendered from the stage table in powerflow/pipeline/stages.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from powerflow.pipeline import stages as st
from powerflow.registry import PLUGIN_DIR

ROOT = Path(__file__).resolve().parents[2]
EVALUATION_STAGES = ("evaluate_base", "evaluate", "evaluate_baseline", "evaluate_method", "evaluate_verbalized")


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_problems(stage: st.Stage, deps: list[str], files: dict[str, Path], graph: dict[str, set[str]]) -> list[str]:
    """What is wrong with `deps` as `stage`'s code deps: modules its entry can import that no dep
    covers, and deps under powerflow/ that it cannot import."""
    modules = st.closure(stage.entry, graph)
    return ([f"{stage.name}: {m} ({st.dep_path(m, files)}) is imported from {stage.entry} but not a dep"
             for m in st.uncovered(modules, deps, files)]
            + [f"{stage.name}: {d} is a dep but {stage.entry} imports nothing under it"
               for d in st.not_imported(modules, deps, files)])


def test_dvc_yaml_is_what_the_stage_table_renders():
    fix = "dvc.yaml is stale: run `python -m powerflow.pipeline.stages --write`"
    listed, rendered = dvc_stages(), st.stage_dicts()
    changed = {name: {"new": sorted(set(entry["deps"]) - set(listed.get(name, {}).get("deps", []))),
                      "gone": sorted(set(listed.get(name, {}).get("deps", [])) - set(entry["deps"]))}
               for name, entry in rendered.items()}
    assert not {k: v for k, v in changed.items() if v["new"] or v["gone"]}, (fix, changed)
    assert (ROOT / "dvc.yaml").read_text() == st.render(), fix


def test_every_stage_depends_on_exactly_its_import_closure():
    files = st.module_files()
    graph = st.import_graph(files)
    listed = dvc_stages()
    assert [s.name for s in st.STAGES] == list(listed)
    problems = [p for stage in st.STAGES for p in stage_problems(stage, listed[stage.name]["deps"], files, graph)]
    assert not problems, "\n".join(problems)


def test_the_table_keeps_every_data_dep_before_the_code_deps():
    for stage in st.STAGES:
        deps = dvc_stages()[stage.name]["deps"]
        assert deps[:len(stage.deps)] == list(stage.deps)
        code = [d for d in deps[len(stage.deps):] if d != PLUGIN_DIR]
        assert code and all(d.startswith("powerflow/") for d in code), stage.name


def test_every_stage_that_reads_a_registry_depends_on_the_plugins_folder():
    """A plugin module (params.yaml `plugins:`) can define the objective or baseline a stage runs, so
    editing it must rerun that stage: the stages whose closure holds powerflow.registry list plugins/."""
    files = st.module_files()
    graph = st.import_graph(files)
    listed = dvc_stages()
    readers = {s.name for s in st.STAGES if st.REGISTRY in st.closure(s.entry, graph)}
    assert {"train", "train_baseline", "evaluate", "evaluate_method", "verify_exact"} <= readers
    for stage in st.STAGES:
        assert (PLUGIN_DIR in listed[stage.name]["deps"]) == (stage.name in readers), stage.name
    assert (ROOT / PLUGIN_DIR).is_dir(), "the plugins folder must exist: DVC refuses a missing dep"


def test_no_evaluation_stage_depends_on_the_report():
    listed = dvc_stages()
    for name in EVALUATION_STAGES:
        assert "powerflow/eval" in listed[name]["deps"]
        report = ("powerflow/report", "powerflow/pipeline/report")
        assert not [d for d in listed[name]["deps"] if d.startswith(report)], name
    for name in ("prepare", "base", "train", "train_baseline", "register", "register_baseline", "verify_exact"):
        assert not [d for d in listed[name]["deps"] if d.startswith("powerflow/report")], name
    assert "powerflow/report" in listed["report"]["deps"]


# --- the checks themselves, on a synthetic package ---------------------------------------------------


def write_package(root: Path, modules: dict[str, str]) -> Path:
    """A package tree under root/powerflow from {dotted module: source}; returns root/powerflow."""
    for name, source in modules.items():
        parts = name.split(".")
        is_package = any(other.startswith(name + ".") for other in modules)
        path = root.joinpath(*parts, "__init__.py") if is_package else root.joinpath(*parts[:-1], parts[-1] + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root / "powerflow"


SYNTHETIC = {
    "powerflow": "",
    "powerflow.helper": "",
    "powerflow.unused": "",
    "powerflow.pipeline": "",
    "powerflow.pipeline.layout": "",
    "powerflow.pipeline.evaluate": """
        from typing import TYPE_CHECKING
        from powerflow.pipeline.layout import Layout
        from . import helper_of_stage
        if TYPE_CHECKING:
            from powerflow.report.values import fmt
        def run():
            from powerflow.eval.metrics import pass_at_k
            return "powerflow.world.grading:Grade"
    """,
    "powerflow.pipeline.helper_of_stage": "",
    "powerflow.pipeline.report": "from powerflow.report import tables\n",
    "powerflow.eval": "",
    "powerflow.eval.metrics": "import powerflow.helper\n",
    "powerflow.world": "",
    "powerflow.world.grading": "",
    "powerflow.report": "",
    "powerflow.report.tables": "from powerflow.eval.metrics import pass_at_k\n",
    "powerflow.report.values": "",
}


def test_the_closure_follows_function_level_relative_and_registry_imports_but_not_type_checking(tmp_path):
    files = st.module_files(write_package(tmp_path, SYNTHETIC))
    graph = st.import_graph(files)
    assert st.closure("powerflow.pipeline.evaluate", graph) == {
        "powerflow", "powerflow.pipeline", "powerflow.pipeline.evaluate", "powerflow.pipeline.layout",
        "powerflow.pipeline.helper_of_stage", "powerflow.eval", "powerflow.eval.metrics", "powerflow.helper",
        "powerflow.world", "powerflow.world.grading"}
    assert st.code_deps("powerflow.pipeline.evaluate", graph, files) == [
        "powerflow/__init__.py", "powerflow/eval", "powerflow/helper.py", "powerflow/pipeline/__init__.py",
        "powerflow/pipeline/evaluate.py", "powerflow/pipeline/helper_of_stage.py", "powerflow/pipeline/layout.py",
        "powerflow/world"]
    assert "powerflow/report" in st.code_deps("powerflow.pipeline.report", graph, files)
    with pytest.raises(KeyError, match="powerflow.pipeline.gone"):
        st.closure("powerflow.pipeline.gone", graph)


def test_the_coverage_check_fails_on_a_missing_dep_and_on_a_dep_the_stage_cannot_import(tmp_path):
    files = st.module_files(write_package(tmp_path, SYNTHETIC))
    graph = st.import_graph(files)
    stage = st.Stage("evaluate", "powerflow evaluate", "powerflow.pipeline.evaluate")
    good = st.code_deps(stage.entry, graph, files)
    assert stage_problems(stage, good, files, graph) == []
    # The function-level import of powerflow.eval.metrics is not covered once powerflow/eval is dropped.
    missing = [d for d in good if d != "powerflow/eval"]
    assert stage_problems(stage, missing, files, graph) == [
        "evaluate: powerflow.eval (powerflow/eval) is imported from powerflow.pipeline.evaluate but not a dep",
        "evaluate: powerflow.eval.metrics (powerflow/eval) is imported from powerflow.pipeline.evaluate but not a dep"]
    # A module file listed alone does not cover the rest of its package.
    partial = [*missing, "powerflow/eval/metrics.py"]
    assert [p.split(" (")[0] for p in stage_problems(stage, partial, files, graph)] == ["evaluate: powerflow.eval"]
    # The report is imported under TYPE_CHECKING only: listing it is a dep the stage cannot import.
    assert stage_problems(stage, [*good, "powerflow/report", "powerflow/unused.py"], files, graph) == [
        "evaluate: powerflow/report is a dep but powerflow.pipeline.evaluate imports nothing under it",
        "evaluate: powerflow/unused.py is a dep but powerflow.pipeline.evaluate imports nothing under it"]


def test_a_new_import_changes_the_rendered_deps(tmp_path):
    """What keeps dvc.yaml honest: the deps follow the code, and --check fails until it is rewritten."""
    package = write_package(tmp_path, SYNTHETIC)
    table = (st.Stage("evaluate", "powerflow evaluate --run base", "powerflow.pipeline.evaluate",
                      deps=("models/base",), outs=(st.uncached("outputs/eval/base/metrics.json"),)),)
    before = st.render(table, package)
    assert yaml.safe_load(before)["stages"]["evaluate"]["deps"][0] == "models/base"
    (package / "pipeline" / "layout.py").write_text("def f():\n    import powerflow.report.values\n")
    after = st.render(table, package)
    assert "powerflow/report" not in before and "      - powerflow/report\n" in after


# --- the command -------------------------------------------------------------------------------------


def test_check_fails_with_the_command_to_run_and_write_fixes_it(tmp_path, capsys):
    path = tmp_path / "dvc.yaml"
    path.write_text((ROOT / "dvc.yaml").read_text().replace("- powerflow/eval\n", "", 1))
    assert st.main(["--check"], path=path) == 1
    assert "python -m powerflow.pipeline.stages --write" in capsys.readouterr().err
    assert st.main(["--write"], path=path) == 0
    assert path.read_text() == (ROOT / "dvc.yaml").read_text()
    assert st.main(["--check"], path=path) == 0


def test_the_stage_table_loads_without_torch_mlflow_or_prefect():
    code = ("import sys, powerflow.pipeline.stages as s; s.render(); "
            "print(sorted(m for m in ('torch', 'mlflow', 'prefect', 'pandas', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    check = subprocess.run([sys.executable, "-m", "powerflow.pipeline.stages", "--check"], cwd=ROOT,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
