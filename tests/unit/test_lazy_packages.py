"""The split packages (powerflow.pipeline, powerflow.report) keep every old name and load lazily."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", ["powerflow.pipeline", "powerflow.report"])
def test_every_name_of_the_table_resolves_in_its_module(package):
    module = importlib.import_module(package)
    for name, home in module._HOME.items():
        assert getattr(module, name) is getattr(importlib.import_module(f"{package}.{home}"), name), name
    with pytest.raises(AttributeError, match="no attribute 'not_a_step'"):
        module.not_a_step  # noqa: B018


@pytest.mark.parametrize("package", ["powerflow.pipeline", "powerflow.report"])
def test_every_public_name_of_a_submodule_is_in_the_table(package):
    module = importlib.import_module(package)
    for home in set(module._HOME.values()):
        sub = importlib.import_module(f"{package}.{home}")
        defined = {n for n, v in vars(sub).items()
                   if not n.startswith("_") and getattr(v, "__module__", None) == sub.__name__}
        assert defined <= set(module._HOME), (home, sorted(defined - set(module._HOME)))


def test_importing_the_train_stage_loads_neither_report():
    code = ("import sys; from powerflow.pipeline import train_member; "
            "print(sorted(m for m in sys.modules if 'report' in m))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
