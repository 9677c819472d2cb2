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

This package imports nothing: import each name from its module (`from powerflow.eval.evaluate
import evaluate_model`), so importing the package alone loads nothing heavy. docs/evaluation.md
describes every metric.
"""
