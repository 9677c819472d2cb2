"""Open-ended QA (CoverageQA-style): each prompt has several valid answers, each a group of aliases.

A prompt such as "Name a fruit." lists groups like [["apple", "apples"], ["banana"], ...]; an
answer is valid when, after normalize_answer, it equals an alias of some group. Per prompt:

    precision      valid answers / all answers                     (higher = more often right)
    coverage       distinct groups hit / number of groups          (higher = more of the answers found)
    kl_uniform     KL(P̂ ‖ uniform over groups)                     (lower = spread more evenly)
    kl_reference   KL(P̂ ‖ R) for a supplied reference R over groups (lower = closer to R)

aggregate_open_qa averages them over prompts; grade_open_qa is the grader for one completion, and
AliasGroupAnswers the answer kind open_qa of the grading registry.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence

from powerflow.eval.grading import NO_ANSWER, OPEN_ENDED, AnswerKind, Grade
from powerflow.eval.metrics import coverage, kl_to_uniform, mean_and_standard_error

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """The form answers and aliases are compared in (SQuAD v1.1's normalisation, plus Unicode NFKC).

    In order: Unicode NFKC (full-width and compatibility characters to their plain form), lower
    case, delete punctuation (ASCII punctuation and every Unicode punctuation character; deleted,
    not replaced by a space, so "U.S." and "US" agree), drop the articles a/an/the as whole
    words unless nothing else is left (the answer "A" stays "a"), and collapse runs of
    whitespace to one space with none at the ends.

    >>> normalize_answer("The Apple.")
    'apple'
    >>> normalize_answer("  An   ORANGE!! ")
    'orange'
    >>> normalize_answer("U.S.")
    'us'
    >>> normalize_answer("Ｐａｒｉｓ")
    'paris'
    >>> normalize_answer("“Theatre”")
    'theatre'
    >>> normalize_answer("A.")
    'a'
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if not _is_punctuation(ch))
    without_articles = " ".join(_ARTICLES.sub(" ", text).split())
    return without_articles or " ".join(text.split())


def _is_punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def alias_index(groups: Sequence[Sequence[str]]) -> dict[str, int]:
    """{normalised alias: index of its group}. An alias listed in two groups belongs to the first;
    an alias that normalises to "" (only punctuation or articles) is dropped."""
    index: dict[str, int] = {}
    for g, aliases in enumerate(groups):
        for alias in aliases:
            key = normalize_answer(alias)
            if key:
                index.setdefault(key, g)
    return index


def match_group(answer: str, groups: Sequence[Sequence[str]]) -> int | None:
    """Index of the alias group holding the answer (exact match after normalize_answer), else None."""
    key = normalize_answer(answer)
    return alias_index(groups).get(key) if key else None


def open_qa_metrics(
    answers: Sequence[str | None],
    groups: Sequence[Sequence[str]],
    reference: Mapping[int, float] | None = None,
) -> dict[str, float]:
    """Precision, coverage and KL divergences of one prompt's answers over its K alias groups.

    With N answers (None = no answer, invalid) of which V match a group, and g(a) the group of a:

        precision    = V / N
        coverage     = |{g(a) : a valid}| / K
        P̂(g)         = |{a valid : g(a) = g}| / V
        kl_uniform   = KL(P̂ ‖ U_K) = Σ_g P̂(g) log(K P̂(g)) = log K − H(P̂)         (NaN when V = 0)
        kl_reference = KL(P̂ ‖ R)   = Σ_{g : P̂(g) > 0} P̂(g) log(P̂(g) / R(g))     (NaN when V = 0)

    In nats. `reference` maps group index → weight (missing groups weigh 0) and is normalised to
    R(g) = w_g / Σ w; a group the answers hit but R gives 0 makes kl_reference infinite (P̂ is not
    absolutely continuous w.r.t. R). kl_reference is present only when a reference is given.
    """
    if not answers:
        raise ValueError("open_qa_metrics needs at least one answer (None counts as a missing answer)")
    if not groups:
        raise ValueError("open_qa_metrics needs at least one group of valid answers")
    index = alias_index(groups)
    hits = [index.get(normalize_answer(a)) if a is not None else None for a in answers]
    valid_groups = [str(g) for g in hits if g is not None]  # group indices as labels for metrics.*
    all_groups = [str(g) for g in range(len(groups))]
    out = {
        "precision": len(valid_groups) / len(answers),
        "coverage": coverage(valid_groups, all_groups),
        "kl_uniform": kl_to_uniform(valid_groups, all_groups),
    }
    if reference is not None:
        out["kl_reference"] = kl_to_reference([g for g in hits if g is not None], reference, len(groups))
    return out


def kl_to_reference(hit_groups: Sequence[int], reference: Mapping[int, float], n_groups: int) -> float:
    """KL(P̂ ‖ R) in nats of the empirical distribution of hit_groups to the normalised reference.

        KL(P̂ ‖ R) = Σ_{g : P̂(g) > 0} P̂(g) log(P̂(g) / R(g)),   R(g) = w_g / Σ_h w_h

    inf when some hit group has R(g) = 0; NaN when hit_groups is empty.
    """
    weights = _reference_weights(reference, n_groups)
    if not hit_groups:
        return math.nan
    total_weight = sum(weights)
    counts = Counter(hit_groups)
    total = len(hit_groups)
    kl = 0.0
    for g, c in counts.items():
        p = c / total
        r = weights[g] / total_weight
        if r == 0:
            return math.inf
        kl += p * math.log(p / r)
    return max(kl, 0.0)  # max: rounding can give -1e-16 when P̂ = R


def _reference_weights(reference: Mapping[int, float], n_groups: int) -> list[float]:
    """The reference as a list of n_groups non-negative weights with a positive sum."""
    weights = [0.0] * n_groups
    for g, w in reference.items():
        if not 0 <= g < n_groups:
            raise ValueError(f"reference distribution names group {g}, but the groups are 0..{n_groups - 1}")
        if not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"reference distribution gives group {g} the weight {w}; weights must be finite and >= 0")
        weights[g] = float(w)
    if sum(weights) <= 0:
        raise ValueError("reference distribution has no positive weight; give at least one group a weight > 0")
    return weights


def aggregate_open_qa(per_prompt: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Open-ended QA metrics over prompts, each prompt weighing the same.

        precision, precision_se, coverage, coverage_se      mean over prompts and its standard error
        kl_uniform, kl_reference                           mean over the prompts where it is finite

    A KL is NaN for a prompt with no valid answer and kl_reference is inf where the answers hit a
    group the reference rules out; both are left out of the mean (NaN when no prompt is left).
    kl_reference appears when any prompt has it.
    """
    if not per_prompt:
        raise ValueError("aggregate_open_qa needs the metrics of at least one prompt")
    out: dict[str, float] = {}
    for key in ("precision", "coverage"):
        out[key], out[f"{key}_se"] = mean_and_standard_error(m[key] for m in per_prompt)
    for key in ("kl_uniform", "kl_reference"):
        if any(key in m for m in per_prompt):
            finite = [m[key] for m in per_prompt if key in m and math.isfinite(m[key])]
            out[key] = sum(finite) / len(finite) if finite else math.nan
    return out


def first_answer_line(completion: str) -> str:
    """The first non-blank line of a completion, where the prompt template asks for the answer.

    The template asks for one answer, so anything after that line (explanations, more answers) is
    ignored rather than searched: a completion listing ten fruits must not count as naming each.
    """
    for line in completion.splitlines():
        if line.strip():
            return line
    return ""


def grade_open_qa(completion: str, groups: Sequence[Sequence[str]]) -> Grade:
    """Grade one open-ended completion: its normalised first line against the alias groups.

    valid = correct = the line matches a group; extracted is then that group's canonical answer
    (its first alias, normalised), so counting extracted answers counts groups, whichever alias
    was used. A line that matches no group keeps its normalised text (None when empty) with
    valid = correct = False.
    """
    answer = normalize_answer(first_answer_line(completion))
    if not answer:
        return Grade(valid=False, correct=False, extracted=None)
    g = alias_index(groups).get(answer)
    if g is None:
        return Grade(valid=False, correct=False, extracted=answer)
    return Grade(valid=True, correct=True, extracted=canonical_answer(groups[g]))


def canonical_answer(aliases: Sequence[str]) -> str:
    """The name a group is counted under: its first alias, normalised (the first that is not "")."""
    return next((key for key in map(normalize_answer, aliases) if key), "")


def alias_groups(answer) -> list[list[str]] | None:
    """An open-ended key as alias groups: ["a", "b"] → [["a"], ["b"]]; groups stay groups.

    JSON text of a list (a dataset column's form) is decoded first. None when the key is not a
    non-empty list.
    """
    if isinstance(answer, str):
        import json

        try:
            answer = json.loads(answer)
        except ValueError:
            return None
    if not isinstance(answer, (list, tuple)) or not answer:
        return None
    return [[str(a) for a in item] if isinstance(item, (list, tuple)) else [str(item)] for item in answer]


class AliasGroupAnswers(AnswerKind):
    """Open-ended answers with a key (kind open_qa): the normalised first line, valid when it is an
    alias of one of the key's groups (`grade_open_qa`); two answers are the same when equal after
    `normalize_answer`."""

    name = "open_qa"
    scoring = OPEN_ENDED

    def extract(self, completion: str) -> str | None:
        return normalize_answer(first_answer_line(completion)) or None

    def grade(self, answer, completion: str) -> Grade:
        groups = alias_groups(answer)
        if groups is None:
            return NO_ANSWER
        return grade_open_qa(completion, groups)

    def same(self, representative: str, answer: str) -> bool:
        return normalize_answer(representative) == normalize_answer(answer)

    def key_problem(self, answer) -> str | None:
        if alias_groups(answer) is None:
            return f"open_qa keys are non-empty lists of valid answers (or of alias groups), got {answer!r}"
        return None
