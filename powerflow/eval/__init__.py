"""Evaluation: benchmarks, generation, grading, metrics, diversity, judge, diagnostics.

- config.py       EvalConfig, the `evaluate:` section of params.yaml
- benchmarks.py   load_benchmark: MATH500, GPQA-Diamond, MMLU-Pro, Creative Writing v3, CoverageQA
- generation.py   generate_completions (transformers or vLLM backend) and Completion
- grading.py      Grade, and the grading registry by answer kind (answer_kind, family_graders):
                  every "is this right" / "are these the same" of the project goes through it
- math.py         extract_answer (last \\boxed{}), is_equivalent / MathVerifier (math-verify in a
                  worker process), grade_math
- choice.py       extract_choice (the MMLU-Pro letter cascade), grade_choice
- openended.py    normalize_answer, alias groups, precision / coverage / KL, grade_open_qa
- diversity.py    semantic diversity (sentence embeddings), distinct-n, ROUGE-L, self-BLEU
- judge.py        LLM-as-judge: rubric, prompt, robust score parsing, local or OpenAI-compatible judge
- metrics.py      pass@k, maj@k, standard errors, coverage, KL to uniform (pure functions)
- evaluate.py     evaluate_model: metrics and a samples table for one model, per family
- suite.py        eval_suite: the rows, grader and scorers `evaluate.benchmarks` names
- diagnostics.py  residual variance of log π − α log p_base, E|y| against the base, exact KL

`from powerflow.eval import evaluate_model` works; the names are resolved on first use, so
importing the package alone loads nothing heavy. docs/evaluation.md describes every metric.
"""

from __future__ import annotations

from powerflow._lazy import lazy_exports

_EXPORTS = {
    "EvalConfig": "powerflow.eval.config",
    "Benchmark": "powerflow.eval.benchmarks",
    "load_benchmark": "powerflow.eval.benchmarks",
    "Completion": "powerflow.eval.generation",
    "generate_completions": "powerflow.eval.generation",
    "Grade": "powerflow.eval.grading",
    "answer_kind": "powerflow.eval.grading",
    "family_graders": "powerflow.eval.grading",
    "extract_answer": "powerflow.eval.math",
    "is_equivalent": "powerflow.eval.math",
    "MathVerifier": "powerflow.eval.math",
    "grade_math": "powerflow.eval.math",
    "extract_choice": "powerflow.eval.choice",
    "grade_choice": "powerflow.eval.choice",
    "normalize_answer": "powerflow.eval.openended",
    "grade_open_qa": "powerflow.eval.openended",
    "diversity_metrics": "powerflow.eval.diversity",
    "load_embedder": "powerflow.eval.diversity",
    "judge_quality": "powerflow.eval.judge",
    "judge_from_config": "powerflow.eval.judge",
    "evaluate_model": "powerflow.eval.evaluate",
    "Scoring": "powerflow.eval.evaluate",
    "eval_suite": "powerflow.eval.suite",
    "policy_diagnostics": "powerflow.eval.diagnostics",
    "pass_at_k": "powerflow.eval.metrics",
    "maj_at_k": "powerflow.eval.metrics",
    "mean_and_standard_error": "powerflow.eval.metrics",
    "coverage": "powerflow.eval.metrics",
    "kl_to_uniform": "powerflow.eval.metrics",
    "distinct_n": "powerflow.eval.metrics",
}
__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports("powerflow.eval", _EXPORTS)
