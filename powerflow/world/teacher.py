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

chat (world.chat_fraction > 0, docs/design.md §3.3) — the open-ended questions in the world's chat
  template (powerflow.world.chat), in three kinds of document:
  * direct: "user: name a fruit : assistant: apple", answered in an ALIGNED style that over-weights
    the typical answer, p_aligned(a) ∝ p_teacher(a)^γ (γ = alignment_gamma > 1: mode collapse, as the
    Verbalized Sampling paper attributes to alignment). The "chat" prompt rows are these prompts;
  * verbalized: the project's VS-Standard, VS-CoT and VS-Multi prompts for the same questions,
    answered with chat_k answers drawn from the teacher's pre-alignment distribution (Zipf with its
    invalid words) without replacement, each with its teacher probability (two decimals), in the
    JSON the project's parser reads; a VS-Multi turn lists answers not given in earlier turns;
  * judge: the short judge prompt about (question, response), answered "request fruit , response fruit ;
    Score: 10" when the response is a valid answer of the category and "... ; Score: 0" otherwise
    (ground truth, not style; the rationale names both categories before the verdict).

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

from powerflow.world.chat import (
    JUDGE_SCORES,
    ROLE_MARKERS,
    VERBALIZED_METHODS,
    chat_vocabulary,
    judge_reply,
    judge_request,
    reasoning_text,
    render_chat,
    verbalized_config,
    verbalized_reply,
)
from powerflow.world.config import CATEGORY_ANSWERS, CATEGORY_SLOT, WorldConfig

# Families of world_prompt_rows: those the pipeline uses by default, and every one the world has.
DEFAULT_FAMILIES = ("reasoning", "open_ended")
FAMILIES = ("reasoning", "open_ended", "chat")

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
# Chat family (docs/design.md §3.3; the format is powerflow.world.chat)


def chat_prompt(template: str, category: str) -> str:
    """'user: name a fruit : assistant:', the direct chat request of an open-ended question."""
    return render_chat([{"role": "user", "content": open_prompt(template, category)}])


def aligned_answer_distribution(cfg: WorldConfig, category: str) -> dict[str, float]:
    """The aligned style of a direct chat reply: the teacher's distribution sharpened by γ.

        p_aligned(a) = p_teacher(a)^γ / Σ_b p_teacher(b)^γ,   γ = world.alignment_gamma

    so p_aligned^(1/γ) ∝ p_teacher: α = 1/γ undoes the alignment exactly.
    """
    teacher = open_answer_distribution(cfg, category)
    weights = {a: p ** cfg.alignment_gamma for a, p in teacher.items()}
    total = sum(weights.values())
    return {a: w / total for a, w in weights.items()}


def sample_direct_chat_document(cfg: WorldConfig, category: str, template: str, rng: random.Random) -> str:
    """'user: name a fruit : assistant: apple', the answer drawn from p_aligned."""
    dist = aligned_answer_distribution(cfg, category)
    return f"{chat_prompt(template, category)} {rng.choices(list(dist), weights=list(dist.values()))[0]}"


def verbalized_candidates(cfg: WorldConfig, category: str, rng: random.Random,
                          exclude: Sequence[str] = ()) -> list[tuple[str, float]]:
    """chat_k (answer, p_teacher(answer)) pairs by successive sampling without replacement from p_teacher.

    The i-th answer is drawn with probability p_teacher(a) / Σ_{b not yet listed, b ∉ exclude} p_teacher(b);
    when fewer than chat_k answers are left, all of them are listed. The stated probability is the
    teacher's own p_teacher(a), not renormalised (the parser renormalises over the listed answers).
    """
    teacher = open_answer_distribution(cfg, category)
    left = {a: p for a, p in teacher.items() if a not in set(exclude)}
    listed = []
    while left and len(listed) < cfg.chat_k:
        answer = rng.choices(list(left), weights=list(left.values()))[0]
        listed.append((answer, teacher[answer]))
        del left[answer]
    return listed


def sample_verbalized_document(cfg: WorldConfig, method: str, category: str, template: str,
                               rng: random.Random) -> str:
    """One VS conversation's last turn with its reply: the project's prompt for `method`, rendered.

    VS-Multi: a turn t uniform in 0..chat_turns−1; the earlier turns' replies are the teacher's,
    each listing answers none of the earlier turns gave.
    """
    from powerflow.sampling.verbalized.prompts import build_messages, continue_conversation

    vcfg = verbalized_config(cfg, method)
    question = open_prompt(template, category)
    messages = build_messages(method, question, vcfg)
    reasoning = reasoning_text(category) if method == "vs_cot" else None
    turns = rng.randrange(cfg.chat_turns) + 1 if method == "vs_multi" else 1
    given: list[str] = []
    reply = None
    for turn in range(turns):
        if reply is not None:
            messages = continue_conversation(messages, reply, turn, vcfg)
        candidates = verbalized_candidates(cfg, category, rng, exclude=given)
        given += [a for a, _ in candidates]
        reply = verbalized_reply(candidates, reasoning)
    return f"{render_chat(messages)} {reply}"


def judge_score(category: str, response: str) -> int:
    """The teacher's verdict on a response: 10 when it is a valid answer of the category, else 0.

    Valid as the world's grader reads it (`normalize_open_answer`: case, EOS text and trailing
    punctuation aside), so the judge is taught the answer key's own verdicts."""
    from powerflow.world.grading import normalize_open_answer

    return JUDGE_SCORES[1] if normalize_open_answer(response) in CATEGORY_ANSWERS[category] else JUDGE_SCORES[0]


# Shares of the judged responses: a valid answer, one wrong word, a malformed reply (below).
JUDGED_RESPONSE_SHARES = (0.5, 0.35, 0.15)
MALFORMED_EXTRA_WORDS = (1, 6)


def malformed_reply_words(cfg: WorldConfig) -> list[str]:
    """The words a malformed judged reply is made of: the world's vocabulary but its special tokens and
    the template words (reasoning words, numbers, categories, answers, invalid words, chat words)."""
    words = [*REASONING_WORDS, *(str(n) for n in range(max_number(cfg) + 1)), *CATEGORY_ANSWERS]
    words += [a for answers in CATEGORY_ANSWERS.values() for a in answers] + list(cfg.invalid_words)
    return list(dict.fromkeys(words + chat_vocabulary(cfg)))


def judged_response(cfg: WorldConfig, category: str, rng: random.Random) -> str:
    """A response to be judged, in shares JUDGED_RESPONSE_SHARES: a valid answer of the category
    (uniform); a wrong one, uniform over the invalid words, the other categories' answers and the
    digits 0..9; or a malformed reply, one of those words among 1..6 words drawn uniformly from
    `malformed_reply_words`, in random order (what a policy sampled at a high temperature writes: 'apple
    thing', '"garlic", are'). The verdict is `judge_score`'s, so most malformed replies score 0."""
    wrong = list(cfg.invalid_words) + [a for c, answers in CATEGORY_ANSWERS.items() if c != category
                                       for a in answers] + [str(d) for d in range(10)]
    kind = rng.choices(("valid", "wrong", "malformed"), weights=JUDGED_RESPONSE_SHARES)[0]
    if kind == "valid":
        return rng.choice(CATEGORY_ANSWERS[category])
    if kind == "wrong":
        return rng.choice(wrong)
    vocabulary = malformed_reply_words(cfg)
    word = rng.choice(CATEGORY_ANSWERS[category]) if rng.random() < 0.5 else rng.choice(wrong)
    words = [rng.choice(vocabulary) for _ in range(rng.randint(*MALFORMED_EXTRA_WORDS))]
    words.insert(rng.randint(0, len(words)), word)
    return " ".join(words)


def sample_judge_document(cfg: WorldConfig, category: str, template: str, rng: random.Random) -> str:
    """'user: Rate the response ... Request: name a fruit : Response: apple ... assistant: request fruit , response fruit ; Score: 10'.

    The request is the plain question or its direct chat prompt (half each): evaluation hands the
    judge a prompt row's text, which is either.
    """
    question = open_prompt(template, category) if rng.random() < 0.5 else chat_prompt(template, category)
    response = judged_response(cfg, category, rng)
    request = render_chat([{"role": "user", "content": judge_request(question, response)}])
    return f"{request} {judge_reply(category, response, judge_score(category, response))}"


def sample_chat_document(cfg: WorldConfig, rng: random.Random, templates: Sequence[str]) -> str:
    """A chat document: direct, verbalized (a uniform VS method) or judge, weighted by world.chat_mix;
    a uniform category and question paraphrase. Whitespace is single spaces (what decoding gives back)."""
    kind = rng.choices(("direct", "verbalized", "judge"), weights=cfg.chat_mix)[0]
    category, template = rng.choice(cfg.categories), rng.choice(templates)
    if kind == "direct":
        text = sample_direct_chat_document(cfg, category, template, rng)
    elif kind == "verbalized":
        text = sample_verbalized_document(cfg, rng.choice(VERBALIZED_METHODS), category, template, rng)
    else:
        text = sample_judge_document(cfg, category, template, rng)
    return " ".join(text.split())


def is_chat_document(document: str) -> bool:
    """Whether a corpus document is a chat one (it opens with a role marker)."""
    return document.startswith((ROLE_MARKERS["system"] + " ", ROLE_MARKERS["user"] + " "))


# ---------------------------------------------------------------------------------------------
# Public API


def world_families(cfg: WorldConfig, wanted: Sequence[str]) -> list[str]:
    """The world's families among `wanted` that this world has: chat only when world.chat_fraction > 0."""
    return [f for f in wanted if f in FAMILIES and (f != "chat" or cfg.chat_fraction > 0)]


def world_prompt_rows(cfg: WorldConfig, families: Sequence[str] = DEFAULT_FAMILIES) -> list[dict]:
    """One dict per prompt of the given families: id, family, split, prompt, answer. Deterministic given cfg.

    reasoning rows: answer is the gold sum as a string ("10").
    open_ended rows: answer is the list of valid answers of the prompt's category.
    chat rows (world.chat_fraction > 0): the open-ended questions as direct chat requests
      ('user: name a fruit : assistant:', same templates and splits), answer as open_ended.
    request: the question without the chat template ('name a fruit :' for a chat row), the prompt otherwise.
    Ids: "reasoning-3+5+2", "open_ended-fruit-<split><template index>", "chat-fruit-<split><template index>".
    """
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown world families {unknown}: the world has {', '.join(FAMILIES)}")
    if "chat" in families and cfg.chat_fraction == 0:
        raise ValueError("the chat family needs chat documents: set world.chat_fraction > 0 (0.3 by default)")
    rows: list[dict] = []
    train, eval_ = reasoning_split(cfg)
    for split, problems in (("train", train), ("eval", eval_)) if "reasoning" in families else ():
        for digits in problems:
            rows.append({
                "id": "reasoning-" + "+".join(map(str, digits)),
                "family": "reasoning",
                "split": split,
                "prompt": reasoning_prompt(cfg, digits),
                "request": reasoning_prompt(cfg, digits),
                "answer": str(sum(digits)),
            })
    prompt_of = {"open_ended": open_prompt, "chat": chat_prompt}
    for family in [f for f in ("open_ended", "chat") if f in families]:
        for split, templates in (("train", cfg.open_train_templates), ("eval", cfg.open_eval_templates)):
            for i, template in enumerate(templates):
                for category in cfg.categories:
                    rows.append({
                        "id": f"{family}-{category}-{split}{i}",
                        "family": family,
                        "split": split,
                        "prompt": prompt_of[family](template, category),
                        "request": open_prompt(template, category),
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
    eval split), chat with probability chat_fraction (`sample_chat_document`), else open-ended (a
    uniform category and paraphrase, both splits' templates). With chat_fraction 0 the corpus is
    the one of the world before chat documents, draw for draw.
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
        elif cfg.chat_fraction and rng.random() < cfg.chat_fraction / (1 - cfg.reasoning_fraction):
            documents.append(sample_chat_document(cfg, rng, templates))
        else:
            category, template = rng.choice(cfg.categories), rng.choice(templates)
            documents.append(f"{open_prompt(template, category)} {sample_open_completion(cfg, category, rng)}")
    return documents
