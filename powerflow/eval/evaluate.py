"""Score one model on the eval prompts: accuracy, diversity, quality and cost, per family.

The caller supplies the grader, so a new answer format plugs in without touching this file:

    grade(family: str, answer, completion: str) -> Grade
        Grade.valid: bool      the completion gives an answer in the expected format
        Grade.correct: bool    reasoning: the answer equals the gold one;
                               open-ended: the answer is one of the valid answers
        Grade.extracted: str | None   the answer, normalised

A family has one of three kinds (`Scoring.kinds`, else by name, else by its answers):

    reasoning   answer = the gold value (MATH500, GPQA, MMLU-Pro, the world's arithmetic)
    open_ended  answer = the valid answers: a list of strings, or a list of alias groups (lists of
                strings, CoverageQA); the grader's `extracted` for a valid answer is one alias
    creative    answer = None: no key; quality comes from the judge (creative writing)

Metric names are stable (the report, MLflow's compare view and DVC plots read them), grouped by
slash; every family also gets tokens_per_answer and seconds_per_answer:

    <family>/accuracy_greedy, accuracy_mean (avg@n), accuracy_mean_se, pass@k, maj@k,
        validity, extraction_failures, no_answer (the share the grader could not read an answer in),
        by_<key>/<group>/accuracy_mean, accuracy_mean_se, n_prompts     reasoning
    <family>/validity (= precision: valid answers / all), validity_se, no_answer, coverage, coverage_se,
        kl_uniform, [kl_reference], quality, quality_se, + diversity,
        [judged_quality, judged_quality_se, judge_failures, judge_agreement]    open_ended
    <family>/[quality, quality_se, judge_failures] + diversity            creative
    diversity: semantic_diversity(_se) when an embedder is given, distinct_1..distinct_4,
        rouge_l, self_bleu (see powerflow.eval.diversity)
    cost/tokens_per_answer, cost/seconds_per_answer, cost/inference_tokens_per_answer (every token
        generated, rejected MCMC proposals included), eval/n_prompts/<family>, eval/n_samples,
        sampler/<stat> (an inference-time method's own numbers, e.g. sampler/acceptance_rate)

Open-ended quality is validity against the answer key (the world's and CoverageQA's), and, with a
judge configured, also the judge's score (judged_quality) with the judge's agreement with that key;
creative quality is the judge's rubric score in [0, 1], absent when no judge is configured.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from powerflow.errors import UserError
from powerflow.eval.config import EvalConfig
from powerflow.eval.generation import Completion, generate_completions
from powerflow.eval.metrics import (
    grouped_means,
    maj_at_k,
    mean_and_standard_error,
    pass_at_k,
    pass_at_k_values,
)

REASONING = "reasoning"
OPEN_ENDED = "open_ended"
CREATIVE = "creative"
KINDS = (REASONING, OPEN_ENDED, CREATIVE)
REQUIRED_KEYS = ("id", "family", "prompt", "answer")
# Row meta keys accuracy is broken down by, when a family's rows carry them (MATH500: subject,
# level; MMLU-Pro: category; GPQA: domain).
BREAKDOWN_KEYS = ("subject", "level", "category", "domain")


class Grade(Protocol):
    valid: bool
    correct: bool
    extracted: str | None


GradeFn = Callable[[str, Any, str], Grade]


class EvalDataError(UserError):
    """The eval prompts or the grader's answers do not fit the evaluation contract."""


@dataclass(frozen=True)
class SampleBatch:
    """What an inference-time method returns for a list of prompts.

    completions[i][j]: answer j of prompt i. generated_tokens: every token the method generated to
    produce them, rejected proposals included (MCMC): the inference cost. stats: method-specific
    numbers (e.g. acceptance_rate), logged as sampler/<name>.
    """

    completions: list[list[Completion]]
    generated_tokens: int
    stats: dict[str, float] = field(default_factory=dict)


# sampler(model, tokenizer, prompts, n, seed) -> SampleBatch: an inference-time method (MCMC power
# sampling, low temperature, ...) used instead of plain sampling for the n answers per prompt.
Sampler = Callable[[Any, Any, list[str], int, int], SampleBatch]


@dataclass(frozen=True)
class Scoring:
    """What scores completions besides the grader; every field is optional."""

    kinds: Mapping[str, str] = field(default_factory=dict)  # family -> reasoning | open_ended | creative
    # (family, answer, other) -> the two extracted answers are the same (maj@k grouping); default ==
    same_answer: Callable[[str, str, str], bool] | None = None
    embedder: Any = None  # a sentence-transformers model: semantic diversity (None: not computed)
    judge: Any = None  # powerflow.eval.judge judge: creative quality (None: not computed)
    rubric: Any = None  # the judge's rubric (None: the judge module's creative-writing default)
    judge_prompt: Any = None  # (rubric, request, response) -> instruction (None: the creative-writing prompt)
    sampler: Sampler | None = None  # None: plain sampling at cfg.temperature / cfg.top_p


def evaluate_model(
    model, tokenizer, eval_rows: list[dict], grade: GradeFn, cfg: EvalConfig, progress: bool = True,
    scoring: Scoring | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Greedy and sampled completions for every eval prompt, graded and summarised.

    Per family: one greedy completion per prompt and cfg.n_samples sampled ones. Rates are means
    over prompts with their standard error over prompts (each prompt weighs the same); the
    tokens-per-answer and seconds-per-answer costs count sampled completions only, the answers a
    user of the policy pays for, timed in this run. Returns (metrics, samples): samples holds every
    greedy row and the first cfg.n_examples sampled rows per prompt, each {id, family, kind, index,
    completion, extracted, valid, correct, n_tokens, truncated}.
    """
    scoring = scoring or Scoring()
    families = rows_by_family(eval_rows, cfg.max_prompts_per_family)
    metrics: dict[str, float] = {"eval/n_samples": cfg.n_samples}
    samples: list[dict] = []
    sampled_tokens: list[int] = []
    sampling_seconds = 0.0
    inference_tokens = 0
    sampler_stats: dict[str, list[float]] = {}
    for family, rows in families.items():
        kind = scoring.kinds.get(family) or family_kind(family, rows)
        prompts = [r["prompt"] for r in rows]
        common = {"max_new_tokens": cfg.max_new_tokens, "batch_size": cfg.batch_size, "progress": progress,
                  "backend": cfg.backend}
        greedy = generate_completions(model, tokenizer, prompts, n=1, greedy=True, seed=cfg.seed, **common)
        start = time.perf_counter()
        if scoring.sampler is None:
            sampled = generate_completions(
                model, tokenizer, prompts, n=cfg.n_samples, greedy=False, temperature=cfg.temperature,
                top_p=cfg.top_p, seed=cfg.seed, **common,
            )
            generated = sum(c.n_tokens for cs in sampled for c in cs)
        else:
            batch = scoring.sampler(model, tokenizer, prompts, cfg.n_samples, cfg.seed)
            sampled, generated = batch.completions, batch.generated_tokens
            for key, value in batch.stats.items():
                sampler_stats.setdefault(key, []).append(value)
        seconds = time.perf_counter() - start
        greedy_graded = [_graded(grade, kind, family, row, c[0]) for row, c in zip(rows, greedy)]
        sampled_graded = [[_graded(grade, kind, family, row, c) for c in cs] for row, cs in zip(rows, sampled)]
        if kind == REASONING:
            same = _same_answer_of(scoring, family)
            metrics.update(reasoning_metrics(family, greedy_graded, sampled_graded, cfg.n_samples, same))
            metrics.update(accuracy_breakdowns(family, rows, sampled_graded))
        elif kind == OPEN_ENDED:
            metrics.update(open_ended_metrics(family, rows, sampled_graded))
            metrics.update(_prefixed(family, _diversity(sampled_graded, scoring)))
            metrics.update(_prefixed(family, judged_open_ended_quality(rows, sampled_graded, scoring)))
        else:
            metrics.update(_prefixed(family, _diversity(sampled_graded, scoring)))
            metrics.update(_prefixed(family, creative_quality(rows, sampled_graded, scoring)))
        flat_tokens = [g["n_tokens"] for per_prompt in sampled_graded for g in per_prompt]
        metrics[f"{family}/tokens_per_answer"] = sum(flat_tokens) / len(flat_tokens)
        metrics[f"{family}/seconds_per_answer"] = seconds / len(flat_tokens)
        metrics[f"{family}/inference_tokens_per_answer"] = generated / len(flat_tokens)
        inference_tokens += generated
        metrics[f"eval/n_prompts/{family}"] = len(rows)
        sampled_tokens += flat_tokens
        sampling_seconds += seconds
        for row, g in zip(rows, greedy_graded):
            samples.append(_sample_row(row, "greedy", 0, g))
        for row, per_prompt in zip(rows, sampled_graded):
            samples += [_sample_row(row, "sample", j, g) for j, g in enumerate(per_prompt[: cfg.n_examples])]
    metrics["cost/tokens_per_answer"] = sum(sampled_tokens) / len(sampled_tokens)
    metrics["cost/seconds_per_answer"] = sampling_seconds / len(sampled_tokens)
    metrics["cost/inference_tokens_per_answer"] = inference_tokens / len(sampled_tokens)
    metrics.update({f"sampler/{k}": sum(v) / len(v) for k, v in sampler_stats.items()})
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
    """The family's kind: by its name when it is a kind, else by its answers.

    All answers None: creative; all lists: open-ended; all gold values: reasoning.
    """
    if family in KINDS:
        return family
    kinds = {CREATIVE if r["answer"] is None else OPEN_ENDED if isinstance(r["answer"], (list, tuple))
             else REASONING for r in rows}
    if len(kinds) == 1:
        return kinds.pop()
    raise EvalDataError(
        f"eval family {family!r} mixes answer types: give each row a gold string (reasoning), a list of valid "
        "answers (open-ended) or null (creative)."
    )


def reasoning_metrics(
    family: str, greedy: list[dict], sampled: list[list[dict]], n_samples: int,
    same: Callable[[str, str], bool] = operator.eq,
) -> dict[str, float]:
    """Greedy accuracy, avg@n with its standard error over prompts, pass@k, maj@k, validity.

        accuracy_mean = (1/m) Σ_q c_q / n,    pass@k = (1/m) Σ_q pass_at_k(n, c_q, k),
        maj@k = (1/m) Σ_q maj_at_k(answers_q, correct_q, k),
        extraction_failures = share of sampled completions with no extracted answer (= 1 − validity;
        they count as wrong, never as a guess)
    """
    correct_counts = [sum(g["correct"] for g in per_prompt) for per_prompt in sampled]
    mean, se = mean_and_standard_error(c / n_samples for c in correct_counts)
    flat = [g for per_prompt in sampled for g in per_prompt]
    validity = _mean(g["valid"] for g in flat)
    out = {
        f"{family}/accuracy_greedy": _mean(g["correct"] for g in greedy),
        f"{family}/accuracy_mean": mean,
        f"{family}/accuracy_mean_se": se,
        f"{family}/validity": validity,
        f"{family}/extraction_failures": 1.0 - validity,
        f"{family}/no_answer": 1.0 - validity,
    }
    for k in pass_at_k_values(n_samples):
        out[f"{family}/pass@{k}"] = _mean(pass_at_k(n_samples, c, k) for c in correct_counts)
        out[f"{family}/maj@{k}"] = _mean(
            maj_at_k([g["extracted"] if g["valid"] else None for g in per_prompt],
                     [g["correct"] for g in per_prompt], k, same)
            for per_prompt in sampled
        )
    return out


def accuracy_breakdowns(family: str, rows: list[dict], sampled: list[list[dict]]) -> dict[str, float]:
    """avg@n by every BREAKDOWN_KEYS key the rows' meta carries (MATH500 subject and level, ...).

        <family>/by_<key>/<group>/accuracy_mean = mean over the group's prompts of c_q / n
    Group names are slugged (lower case, runs of other characters → "_") so they make valid metric
    names everywhere.
    """
    per_prompt = [sum(g["correct"] for g in gs) / len(gs) for gs in sampled]
    out: dict[str, float] = {}
    for key in BREAKDOWN_KEYS:
        labels = [(r.get("meta") or {}).get(key) for r in rows]
        if all(label is None for label in labels):
            continue
        for group, (mean, se, count) in grouped_means(per_prompt, labels).items():
            prefix = f"{family}/by_{key}/{slug(group)}"
            out.update({f"{prefix}/accuracy_mean": mean, f"{prefix}/accuracy_mean_se": se,
                        f"{prefix}/n_prompts": count})
    return out


def slug(text: str) -> str:
    """'Counting & Probability' → 'counting_probability'; a number stays as it is ('3' → '3')."""
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_") or "none"


def answer_groups(answer: Any) -> list[list[str]]:
    """An open-ended answer key as alias groups: ["a", "b"] → [["a"], ["b"]]; groups stay groups."""
    from powerflow.eval.openended import alias_groups

    groups = alias_groups(answer) if not isinstance(answer, str) else None
    if groups is None:
        raise EvalDataError(
            f"open-ended answer key {answer!r}: give a non-empty list of valid answers or of alias groups."
        )
    return groups


def open_ended_metrics(family: str, rows: list[dict], sampled: list[list[dict]]) -> dict[str, float]:
    """Validity (precision), coverage of the valid set, KL to uniform (and to a reference), quality.

    Per prompt q with alias groups G_q (one group per distinct valid answer), a sampled answer is
    valid when the grader calls it valid and correct; it counts for the group holding its extracted
    form (after `powerflow.eval.openended.normalize_answer`). `open_qa_metrics` then gives

        validity_q = valid answers / samples                     (precision)
        coverage_q = |{g ∈ G_q : g sampled}| / |G_q|
        KL_q(P̂ ‖ U) = log|G_q| − H(P̂)    over the groups of the valid answers
        KL_q(P̂ ‖ R)  when the row's meta holds "reference": {first alias of a group: weight}

    each averaged over prompts (the KLs over prompts where they are finite; NaN if none).
    Quality on a keyed family is its validity.
    """
    from powerflow.eval.openended import aggregate_open_qa, alias_index, normalize_answer, open_qa_metrics

    per_prompt = []
    for row, graded in zip(rows, sampled):
        groups = answer_groups(row["answer"])
        index = alias_index(groups)
        accepted = [g["extracted"] if g["valid"] and g["correct"] else None for g in graded]
        outside = sorted({a for a in accepted if a is not None and normalize_answer(a) not in index}, key=str)
        if outside:
            raise EvalDataError(
                f"the grader accepted {outside[:3]} for eval row {row['id']!r}, but its answer list does not hold "
                "them: write open-ended answers in the normalised form Grade.extracted takes."
            )
        per_prompt.append(open_qa_metrics(accepted, groups, reference_of(row, groups)))
    agg = aggregate_open_qa(per_prompt)
    out = {
        f"{family}/no_answer": _mean(g["extracted"] is None for graded in sampled for g in graded),
        f"{family}/validity": agg["precision"],
        f"{family}/validity_se": agg["precision_se"],
        f"{family}/coverage": agg["coverage"],
        f"{family}/coverage_se": agg["coverage_se"],
        f"{family}/kl_uniform": agg["kl_uniform"],
        f"{family}/quality": agg["precision"],
        f"{family}/quality_se": agg["precision_se"],
    }
    if "kl_reference" in agg:
        out[f"{family}/kl_reference"] = agg["kl_reference"]
    return out


def reference_of(row: dict, groups: list[list[str]]) -> dict[int, float] | None:
    """A row's reference distribution over its groups: meta["reference"] = {first alias: weight}."""
    reference = (row.get("meta") or {}).get("reference")
    if reference is None:
        return None
    first = {group[0]: i for i, group in enumerate(groups)}
    unknown = [k for k in reference if k not in first]
    if unknown:
        raise EvalDataError(
            f"eval row {row['id']!r}: reference names {unknown[:3]}, which start no answer group; key the reference "
            "by each group's first alias."
        )
    return {first[k]: float(w) for k, w in reference.items()}


def creative_quality(rows: list[dict], sampled: list[list[dict]], scoring: Scoring) -> dict[str, float]:
    """The judge's rubric quality of every sampled answer, mean and se over answers, failures counted.

    Nothing when no judge is configured: quality is then reported missing, not guessed.
    """
    if scoring.judge is None:
        return {}
    from powerflow.eval.judge import CREATIVE_WRITING_RUBRIC, judge_prompt, judge_quality

    items = [(row["prompt"], g["completion"]) for row, per_prompt in zip(rows, sampled) for g in per_prompt]
    result = judge_quality(scoring.judge, scoring.rubric or CREATIVE_WRITING_RUBRIC, items,
                           prompt=scoring.judge_prompt or judge_prompt)
    return {"quality": result.mean, "quality_se": result.se, "judge_failures": result.n_failures / len(items)}


def judged_open_ended_quality(rows: list[dict], sampled: list[list[dict]], scoring: Scoring) -> dict[str, float]:
    """The judge's quality of every sampled answer of a keyed family, and how often it agrees with the key.

        judged_quality = mean of the parsed judge scores q_i ∈ [0, 1] (se over answers)
        judge_agreement = (1/m) Σ_{i parsed} [q_i ≥ ½] = [answer i is valid by the key]

    An answer the grader reads no answer in is judged too (as a wrong one by the key). Nothing when no
    judge is configured.
    """
    if scoring.judge is None:
        return {}
    from powerflow.eval.judge import CREATIVE_WRITING_RUBRIC, judge_prompt, judge_quality

    items = [(row["prompt"], g["completion"]) for row, per_prompt in zip(rows, sampled) for g in per_prompt]
    truth = [bool(g["valid"] and g["correct"]) for per_prompt in sampled for g in per_prompt]
    result = judge_quality(scoring.judge, scoring.rubric or CREATIVE_WRITING_RUBRIC, items,
                           prompt=scoring.judge_prompt or judge_prompt)
    agree = [(q >= 0.5) == t for q, t in zip(result.qualities, truth) if q is not None]
    return {"judged_quality": result.mean, "judged_quality_se": result.se,
            "judge_failures": result.n_failures / len(items),
            "judge_agreement": sum(agree) / len(agree) if agree else float("nan")}


def _diversity(sampled: list[list[dict]], scoring: Scoring) -> dict[str, float]:
    """Semantic and lexical diversity of each prompt's sampled completions (powerflow.eval.diversity)."""
    from powerflow.eval.diversity import diversity_metrics

    return diversity_metrics([[g["completion"] for g in per_prompt] for per_prompt in sampled], scoring.embedder)


def _same_answer_of(scoring: Scoring, family: str) -> Callable[[str, str], bool]:
    if scoring.same_answer is None:
        return operator.eq
    return lambda a, b: scoring.same_answer(family, a, b)


def _prefixed(family: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{family}/{k}": v for k, v in metrics.items()}


def _graded(grade: GradeFn, kind: str, family: str, row: dict, completion: Completion) -> dict:
    """One completion with its grade, as plain values (creative answers have no key: not graded)."""
    if kind == CREATIVE:
        valid = correct = extracted = None
    else:
        g = grade(family, row["answer"], completion.text)
        valid, correct, extracted = bool(g.valid), bool(g.correct), g.extracted
    return {"completion": completion.text, "extracted": extracted, "valid": valid, "correct": correct,
            "n_tokens": completion.n_tokens, "truncated": completion.truncated}


def _sample_row(row: dict, kind: str, index: int, graded: dict) -> dict:
    return {"id": row["id"], "family": row["family"], "kind": kind, "index": index, **graded}


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values)
