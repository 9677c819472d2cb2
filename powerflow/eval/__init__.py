"""Evaluation: generate completions, grade them with a caller's grader, compute metrics.

- config.py      EvalConfig, the `evaluate:` section of params.yaml
- generation.py  generate_completions (one interface, a backend setting) and Completion
- metrics.py     pass@k, standard errors, coverage, KL to uniform, distinct-n (pure functions)
- evaluate.py    evaluate_model: metrics and a samples table for one model

Import the submodules directly (`from powerflow.eval.evaluate import evaluate_model`); this
package imports nothing heavy.
"""
