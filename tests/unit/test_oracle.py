"""The world oracle (powerflow.world.oracle) against brute force.

Where the support is small enough, every quantity is recomputed by enumeration: the completions
of a tiny causal LM (vocabulary 5, length ≤ 3, every sequence listed by exact.enumerate_terminals)
and the teacher's own discrete choices for a two-operand world.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from powerflow import exact
from powerflow.world import enumerable, oracle
from powerflow.world.config import WorldConfig
from powerflow.world.grading import grade
from powerflow.world.teacher import sample_reasoning_completion

MAX_LEN = 3


@pytest.fixture(scope="module")
def tiny():
    model, tok = enumerable.random_base(seed=3, n_symbols=4, init_scale=0.3)
    prompt = "d"
    terminals = exact.enumerate_terminals(model, tok(prompt)["input_ids"], tok.eos_token_id, MAX_LEN)
    return tok, model, prompt, terminals


def _text(tok, seq):
    return " ".join(tok.convert_ids_to_tokens(list(seq[:-1])))


def test_completion_log_probs_equal_enumeration(tiny):
    tok, model, prompt, terminals = tiny
    ended = [(s, lp) for s, lp, t in zip(terminals.sequences, terminals.log_prob.tolist(), terminals.truncated)
             if not t]
    texts = [_text(tok, s) for s, _ in ended]
    log_p, length = oracle.completion_log_probs(model, tok, prompt, texts)
    torch.testing.assert_close(log_p, torch.tensor([lp for _, lp in ended], dtype=torch.float64), atol=1e-5, rtol=0)
    assert length.tolist() == [float(len(s)) for s, _ in ended]


def _support(tok, model, prompt, terminals, correct_if):
    ended = [s for s, t in zip(terminals.sequences, terminals.truncated) if not t]
    items = [oracle.SupportItem(_text(tok, s), correct_if(s), True, "work", "") for s in ended]
    log_p, length = oracle.completion_log_probs(model, tok, prompt, [it.text for it in items])
    row = {"family": "reasoning", "prompt": prompt}
    return oracle.PromptSupport(row=row, items=items, log_p_base=log_p, length=length), ended


@pytest.mark.parametrize("alpha", [0.5, 2.0, 4.0])
def test_power_target_accuracy_and_bound_match_brute_force(tiny, alpha):
    tok, model, prompt, terminals = tiny
    correct = lambda s: s[0] == 1  # noqa: E731 - "correct" = starts with the letter a
    support, ended = _support(tok, model, prompt, terminals, correct)
    # brute force: p^α over every EOS-terminated sequence, renormalised there; bound = truncated mass
    by_seq = dict(zip(terminals.sequences, terminals.log_prob.tolist()))
    weights = {s: math.exp(alpha * by_seq[s]) for s in ended}
    expected = sum(w for s, w in weights.items() if correct(s)) / sum(weights.values())
    metrics = oracle.oracle_metrics([support], alpha, "tb")
    assert metrics["reasoning/accuracy"] == pytest.approx(expected, abs=1e-6)
    assert metrics["reasoning/support_bound"] == pytest.approx(exact.truncated_mass(terminals.log_prob,
                                                                                     terminals.truncated), abs=1e-6)
    assert 0.0 < metrics["reasoning/accuracy"] < 1.0


def test_tilted_target_matches_exact_module(tiny):
    tok, model, prompt, terminals = tiny
    support, _ = _support(tok, model, prompt, terminals, lambda s: True)
    log_t, lam = oracle.tilted_on_support(support.log_p_base, support.length, 2.0)
    ref, ref_lam = exact.length_tilted_target(support.log_p_base, support.length, 2.0)
    torch.testing.assert_close(log_t, ref)
    assert lam == pytest.approx(ref_lam)
    assert float(log_t.exp().sum()) == pytest.approx(1.0, abs=1e-9)


def test_policy_distance_is_zero_for_the_target_and_positive_for_the_base(tiny):
    tok, model, prompt, terminals = tiny
    support, _ = _support(tok, model, prompt, terminals, lambda s: s[0] == 1)
    at_one = oracle.policy_distance([support], model, tok, 1.0, "tb")
    # α = 1: the target is the base renormalised on S, so KL = −log(mass on S) = −log(1 − bound)
    assert at_one["reasoning/kl_target"] == pytest.approx(-math.log(1.0 - support.bound), abs=1e-6)
    assert oracle.policy_distance([support], model, tok, 4.0, "tb")["reasoning/kl_target"] > at_one[
        "reasoning/kl_target"] + 0.05


def test_reasoning_support_holds_every_teacher_completion():
    cfg = WorldConfig(n_operands=2, n_reasoning_train=10, n_reasoning_eval=5, step_error=0.3)
    rng = random.Random(0)
    for digits in [(3, 5), (0, 0), (9, 9)]:
        support = oracle.reasoning_support(cfg, digits)
        texts = {it.text: it for it in support}
        assert len(texts) == len(support)  # no completion listed twice
        for _ in range(2000):
            completion = sample_reasoning_completion(cfg, digits, rng)
            assert completion in texts, completion
            graded = grade("reasoning", str(sum(digits)), completion)
            assert texts[completion].correct == graded.correct


def test_worked_paths_enumerate_every_offset_choice():
    cfg = WorldConfig()  # three operands, offsets ±1
    paths = oracle.worked_paths(cfg, (3, 5, 2))
    assert (8, 10) in paths and (9, 11) in paths and (7, 8) in paths
    assert len(paths) == len(set(paths)) == 9  # 3 × 3 choices, all distinct away from 0
    assert oracle.worked_paths(cfg, (0, 0, 0)) == sorted(set(oracle.worked_paths(cfg, (0, 0, 0))))


def test_prompt_digits_refuses_other_prompts():
    assert oracle.prompt_digits("Q 3 + 5 + 2 =") == (3, 5, 2)
    with pytest.raises(ValueError, match="not a world reasoning prompt"):
        oracle.prompt_digits("name a fruit :")


def test_expected_coverage_matches_enumeration_of_samples():
    probs = [0.5, 0.3, 0.2]
    n = 3
    brute = 0.0
    for draw in itertools.product(range(3), repeat=n):
        weight = math.prod(probs[i] for i in draw)
        brute += weight * len(set(draw)) / 3
    assert oracle.expected_coverage(probs, n) == pytest.approx(brute)


def test_kl_uniform_of_uniform_is_zero_and_of_point_mass_is_log_v():
    assert oracle.kl_uniform_of([0.25] * 4) == pytest.approx(0.0)
    assert oracle.kl_uniform_of([1.0, 0.0, 0.0, 0.0]) == pytest.approx(math.log(4))
    # the sampled estimate is biased upward at small n and approaches the population value as n grows
    probs, valid = [0.4, 0.3, 0.2, 0.1], [True] * 4
    small = oracle.sampled_kl_uniform(probs, valid, 8, draws=300)
    large = oracle.sampled_kl_uniform(probs, valid, 2000, draws=50)
    assert small > large
    assert large == pytest.approx(oracle.kl_uniform_of(probs), abs=0.01)


@pytest.mark.parametrize("alpha", [1.0, 0.75, 0.5])
def test_off_support_bound_is_exact_at_alpha_one_and_below_the_brute_force_mass_under_one(tiny, alpha):
    """Z_S and B of off_support_power_lower_bound against every terminal sequence (EOS-ended or truncated
    at MAX_LEN), with S = the ended sequences that start with one letter: at α = 1, B is exactly the
    mass outside S; below 1, Z_S is exact and B ≤ Σ_{y∉S} p^α, and the true target's accuracy is at most
    true_target_bounds' accuracy_max."""
    tok, model, prompt, terminals = tiny
    correct = lambda s: s[-1] == tok.eos_token_id and s[0] == 1  # noqa: E731
    by_seq = dict(zip(terminals.sequences, terminals.log_prob.tolist()))
    in_s = [s for s in terminals.sequences if s[-1] == tok.eos_token_id and s[0] in (1, 2)]
    z_s, bound = oracle.off_support_power_lower_bound(model, tok, prompt, [_text(tok, s) for s in in_s], alpha)
    outside = sum(math.exp(alpha * lp) for s, lp in by_seq.items() if s not in set(in_s))
    assert z_s == pytest.approx(sum(math.exp(alpha * by_seq[s]) for s in in_s), rel=1e-6)
    if alpha == 1.0:
        assert z_s + bound == pytest.approx(1.0, abs=1e-9) and bound == pytest.approx(outside, rel=1e-6)
    else:
        assert 0.0 < bound < outside
    items = [oracle.SupportItem(_text(tok, s), correct(s), True, "work", "") for s in in_s]
    log_p, length = oracle.completion_log_probs(model, tok, prompt, [it.text for it in items])
    support = oracle.PromptSupport(row={"family": "reasoning", "prompt": prompt}, items=items, log_p_base=log_p,
                                   length=length)
    bounds = oracle.true_target_bounds([support], model, tok, alpha)
    true_accuracy = sum(math.exp(alpha * by_seq[s]) for s in in_s if correct(s)) / (z_s + outside)
    assert true_accuracy <= bounds["reasoning/accuracy_max"] * (1 + 1e-5)  # equal at α = 1 (float32 model)
    assert bounds["reasoning/support_share_max"] == pytest.approx(z_s / (z_s + bound))
    with pytest.raises(ValueError, match="alpha <= 1"):
        oracle.off_support_power_lower_bound(model, tok, prompt, [_text(tok, in_s[0])], 2.0)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_sampled_true_target_matches_brute_force_over_every_sequence(tiny, alpha):
    """oracle.sampled_true_target with the base as the proposal, against p^α normalised over every terminal
    sequence of the tiny LM (EOS-ended or truncated): S's share of it and its accuracy (S's items that start
    with one letter are correct; nothing outside S has an 'answer N', so the grader marks it wrong)."""
    tok, model, prompt, terminals = tiny
    by_seq = dict(zip(terminals.sequences, terminals.log_prob.tolist()))
    in_s = [s for s in terminals.sequences if s[-1] == tok.eos_token_id and s[0] in (1, 2)]
    items = [oracle.SupportItem(_text(tok, s), s[0] == 1, True, "work", "") for s in in_s]
    log_p, length = oracle.completion_log_probs(model, tok, prompt, [it.text for it in items])
    support = oracle.PromptSupport(row={"family": "reasoning", "prompt": prompt, "answer": "0"}, items=items,
                                   log_p_base=log_p, length=length)
    z_all = sum(math.exp(alpha * lp) for lp in by_seq.values())
    z_s = sum(math.exp(alpha * by_seq[s]) for s in in_s)
    true_accuracy = sum(math.exp(alpha * by_seq[s]) for s in in_s if s[0] == 1) / z_all
    est = oracle.sampled_true_target(support, model, model, tok, alpha, n=3000, max_new_tokens=MAX_LEN, seed=0)
    assert est["share_s"] == pytest.approx(z_s / z_all, rel=0.05)
    assert est["accuracy"] == pytest.approx(true_accuracy, rel=0.05)
    assert est["policy_share_s"] == pytest.approx(sum(math.exp(by_seq[s]) for s in in_s), abs=0.03)
    assert est["share_s"] <= est["share_s_max"] + 1e-9
    if alpha == 1.0:  # the bound is exact at α = 1, and π = p_base has KL 0 to it
        assert est["share_s"] == pytest.approx(z_s, rel=1e-5) and abs(est["kl_target"]) < 0.02
