"""Packages import nothing heavy: a package's `__init__.py` has no side effects and re-exports nothing.

Each name is imported from the module that defines it (`from powerflow.pipeline.train import
train_member`), so importing a package, or one stage, never loads torch, mlflow, Prefect or the
stages it does not use.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("powerflow", "powerflow.pipeline", "powerflow.report", "powerflow.data", "powerflow.eval",
            "powerflow.world", "powerflow.config")
HEAVY = ("torch", "transformers", "mlflow", "great_expectations", "prefect")
# Packages whose __init__.py is a docstring only (powerflow.config is its own module: it defines the configs).
EMPTY_INITS = ("powerflow", "powerflow.pipeline", "powerflow.report", "powerflow.data", "powerflow.eval",
               "powerflow.world", "powerflow.baselines", "powerflow.sampling")


def loaded_after(code: str) -> list[str]:
    """The heavy libraries a fresh interpreter has loaded after running `code`."""
    probe = f"{code}; import sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("package", PACKAGES)
def test_importing_a_package_loads_no_heavy_library(package):
    assert loaded_after(f"import {package}") == []


@pytest.mark.parametrize("package", EMPTY_INITS)
def test_a_package_init_imports_nothing_and_defines_no_lazy_names(package):
    path = ROOT.joinpath(*package.split("."), "__init__.py")
    body = ast.parse(path.read_text()).body
    assert isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), "starts with its docstring"
    for node in body[1:]:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        assert isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__version__"], (
            f"{path.relative_to(ROOT)} line {node.lineno}: {ast.unparse(node).splitlines()[0]} "
            "(a package's __init__.py imports and defines nothing: import the name from its module)")


def test_the_old_package_level_names_are_gone():
    import powerflow.pipeline
    import powerflow.report

    with pytest.raises(AttributeError):
        powerflow.pipeline.train_member  # noqa: B018 - import it from powerflow.pipeline.train
    with pytest.raises(ImportError):
        from powerflow.report import write_report  # noqa: F401 - import it from powerflow.report.document


def test_importing_the_train_stage_loads_neither_report():
    code = ("import sys; from powerflow.pipeline.train import train_member; "
            "print(sorted(m for m in sys.modules if 'report' in m))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
