"""The long-completion world family (world.max_operands, issue 20): teacher, tokenizer, oracle support
and the config checks, against brute force over the teacher's own choices."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from dataclasses import replace

import pytest

from powerflow.errors import ConfigError
from powerflow.world import oracle
from powerflow.world.config import WorldConfig
from powerflow.world.grading import grade
from powerflow.world.teacher import (correct_worked_completion, longest_completion_tokens,
                                     reasoning_prompt, reasoning_split, sample_reasoning_completion,
                                     teacher_corpus, world_prompt_rows, _offset)
from powerflow.world.tokenizer import build_tokenizer

LONG = WorldConfig(n_operands=2, max_operands=8, n_reasoning_train=40, n_reasoning_eval=12)


def test_long_prompts_label_their_operands():
    digits = (3, 5, 2, 9)
    assert reasoning_prompt(LONG, digits) == "Q d1 3 d2 5 d3 2 d4 9 ="
    assert correct_worked_completion(digits, LONG) == "work 3 + d2 5 = 8 , 8 + d3 2 = 10 , 10 + d4 9 = 19 , answer 19"
    assert oracle.prompt_digits(reasoning_prompt(LONG, digits)) == digits
    with pytest.raises(ValueError, match="not a world reasoning prompt"):
        oracle.prompt_digits("Q d2 3 d1 5 =")  # labels out of order


def test_the_default_family_is_unchanged():
    cfg = WorldConfig()
    assert reasoning_prompt(cfg, (3, 5, 2)) == "Q 3 + 5 + 2 ="
    assert correct_worked_completion((3, 5, 2)) == "work 3 + 5 = 8 , 8 + 2 = 10 , answer 10"
    assert "d1" not in build_tokenizer(cfg).get_vocab()


def test_long_splits_are_disjoint_and_span_the_lengths():
    train, eval_ = reasoning_split(LONG)
    assert len(train) == 40 and len(eval_) == 12 and not set(train) & set(eval_)
    lengths = Counter(len(p) for p in train + eval_)
    assert min(lengths) >= 2 and max(lengths) <= 8 and len(lengths) >= 5
    held_out = {reasoning_prompt(LONG, p) for p in eval_}
    corpus = teacher_corpus(LONG, 3000, 0)
    assert not any(doc.startswith(tuple(p + " " for p in held_out)) for doc in corpus)


def test_every_long_document_tokenizes_without_unknowns_and_fits_the_length_cap():
    tok = build_tokenizer(LONG)
    longest = 0
    for doc in teacher_corpus(LONG, 2000, 1):
        ids = tok(doc, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids, doc
        if not doc.startswith("Q "):
            continue
        prompt_len = len(tok(doc[: doc.index("=") + 1], add_special_tokens=False)["input_ids"])
        longest = max(longest, len(ids) - prompt_len + 1)  # + EOS
    assert longest == longest_completion_tokens(LONG)  # 2000 documents reach 8 operands' worked solution


def _teacher_probability(cfg: WorldConfig, digits, completion: str) -> float:
    """p_teacher(completion | digits) by enumerating the teacher's choices (guess offset, or per-step errors)."""
    total = 0.0
    for offset in cfg.guess_offsets:
        r = _offset(sum(digits), offset)
        if completion == f"guess answer {r}":
            total += cfg.p_guess / len(cfg.guess_offsets)
    n_steps = len(digits) - 1
    choices = [(0, 1 - cfg.step_error)] + [(o, cfg.step_error / len(cfg.step_error_offsets))
                                           for o in cfg.step_error_offsets]
    for combo in itertools.product(choices, repeat=n_steps):
        results, left = [], digits[0]
        for d, (o, _) in zip(digits[1:], combo):
            left = left + d if o == 0 else _offset(left + d, o)
            results.append(left)
        from powerflow.world.teacher import worked_completion
        if worked_completion(cfg, digits, results) == completion:
            total += (1 - cfg.p_guess) * math.prod(p for _, p in combo)
    return total


def test_long_support_holds_the_teachers_mass_up_to_paths_with_more_errors():
    """The support's teacher mass is 1 − P(more than oracle_max_errors wrong steps | work) · (1 − p_guess)."""
    cfg = replace(LONG, step_error=0.2)
    digits = (4, 7, 1, 8, 2)
    support = oracle.reasoning_support(cfg, digits)
    assert len({it.text for it in support}) == len(support)
    mass = sum(_teacher_probability(cfg, digits, it.text) for it in support)
    n, e = len(digits) - 1, cfg.step_error
    beyond = sum(math.comb(n, k) * e**k * (1 - e) ** (n - k) for k in range(cfg.oracle_max_errors + 1, n + 1))
    assert mass == pytest.approx(1 - (1 - cfg.p_guess) * beyond, abs=1e-9)
    rng = random.Random(0)
    texts = {it.text: it for it in support}
    for _ in range(300):
        c = sample_reasoning_completion(cfg, digits, rng)
        if c in texts:
            assert texts[c].correct == grade("reasoning", str(sum(digits)), c).correct


def test_oracle_max_errors_bounds_the_number_of_paths():
    digits = (1,) * 8  # 7 steps
    for k, expected in [(0, 1), (1, 1 + 7 * 2), (2, 1 + 7 * 2 + 21 * 4)]:
        assert len(oracle.worked_paths(replace(LONG, oracle_max_errors=k), digits)) == expected


def test_long_rows_grade_their_own_correct_solution():
    for row in world_prompt_rows(LONG):
        if row["family"] == "reasoning":
            digits = oracle.prompt_digits(row["prompt"])
            assert grade("reasoning", row["answer"], correct_worked_completion(digits, LONG)).correct


def test_bad_max_operands_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="world.max_operands=13"):
        WorldConfig(max_operands=13)
    with pytest.raises(ConfigError, match="world.max_operands=3"):
        WorldConfig(n_operands=3, max_operands=3)


def test_a_length_cap_below_the_longest_solution_is_refused(tmp_path):
    import yaml

    from powerflow.config import load_pipeline_config

    params = yaml.safe_load(open("params.yaml"))
    params["world"]["max_operands"] = 8
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match="train.max_completion_length=24 cuts the long-completion world"):
        load_pipeline_config(tmp_path / "params.yaml")
    need = longest_completion_tokens(replace(WorldConfig(), max_operands=8))
    params["train"]["max_completion_length"] = need
    params.setdefault("evaluate", {})["max_new_tokens"] = need
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert load_pipeline_config(tmp_path / "params.yaml").world.max_operands == 8
