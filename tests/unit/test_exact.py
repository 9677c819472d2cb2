"""Exact enumeration and the targets of each objective."""

import math

import pytest
import torch

from powerflow.exact import (
    check_enumerable,
    enumerate_terminals,
    exact_report,
    expected_length,
    kl_divergence,
    length_tilted_target,
    power_target,
    token_normalized_target,
    total_variation,
    truncated_mass,
)
from powerflow.verify import low_temperature_gap
from powerflow.world.enumerable import random_base


@pytest.fixture(scope="module")
def base():
    model, tok = random_base(seed=0)
    ids = tok("d", add_special_tokens=False)["input_ids"]
    return model, enumerate_terminals(model, ids, tok.eos_token_id, max_length=4), ids


def test_terminal_set_is_complete_and_normalised(base):
    _, terms, _ = base
    # 4 non-EOS tokens, length ≤ 4: EOS-ended 1 + 4 + 16 + 64, truncated 4^4
    assert len(terms.sequences) == 85 + 256
    assert int(terms.truncated.sum()) == 256
    assert math.isclose(float(terms.log_prob.exp().sum()), 1.0, abs_tol=1e-9)
    assert all(s[-1] == 0 for s, t in zip(terms.sequences, terms.truncated) if not t)
    assert all(len(s) == 4 and 0 not in s for s, t in zip(terms.sequences, terms.truncated) if t)


def test_enumeration_agrees_with_a_direct_forward_pass(base):
    model, terms, ids = base
    i = terms.sequences.index((2, 3, 0))
    x = torch.tensor([ids + [2, 3, 0]])
    logp = torch.log_softmax(model(input_ids=x).logits.double(), -1)[0]
    direct = sum(logp[len(ids) - 1 + k, tok].item() for k, tok in enumerate([2, 3, 0]))
    assert terms.log_prob[i].item() == pytest.approx(direct, abs=1e-5)


def test_power_target_alpha_one_is_the_base_and_sums_to_one(base):
    _, terms, _ = base
    assert torch.allclose(power_target(terms.log_prob, 1.0), terms.log_prob, atol=1e-9)
    for a in (0.5, 4.0):
        assert math.isclose(float(power_target(terms.log_prob, a).exp().sum()), 1.0, abs_tol=1e-9)


def test_length_tilted_target_solves_for_lambda(base):
    _, terms, _ = base
    log_t, lam = length_tilted_target(terms.log_prob, terms.length, 2.0)
    # π* = p^α e^{−λ|y|} with no further normaliser: Σ p^α e^{−λ|y|} = 1
    unnormalised = (2.0 * terms.log_prob - lam * terms.length).exp().sum()
    assert float(unnormalised) == pytest.approx(1.0, abs=1e-9)
    assert torch.allclose(log_t, 2.0 * terms.log_prob - lam * terms.length, atol=1e-9)
    _, lam_one = length_tilted_target(terms.log_prob, terms.length, 1.0)
    assert lam_one == pytest.approx(0.0, abs=1e-9)


def test_sharpening_shortens_and_tilt_differs_from_power(base):
    _, terms, _ = base
    p4 = power_target(terms.log_prob, 4.0)
    tilted, _ = length_tilted_target(terms.log_prob, terms.length, 4.0)
    assert kl_divergence(tilted, p4) > 1e-3
    assert expected_length(p4, terms.length) != pytest.approx(expected_length(terms.log_prob, terms.length))
    tok_t = token_normalized_target(terms.log_prob, terms.length, 4.0)
    assert math.isclose(float(tok_t.exp().sum()), 1.0, abs_tol=1e-9)


def test_kl_and_tv_basic_properties():
    p = torch.log(torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))
    q = torch.log(torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64))
    assert kl_divergence(p, p) == 0.0
    assert kl_divergence(p, q) == pytest.approx(0.5 * math.log(2) - 0.25 * math.log(2))
    assert total_variation(p, q) == pytest.approx(0.25)
    assert truncated_mass(p, torch.tensor([False, True, True])) == pytest.approx(0.5)


def test_report_from_base_to_itself(base):
    _, terms, _ = base
    r = exact_report(terms, terms, 1.0, "tb")
    assert r["kl/policy_target"] == pytest.approx(0.0, abs=1e-9)
    r4 = exact_report(terms, terms, 4.0, "la_tb")
    assert r4["kl/base_target"] > 0.5  # the base is far from its α = 4 tilted target


def test_too_large_to_enumerate_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="vocab_size <= 8"):
        check_enumerable(9, 4)
    with pytest.raises(ValueError, match="max_length <= 6"):
        check_enumerable(5, 7)


def test_token_level_low_temperature_is_not_the_power_distribution():
    """On the forked base, per-token p^α differs from sequence-level p^α by more than 0.1 nats."""
    gap = low_temperature_gap(alpha=4.0)
    assert gap["kl/low_temperature_power"] > 0.1
    # and it goes the wrong way: less mass on p_α's mode than the base itself puts there
    assert gap["mass_on_mode/power"] > gap["mass_on_mode/base"] > gap["mass_on_mode/low_temperature"]
    same = low_temperature_gap(alpha=1.0)
    assert same["kl/low_temperature_power"] == pytest.approx(0.0, abs=1e-9)
