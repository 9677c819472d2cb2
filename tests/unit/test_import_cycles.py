"""No import cycle in powerflow/: every module's imports, at top level and inside functions.

Imports under `if TYPE_CHECKING:` run only for type checkers and are not edges. A name imported
from `powerflow.pipeline` counts as an import of the stage module that defines it (the package's
`_HOME` table), since that is the module Python loads.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "powerflow"


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def lazy_homes(files: dict[str, Path]) -> dict[str, dict[str, str]]:
    """Packages whose `__getattr__` loads names from submodules: package -> {name: submodule}."""
    homes = {}
    for name, path in files.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text()).body:
            target = node.target if isinstance(node, ast.AnnAssign) else None
            if isinstance(target, ast.Name) and target.id == "_HOME":
                table = ast.literal_eval(node.value)
                homes[name] = {k: f"{name}.{v}" for k, v in table.items()}
    return homes


def runtime_imports(tree: ast.AST):
    """Import nodes that execute at runtime (everything outside `if TYPE_CHECKING:` blocks)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (resolved to the deepest existing module)."""
    files = module_files()
    homes = lazy_homes(files)

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in files:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    graph = {}
    for module, path in files.items():
        deps = set()
        for node in runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}" if base else package
                targets = [homes.get(base, {}).get(a.name, f"{base}.{a.name}") for a in node.names]
            deps.update(r for r in map(resolve, targets) if r and r != module)
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


def test_the_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_function_level_and_lazy_package_imports():
    graph = import_graph()
    assert "powerflow.config" in graph["powerflow.pipeline.layout"]
    assert "powerflow.pipeline.train" in graph["powerflow.pipeline.ranks"]  # imported inside rank_main
    assert "powerflow.distributed" in graph["powerflow.pipeline.train"]


def test_powerflow_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles (break each by moving the shared name down a level): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_errors_module_imports_nothing_of_the_project():
    assert import_graph()["powerflow.errors"] == set()
