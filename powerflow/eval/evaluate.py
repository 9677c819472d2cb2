"""Score one model on the eval prompts: reasoning accuracy, open-ended diversity, cost.

The caller supplies the grader, so a new answer format (MATH500, an LLM judge) plugs in without
touching this file:

    grade(family: str, answer, completion: str) -> Grade
        Grade.valid: bool      the completion gives an answer in the expected format
        Grade.correct: bool    reasoning: the answer equals the gold one;
                               open-ended: the answer is one of the valid answers
        Grade.extracted: str | None   the answer, normalised

For a reasoning family `answer` is the gold string; for an open-ended family it is the list of
valid answers, written in the normalised form `Grade.extracted` takes.

Metric names are stable (the report and DVC plots read them), grouped by slash:

    <family>/accuracy_greedy, accuracy_mean (avg@n), accuracy_mean_se, pass@k, validity,
        tokens_per_answer                                        for reasoning families
    <family>/validity, validity_se, coverage, coverage_se, kl_uniform, distinct_1,
        tokens_per_answer                                        for open-ended families
    cost/tokens_per_answer, cost/seconds_per_answer, eval/n_prompts/<family>, eval/n_samples

A family is reasoning or open-ended by name ("reasoning", "open_ended"); any other family is
scored by the type of its answers (a list: open-ended; a gold value: reasoning).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from powerflow.config import UserError
from powerflow.eval.config import EvalConfig
from powerflow.eval.generation import Completion, generate_completions
from powerflow.eval.metrics import (
    coverage,
    distinct_n,
    kl_to_uniform,
    mean_and_standard_error,
    pass_at_k,
    pass_at_k_values,
)

REASONING = "reasoning"
OPEN_ENDED = "open_ended"
REQUIRED_KEYS = ("id", "family", "prompt", "answer")


class Grade(Protocol):
    valid: bool
    correct: bool
    extracted: str | None


GradeFn = Callable[[str, Any, str], Grade]


class EvalDataError(UserError):
    """The eval prompts or the grader's answers do not fit the evaluation contract."""


def evaluate_model(
    model, tokenizer, eval_rows: list[dict], grade: GradeFn, cfg: EvalConfig, progress: bool = True
) -> tuple[dict[str, float], list[dict]]:
    """Greedy and sampled completions for every eval prompt, graded and summarised.

    Per family: one greedy completion per prompt and cfg.n_samples sampled ones. Rates are means
    over prompts with their standard error over prompts (each prompt weighs the same); the
    tokens-per-answer and seconds-per-answer costs count sampled completions only, the answers a
    user of the policy pays for. Returns (metrics, samples): samples holds every greedy row and the
    first cfg.n_examples sampled rows per prompt, each {id, family, kind, index, completion,
    extracted, valid, correct, n_tokens, truncated}.
    """
    families = rows_by_family(eval_rows, cfg.max_prompts_per_family)
    metrics: dict[str, float] = {"eval/n_samples": cfg.n_samples}
    samples: list[dict] = []
    sampled_tokens: list[int] = []
    sampling_seconds = 0.0
    for family, rows in families.items():
        prompts = [r["prompt"] for r in rows]
        common = {"max_new_tokens": cfg.max_new_tokens, "batch_size": cfg.batch_size, "progress": progress,
                  "backend": cfg.backend}
        greedy = generate_completions(model, tokenizer, prompts, n=1, greedy=True, seed=cfg.seed, **common)
        start = time.perf_counter()
        sampled = generate_completions(
            model, tokenizer, prompts, n=cfg.n_samples, greedy=False, temperature=cfg.temperature, top_p=cfg.top_p,
            seed=cfg.seed, **common,
        )
        sampling_seconds += time.perf_counter() - start
        greedy_graded = [_graded(grade, family, row, c[0]) for row, c in zip(rows, greedy)]
        sampled_graded = [[_graded(grade, family, row, c) for c in cs] for row, cs in zip(rows, sampled)]
        if family_kind(family, rows) == REASONING:
            metrics.update(reasoning_metrics(family, greedy_graded, sampled_graded, cfg.n_samples))
        else:
            metrics.update(open_ended_metrics(family, rows, sampled_graded))
        metrics[f"eval/n_prompts/{family}"] = len(rows)
        sampled_tokens += [g["n_tokens"] for per_prompt in sampled_graded for g in per_prompt]
        for row, g in zip(rows, greedy_graded):
            samples.append(_sample_row(row, "greedy", 0, g))
        for row, per_prompt in zip(rows, sampled_graded):
            samples += [_sample_row(row, "sample", j, g) for j, g in enumerate(per_prompt[: cfg.n_examples])]
    metrics["cost/tokens_per_answer"] = sum(sampled_tokens) / len(sampled_tokens)
    metrics["cost/seconds_per_answer"] = sampling_seconds / len(sampled_tokens)
    return metrics, samples


def rows_by_family(eval_rows: list[dict], max_prompts_per_family: int | None = None) -> dict[str, list[dict]]:
    """Eval rows grouped by family in first-seen order, the first max_prompts_per_family of each."""
    if not eval_rows:
        raise EvalDataError("no eval prompts given: the eval set is empty; check the prepared eval data.")
    families: dict[str, list[dict]] = {}
    for i, row in enumerate(eval_rows):
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise EvalDataError(f"eval row {i} lacks {', '.join(missing)}: every row needs {', '.join(REQUIRED_KEYS)}.")
        group = families.setdefault(str(row["family"]), [])
        if max_prompts_per_family is None or len(group) < max_prompts_per_family:
            group.append(row)
    return families


def family_kind(family: str, rows: list[dict]) -> str:
    """REASONING or OPEN_ENDED: by the family's name, else by its answers (a list: open-ended; else reasoning)."""
    if family in (REASONING, OPEN_ENDED):
        return family
    is_list = [isinstance(r["answer"], (list, tuple)) for r in rows]
    if not any(is_list):
        return REASONING
    if all(is_list):
        return OPEN_ENDED
    raise EvalDataError(
        f"eval family {family!r} mixes answer types: give each row a gold string (reasoning) or a list of valid "
        "answers (open-ended)."
    )


def reasoning_metrics(
    family: str, greedy: list[dict], sampled: list[list[dict]], n_samples: int
) -> dict[str, float]:
    """Accuracy of greedy decoding, avg@n with its standard error over prompts, pass@k, validity, length.

        accuracy_mean = (1/m) Σ_q c_q / n,    pass@k = (1/m) Σ_q pass_at_k(n, c_q, k)
    """
    correct_counts = [sum(g["correct"] for g in per_prompt) for per_prompt in sampled]
    mean, se = mean_and_standard_error(c / n_samples for c in correct_counts)
    flat = [g for per_prompt in sampled for g in per_prompt]
    out = {
        f"{family}/accuracy_greedy": _mean(g["correct"] for g in greedy),
        f"{family}/accuracy_mean": mean,
        f"{family}/accuracy_mean_se": se,
        f"{family}/validity": _mean(g["valid"] for g in flat),
        f"{family}/tokens_per_answer": _mean(g["n_tokens"] for g in flat),
    }
    for k in pass_at_k_values(n_samples):
        out[f"{family}/pass@{k}"] = _mean(pass_at_k(n_samples, c, k) for c in correct_counts)
    return out


def open_ended_metrics(family: str, rows: list[dict], sampled: list[list[dict]]) -> dict[str, float]:
    """Validity (precision), coverage of the valid set, KL to uniform over it, distinct-1, length.

    A sampled answer is a valid answer when the grader calls it valid and correct. Per prompt q
    with valid set V_q: validity_q = valid answers / samples, coverage_q and KL_q from
    `powerflow.eval.metrics`; each is averaged over prompts (KL over prompts with at least one
    valid answer; NaN if none has), distinct-1 over each prompt's samples, then averaged.
    """
    validity, cover, kl, distinct = [], [], [], []
    for row, per_prompt in zip(rows, sampled):
        valid_set = set(row["answer"])
        answers = [g["extracted"] for g in per_prompt if g["valid"] and g["correct"]]
        outside = sorted({a for a in answers if a not in valid_set}, key=str)
        if outside:
            raise EvalDataError(
                f"the grader accepted {outside[:3]} for eval row {row['id']!r}, but its answer list does not hold "
                "them: write open-ended answers in the normalised form Grade.extracted takes."
            )
        validity.append(len(answers) / len(per_prompt))
        cover.append(coverage(answers, valid_set))
        kl.append(kl_to_uniform(answers, valid_set))
        distinct.append(distinct_n([g["completion"] for g in per_prompt], 1))
    validity_mean, validity_se = mean_and_standard_error(validity)
    coverage_mean, coverage_se = mean_and_standard_error(cover)
    finite_kl = [v for v in kl if not math.isnan(v)]
    return {
        f"{family}/validity": validity_mean,
        f"{family}/validity_se": validity_se,
        f"{family}/coverage": coverage_mean,
        f"{family}/coverage_se": coverage_se,
        f"{family}/kl_uniform": _mean(finite_kl) if finite_kl else math.nan,
        f"{family}/distinct_1": _mean(distinct),
        f"{family}/tokens_per_answer": _mean(g["n_tokens"] for per_prompt in sampled for g in per_prompt),
    }


def _graded(grade: GradeFn, family: str, row: dict, completion: Completion) -> dict:
    """One completion with its grade, as plain values."""
    g = grade(family, row["answer"], completion.text)
    return {"completion": completion.text, "extracted": g.extracted, "valid": bool(g.valid),
            "correct": bool(g.correct), "n_tokens": completion.n_tokens, "truncated": completion.truncated}


def _sample_row(row: dict, kind: str, index: int, graded: dict) -> dict:
    return {"id": row["id"], "family": row["family"], "kind": kind, "index": index, **graded}


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values)
