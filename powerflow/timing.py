"""Wall time spent inside the pipeline's steps, so orchestration overhead can be measured.

`measured(fn)` wraps a step function; every call adds its duration to an in-process ledger.
A command's overhead (imports, Prefect flow and task bookkeeping) is then its wall time minus
the ledger's total: `powerflow` writes both to outputs/timing/<stage>.json after each command.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_LEDGER: list[tuple[str, float]] = []


def measured(fn: F) -> F:
    """`fn` with its wall time recorded in the ledger under its name."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _LEDGER.append((fn.__name__, time.perf_counter() - started))

    return wrapper  # type: ignore[return-value]


def step_seconds() -> dict[str, float]:
    """Seconds per step name since the process started (or since `reset`)."""
    totals: dict[str, float] = {}
    for name, seconds in _LEDGER:
        totals[name] = totals.get(name, 0.0) + seconds
    return totals


def reset() -> None:
    _LEDGER.clear()
