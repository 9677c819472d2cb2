"""The import graph of powerflow/, flows/, tasks/ and benchmarks/: no cycle, and every import goes down.

Every import counts, at top level and inside functions; imports under `if TYPE_CHECKING:` run only
for type checkers and are not edges, and neither is a "module:Class" text that code hands to
importlib (the answer-kind registry of powerflow.eval.grading names the world's kinds that way).

Layers, bottom to top (a module may import its own layer and the ones below, never one above):

    library    every powerflow module outside powerflow.pipeline and powerflow.cli
    pipeline   powerflow.pipeline.*: the steps
    tasks      tasks/: one Prefect task per step
    flows      flows/: the Prefect flows
    cli        powerflow.cli: the entry point, which runs the flows (flows.stages)
    benchmarks benchmarks/: measurements
    tests      tests/: imported by nothing above
"""

from __future__ import annotations

import ast
from pathlib import Path

from powerflow.pipeline.stages import imported_names

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("powerflow", "flows", "tasks", "benchmarks")  # the folders whose modules are the graph's nodes
LAYERS = ("library", "pipeline", "tasks", "flows", "cli", "benchmarks", "tests")


def module_files(folders: tuple[str, ...] = (*SOURCES, "tests")) -> dict[str, Path]:
    """Dotted module name -> source file, for every module under the given folders of the repository."""
    out = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def import_graph(folders: tuple[str, ...] = SOURCES) -> dict[str, set[str]]:
    """Module -> the project modules it imports (each resolved to the deepest existing module), for
    every module under `folders`; an import of tests/ resolves into tests/ too, so it can be flagged."""
    files = module_files(tuple(dict.fromkeys((*folders, "tests"))))

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in files:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    graph = {}
    for module, path in files.items():
        if module.split(".")[0] not in folders:
            continue
        # the stage table's reader of imports, without registry texts (importlib by name is no edge)
        names = imported_names(module, path, texts=False)
        deps = {r for r in map(resolve, names) if r and r != module}
        graph[module] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# --- packages ---------------------------------------------------------------------------------------


def package_of(module: str) -> str:
    """The node a module counts as at package level: powerflow.<subpackage or top-level module>,
    or flows / tasks / benchmarks / tests."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "powerflow" else parts[0]


def package_graph(graph: dict[str, set[str]]) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """Package -> {package it imports: [(module, module), ...] the edges that make it}."""
    out: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for module, deps in graph.items():
        edges = out.setdefault(package_of(module), {})
        for dep in sorted(deps):
            if package_of(dep) != package_of(module):
                edges.setdefault(package_of(dep), []).append((module, dep))
    return out


def package_cycle_report(graph: dict[str, set[str]]) -> list[str]:
    """One line per package-level cycle, naming every module -> module edge inside it."""
    packages = package_graph(graph)
    lines = []
    for component in cycles({p: set(edges) for p, edges in packages.items()}):
        inside = [f"{a} -> {b}" for p in component for q, edges in sorted(packages.get(p, {}).items())
                  if q in component for a, b in edges]
        lines.append(" <-> ".join(component) + ": " + "; ".join(inside))
    return lines


# --- layers -----------------------------------------------------------------------------------------


def layer_of(module: str) -> str:
    top = module.split(".")[0]
    if top != "powerflow":
        return top
    if module == "powerflow.cli":
        return "cli"
    if module == "powerflow.pipeline" or module.startswith("powerflow.pipeline."):
        return "pipeline"
    return "library"


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module from a higher layer, as "module -> module (layer may not import layer)"."""
    found = []
    for module, deps in sorted(graph.items()):
        low = LAYERS.index(layer_of(module))
        for dep in sorted(deps):
            if LAYERS.index(layer_of(dep)) > low:
                found.append(f"{module} -> {dep} ({layer_of(module)} may not import {layer_of(dep)})")
    return found


# --- the checks on synthetic graphs -----------------------------------------------------------------


def test_the_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_cycle_report_names_the_module_edges_of_a_package_loop():
    graph = {"powerflow.eval.grading": {"powerflow.world.grading"}, "powerflow.world.grading": {"powerflow.eval.x"},
             "powerflow.eval.x": set(), "powerflow.data.a": {"powerflow.eval.x"}}
    assert package_cycle_report(graph) == [
        "powerflow.eval <-> powerflow.world: powerflow.eval.grading -> powerflow.world.grading; "
        "powerflow.world.grading -> powerflow.eval.x"]
    del graph["powerflow.eval.grading"]
    assert package_cycle_report(graph) == []


def test_the_layering_check_flags_every_upward_import_and_nothing_else():
    graph = {
        "powerflow.eval.metrics": {"powerflow.pipeline.train", "powerflow.io"},  # library -> pipeline: up
        "powerflow.pipeline.train": {"powerflow.eval.metrics", "tasks.steps"},    # pipeline -> tasks: up
        "tasks.steps": {"powerflow.pipeline.train", "flows.stages"},              # tasks -> flows: up
        "flows.stages": {"tasks.steps", "powerflow.pipeline.train", "powerflow.cli"},  # flows -> cli: up
        "powerflow.cli": {"flows.stages", "powerflow.pipeline.train"},            # the entry layer runs flows
        "powerflow.io": {"tests.servers"},                                        # nothing imports tests
        "benchmarks.orchestration": {"powerflow.cli", "benchmarks.pipeline_project", "tests.pipeline_project"},
    }
    assert layering_violations(graph) == [
        "benchmarks.orchestration -> tests.pipeline_project (benchmarks may not import tests)",
        "flows.stages -> powerflow.cli (flows may not import cli)",
        "powerflow.eval.metrics -> powerflow.pipeline.train (library may not import pipeline)",
        "powerflow.io -> tests.servers (library may not import tests)",
        "powerflow.pipeline.train -> tasks.steps (pipeline may not import tasks)",
        "tasks.steps -> flows.stages (tasks may not import flows)",
    ]
    assert [layer_of(m) for m in ("powerflow", "powerflow.pipeline", "powerflow.pipeline.layout", "powerflow.cli",
                                  "powerflow.config.sections", "flows.pipeline", "benchmarks.step_time")] == [
        "library", "pipeline", "pipeline", "cli", "library", "flows", "benchmarks"]


# --- the checks on the repository -------------------------------------------------------------------


def test_the_graph_sees_function_level_relative_and_every_folders_imports():
    graph = import_graph()
    assert "powerflow.pipeline.layout" in graph["powerflow.pipeline.train"]
    assert "powerflow.pipeline.train" in graph["powerflow.pipeline.ranks"]  # imported inside rank_main
    assert "flows.stages" in graph["powerflow.cli"]  # imported inside run_stage
    assert "tasks.steps" in graph["flows.stages"] and "powerflow.pipeline.train" in graph["tasks.steps"]
    assert "benchmarks.pipeline_project" in graph["benchmarks.orchestration"]
    assert not any(m.startswith("tests") for m in graph)  # tests/ are targets only


def test_the_graph_ignores_type_checking_imports_and_importlib_texts():
    graph = import_graph()
    # eval/grading.py names the world's kinds as "powerflow.world.grading:IntegerAnswers" texts only
    assert not any(d.startswith("powerflow.world") for d in graph["powerflow.eval.grading"])
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n"
                     "def f():\n    import c\n    return 'powerflow.world.grading:IntegerAnswers'\n")
    names = imported_names("m", Path("m.py"), tree, texts=False)
    assert sorted(n for n in names if n != "typing" and not n.startswith("typing.")) == ["b", "c"]
    assert "powerflow.world.grading" in imported_names("m", Path("m.py"), tree)  # what DVC's deps count


def test_no_module_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles (break each by moving the shared name down a level): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_no_package_import_cycle():
    found = package_cycle_report(import_graph())
    assert not found, "package-level import cycles (move the shared code down to a package both may import):\n" + \
        "\n".join(found)


def test_every_import_goes_down_the_layers():
    found = layering_violations(import_graph())
    assert not found, ("imports of a higher layer (layers bottom to top: " + ", ".join(LAYERS) + "):\n"
                       + "\n".join(found))


def test_errors_module_imports_nothing_of_the_project():
    assert import_graph()["powerflow.errors"] == set()
