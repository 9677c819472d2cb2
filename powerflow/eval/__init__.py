"""Evaluation: generate completions, grade them with a caller's grader, compute metrics.

- config.py      EvalConfig, the `evaluate:` section of params.yaml
- generation.py  generate_completions (one interface, a backend setting) and Completion
- metrics.py     pass@k, standard errors, coverage, KL to uniform, distinct-n (pure functions)
- evaluate.py    evaluate_model: metrics and a samples table for one model

`from powerflow.eval import evaluate_model` works; the names are resolved on first use, so
importing the package alone loads nothing heavy.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "EvalConfig": "config",
    "Completion": "generation",
    "generate_completions": "generation",
    "evaluate_model": "evaluate",
    "pass_at_k": "metrics",
    "mean_and_standard_error": "metrics",
    "coverage": "metrics",
    "kl_to_uniform": "metrics",
    "distinct_n": "metrics",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"powerflow.eval.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'powerflow.eval' has no attribute {name!r}")
