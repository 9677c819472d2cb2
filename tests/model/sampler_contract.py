"""The Sampler contract end to end, shared by the inference-time samplers' tests (MCMC, Power-SMC)."""

from powerflow.eval.config import EvalConfig
from powerflow.eval.evaluate import Scoring, evaluate_model
from powerflow.eval.grading import Grade


def first_word_grade(family, answer, completion):
    """A completion's answer is its first word."""
    first = completion.split()[0] if completion.split() else None
    return Grade(valid=first is not None, correct=first == answer, extracted=first)


def metrics_with_sampler(model, tokenizer, sampler) -> dict:
    """evaluate_model's metrics on prompts "a" and "c" (gold "b"), 4 samples each, drawn by `sampler`."""
    rows = [{"id": str(i), "family": "reasoning", "prompt": p, "answer": "b"} for i, p in enumerate(["a", "c"])]
    cfg = EvalConfig(n_samples=4, max_new_tokens=4, batch_size=8, embedder=None, diagnostics_prompts=0)
    metrics, _ = evaluate_model(model, tokenizer, rows, first_word_grade, cfg, progress=False,
                                scoring=Scoring(sampler=sampler))
    return metrics
