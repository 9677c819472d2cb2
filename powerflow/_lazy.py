"""Lazy package exports: `from powerflow.data import prepare_prompts` without importing every module.

A package lists {name: module} and gets a module-level `__getattr__` (PEP 562) that imports the
module on first access, so importing the package itself stays cheap (no torch, GX or mlflow).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for `package` exporting each name from its module in `exports`."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
