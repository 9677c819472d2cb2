"""The noisy teacher that writes the base model's corpus, and the prompts with their answer keys.

Two prompt families (docs/design.md section 3):

reasoning — "Q 3 + 5 + 2 =". The teacher either
  * guesses (probability p_guess):   "guess answer 13"   where 13 = true sum + a nonzero offset
    (±2..±4), so a guess is never right and guesses scatter over len(guess_offsets) answers; or
  * works (probability 1 − p_guess): "work 3 + 5 = 8 , 8 + 2 = 10 , answer 10", each step right
    with probability 1 − step_error (a wrong step is off by a small offset and the error propagates,
    because later steps add correctly to the wrong partial sum).
  So the likeliest first token is "guess" (greedy / low temperature go wrong), while the likeliest
  complete sequence is the correct worked solution:
      p(correct work) = (1 − p_guess)(1 − step_error)^(n_operands−1) ≈ 0.4 · 0.94 = 0.376
      p(one guess)    = p_guess / len(guess_offsets)                 ≈ 0.6 / 6    = 0.1
  Sampling at T = 1 is right with probability ≈ 0.38; p^α with α > 1 moves mass onto the 0.376
  (at α = 4 the correct worked solution holds ≈ 0.376⁴ / (0.376⁴ + 6 · 0.1⁴ + ...) ≈ 0.97).
  Every completion ends in the fixed format "answer N" (see powerflow.world.grading).

open_ended — "name a fruit :" and paraphrases. The teacher answers one word: a valid answer of the
  category with Zipf frequencies ∝ rank^(−zipf_exponent) (mode collapse: the top answer has > 40 %),
  or, with probability invalid_rate, one of a few invalid words. p^α with α < 1 flattens toward the
  tail of valid answers.

long-completion reasoning (opt-in: world.max_operands, issue 20) — "Q d1 3 d2 5 d3 2 =" with
  n_operands..max_operands labelled operands. The teacher writes the same two kinds of answer, each
  operand named by its label so that a small model finds it by content: "guess answer 6" (3 tokens)
  or "work 3 + d2 5 = 8 , 8 + d3 2 = 10 , answer 10" (7 tokens a step, up to ~80 for 12
  operands). p_base^α then puts its mass on answers of very different lengths: short guesses and
  long worked solutions.

Splits: reasoning eval problems are a seeded sample of all digit tuples, disjoint from the train
problems and absent from the teacher corpus (the base must generalise to them). Open-ended eval
prompts use held-out paraphrases (`open_eval_templates`) of the same categories; all paraphrases
appear in the corpus, since an open-ended prompt has no answer to leak: what is measured is the
shape of the base's answer distribution, and the fine-tuned policy must carry its flattening over
to paraphrases it was not trained on.

A document is `prompt + " " + completion`; the pretraining code appends EOS. Prompts and
completions are space-separated tokens of `powerflow.world.tokenizer`.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from powerflow.world.config import CATEGORY_ANSWERS, CATEGORY_SLOT, WorldConfig

# Markers and symbols of the reasoning family, in the order the tokenizer lists them.
REASONING_WORDS = ("Q", "+", "=", ",", "guess", "work", "answer")


def is_long(cfg: WorldConfig) -> bool:
    """Whether the reasoning family is the long-completion one (world.max_operands set, docs/design.md §3)."""
    return cfg.max_operands is not None


def most_operands(cfg: WorldConfig) -> int:
    """The most operands a reasoning problem has: world.max_operands when long, else n_operands."""
    return cfg.max_operands if is_long(cfg) else cfg.n_operands


def max_number(cfg: WorldConfig) -> int:
    """Largest number a teacher completion can write: max sum plus the largest upward errors."""
    n = most_operands(cfg)
    return 9 * n + max(0, max(cfg.guess_offsets)) + (n - 1) * max(0, max(cfg.step_error_offsets))


def operand_label(k: int) -> str:
    """'d3', the token naming the k-th operand (k from 0) of a long-completion prompt."""
    return f"d{k + 1}"


def operand_labels(cfg: WorldConfig) -> list[str]:
    """Every operand label the long-completion family can write ([] for the default family)."""
    return [operand_label(k) for k in range(cfg.max_operands)] if is_long(cfg) else []


def longest_completion_tokens(cfg: WorldConfig) -> int:
    """Tokens of the longest teacher completion, EOS included (a worked solution of the most operands)."""
    n = most_operands(cfg)
    step = 6 if is_long(cfg) else 5  # "r + d2 5 = s" or "r + 5 = s"
    return 1 + (n - 1) * step + (n - 1) + 2 + 1  # work, steps, commas, "answer N", EOS


# ---------------------------------------------------------------------------------------------
# Reasoning family


def reasoning_prompt(cfg: WorldConfig, digits: Sequence[int]) -> str:
    """'Q 3 + 5 + 2 =' for digits (3, 5, 2); 'Q d1 3 d2 5 d3 2 =' in the long-completion family."""
    if is_long(cfg):
        return "Q " + " ".join(f"{operand_label(k)} {d}" for k, d in enumerate(digits)) + " ="
    return "Q " + " + ".join(str(d) for d in digits) + " ="


def reasoning_split(cfg: WorldConfig) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """(train, eval) digit tuples: disjoint seeded samples of all 10^n_operands tuples (long-completion
    family: of distinct random tuples whose length is uniform in n_operands..max_operands)."""
    rng = random.Random(f"world-split-{cfg.seed}")
    if is_long(cfg):
        problems = list(dict.fromkeys(draw_long_problem(cfg, rng) for _ in range(
            4 * (cfg.n_reasoning_eval + cfg.n_reasoning_train))))
    else:
        problems = list(itertools.product(range(10), repeat=cfg.n_operands))
        rng.shuffle(problems)
    eval_ = sorted(problems[: cfg.n_reasoning_eval])
    train = sorted(problems[cfg.n_reasoning_eval : cfg.n_reasoning_eval + cfg.n_reasoning_train])
    return train, eval_


def draw_long_problem(cfg: WorldConfig, rng: random.Random) -> tuple[int, ...]:
    """A long-completion problem: n ~ U{n_operands..max_operands} uniform digits."""
    return tuple(rng.randrange(10) for _ in range(rng.randint(cfg.n_operands, cfg.max_operands)))


def corpus_problems(cfg: WorldConfig) -> list[tuple[int, ...]]:
    """Every digit tuple except the eval problems: what the teacher corpus may write about (default family)."""
    held_out = set(reasoning_split(cfg)[1])
    return [p for p in itertools.product(range(10), repeat=cfg.n_operands) if p not in held_out]


def _offset(value: int, offset: int) -> int:
    """value + offset, reflected to value − offset when that would be negative (never equals value)."""
    return value + offset if value + offset >= 0 else value - offset


def worked_completion(cfg: WorldConfig, digits: Sequence[int], step_results: Sequence[int]) -> str:
    """'work 3 + 5 = 8 , 8 + 2 = 10 , answer 10' given the partial sums written at each step
    ('work 3 + d2 5 = 8 , 8 + d3 2 = 10 , answer 10' in the long-completion family)."""
    steps, left = [], digits[0]
    for k, (digit, result) in enumerate(zip(digits[1:], step_results), start=1):
        operand = f"{operand_label(k)} {digit}" if is_long(cfg) else str(digit)
        steps.append(f"{left} + {operand} = {result}")
        left = result
    return "work " + " , ".join(steps) + f" , answer {left}"


def correct_worked_completion(digits: Sequence[int], cfg: WorldConfig | None = None) -> str:
    """The worked solution with every step right: the mode of the teacher's distribution."""
    partial = list(itertools.accumulate(digits))[1:]
    return worked_completion(cfg or WorldConfig(), digits, partial)


def sample_reasoning_completion(cfg: WorldConfig, digits: Sequence[int], rng: random.Random) -> str:
    """One teacher completion: a guess (p_guess) or a worked solution with per-step errors."""
    if rng.random() < cfg.p_guess:
        return f"guess answer {_offset(sum(digits), rng.choice(cfg.guess_offsets))}"
    results, left = [], digits[0]
    for digit in digits[1:]:
        result = left + digit
        if rng.random() < cfg.step_error:
            result = _offset(result, rng.choice(cfg.step_error_offsets))
        results.append(result)
        left = result
    return worked_completion(cfg, digits, results)


# ---------------------------------------------------------------------------------------------
# Open-ended family


def open_prompt(template: str, category: str) -> str:
    """'name a fruit :' from template 'name a {category} :'."""
    return template.replace(CATEGORY_SLOT, category)


def open_answer_distribution(cfg: WorldConfig, category: str) -> dict[str, float]:
    """Teacher probabilities of one-word answers: (1 − ε) · Zipf over valid answers + ε spread over invalid words.

    p(a_k) = (1 − ε) k^(−s) / Σ_j j^(−s) for the k-th valid answer; p(w) = ε / |invalid_words|.
    """
    answers = CATEGORY_ANSWERS[category]
    weights = [(k + 1) ** -cfg.zipf_exponent for k in range(len(answers))]
    total = sum(weights)
    dist = {a: (1 - cfg.invalid_rate) * w / total for a, w in zip(answers, weights)}
    for word in cfg.invalid_words:
        dist[word] = dist.get(word, 0.0) + cfg.invalid_rate / len(cfg.invalid_words)
    return dist


def sample_open_completion(cfg: WorldConfig, category: str, rng: random.Random) -> str:
    """One teacher answer for a category prompt."""
    dist = open_answer_distribution(cfg, category)
    return rng.choices(list(dist), weights=list(dist.values()))[0]


# ---------------------------------------------------------------------------------------------
# Public API


def world_prompt_rows(cfg: WorldConfig) -> list[dict]:
    """One dict per prompt: id, family, split, prompt, answer. Deterministic given cfg.

    reasoning rows: answer is the gold sum as a string ("10").
    open_ended rows: answer is the list of valid answers of the prompt's category.
    Ids: "reasoning-3+5+2" and "open_ended-fruit-<template index>-<split>", unique.
    """
    rows: list[dict] = []
    train, eval_ = reasoning_split(cfg)
    for split, problems in (("train", train), ("eval", eval_)):
        for digits in problems:
            rows.append({
                "id": "reasoning-" + "+".join(map(str, digits)),
                "family": "reasoning",
                "split": split,
                "prompt": reasoning_prompt(cfg, digits),
                "answer": str(sum(digits)),
            })
    for split, templates in (("train", cfg.open_train_templates), ("eval", cfg.open_eval_templates)):
        for i, template in enumerate(templates):
            for category in cfg.categories:
                rows.append({
                    "id": f"open_ended-{category}-{split}{i}",
                    "family": "open_ended",
                    "split": split,
                    "prompt": open_prompt(template, category),
                    "answer": list(CATEGORY_ANSWERS[category]),
                })
    return rows


def draw_corpus_problem(cfg: WorldConfig, rng: random.Random, problems: Sequence[tuple[int, ...]],
                        held_out: set) -> tuple[int, ...]:
    """A corpus problem: uniform over `problems` (default family), or a long-completion draw outside the eval split."""
    if not is_long(cfg):
        return rng.choice(problems)
    while (digits := draw_long_problem(cfg, rng)) in held_out:
        pass
    return digits


def teacher_corpus(cfg: WorldConfig, n_documents: int, seed: int) -> list[str]:
    """n_documents teacher documents "prompt completion" (no EOS), seeded.

    A document is reasoning with probability reasoning_fraction (a uniform problem outside the
    eval split), else open-ended (a uniform category and paraphrase, both splits' templates).
    """
    rng = random.Random(f"world-corpus-{cfg.seed}-{seed}")
    held_out = set(reasoning_split(cfg)[1])
    problems = [] if is_long(cfg) else corpus_problems(cfg)
    templates = tuple(cfg.open_train_templates) + tuple(cfg.open_eval_templates)
    documents = []
    for _ in range(n_documents):
        if rng.random() < cfg.reasoning_fraction:
            digits = draw_corpus_problem(cfg, rng, problems, held_out)
            documents.append(f"{reasoning_prompt(cfg, digits)} {sample_reasoning_completion(cfg, digits, rng)}")
        else:
            category, template = rng.choice(cfg.categories), rng.choice(templates)
            documents.append(f"{open_prompt(template, category)} {sample_open_completion(cfg, category, rng)}")
    return documents
