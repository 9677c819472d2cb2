"""Evaluation: generate completions, grade them with a caller's grader, compute metrics.

- config.py      EvalConfig, the `evaluate:` section of params.yaml
- generation.py  generate_completions (one interface, a backend setting) and Completion
- metrics.py     pass@k, standard errors, coverage, KL to uniform, distinct-n (pure functions)
- evaluate.py    evaluate_model: metrics and a samples table for one model

`from powerflow.eval import evaluate_model` works; the names are resolved on first use, so
importing the package alone loads nothing heavy.
"""

from __future__ import annotations

from powerflow._lazy import lazy_exports

_EXPORTS = {
    "EvalConfig": "powerflow.eval.config",
    "Completion": "powerflow.eval.generation",
    "generate_completions": "powerflow.eval.generation",
    "evaluate_model": "powerflow.eval.evaluate",
    "pass_at_k": "powerflow.eval.metrics",
    "mean_and_standard_error": "powerflow.eval.metrics",
    "coverage": "powerflow.eval.metrics",
    "kl_to_uniform": "powerflow.eval.metrics",
    "distinct_n": "powerflow.eval.metrics",
}
__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports("powerflow.eval", _EXPORTS)
