"""What the inference-time samplers' tests share (MCMC, Power-SMC): the Sampler contract end to end and
the empirical law of sampled terminals against an exact one."""

import math

import torch

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


def empirical_log_probs(token_ids: list[tuple[int, ...]], sequences: list[tuple[int, ...]]) -> torch.Tensor:
    """log of the sampled frequency of each terminal (−inf where never drawn), in `sequences` order."""
    index = {s: i for i, s in enumerate(sequences)}
    counts = torch.zeros(len(sequences), dtype=torch.float64)
    for ids in token_ids:
        counts[index[ids]] += 1  # a KeyError here means a sample outside the terminal set
    return (counts / counts.sum()).log()


def tv_noise_floor(log_p: torch.Tensor, n: int) -> float:
    """E TV(empirical of n exact draws, p) ≈ ½ Σ_y sqrt(p(1−p)/n) · sqrt(2/π) (normal approximation)."""
    p = log_p.exp()
    return 0.5 * float((p * (1 - p) / n).sqrt().sum()) * math.sqrt(2 / math.pi)
