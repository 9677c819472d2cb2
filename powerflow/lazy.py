"""Lazy re-exports for a package split into modules (PEP 562).

A package that keeps the names of its old single module reachable (`powerflow.pipeline.train_member`,
`from powerflow.report import write_report`) without importing every submodule up front:

    _HOME: dict[str, str] = {"train_member": "train", ...}   # name -> submodule
    __getattr__, __dir__ = lazy_exports(__name__, _HOME)

The first access of a name imports the submodule that defines it and caches the value in the
package, so importing one stage never loads the others.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, home: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`, resolving each name of `home` in its submodule."""

    def __getattr__(name: str) -> Any:
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(home))

    return __getattr__, __dir__
