"""MCMC power sampling: the acceptance ratio, the token log-probs and the config, by hand."""

import dataclasses
import math

import pytest
import torch

from powerflow.config.parse import section_from_dict
from powerflow.errors import ConfigError
from powerflow.sampling.mcmc import MCMCConfig, accept, log_acceptance, token_log_probs


def test_log_acceptance_by_hand_equal_lengths():
    # α[log p(x') − log p(x)] + log q(x) − log q(x') = 4·(−1 − (−2)) + (−3) − (−0.5) = 1.5
    assert log_acceptance(4.0, -1.0, -2.0, -0.5, -3.0, 5, 5) == pytest.approx(1.5)
    assert log_acceptance(4.0, -1.0, -2.0, -0.5, -3.0, 5, 5, length_correction=False) == pytest.approx(1.5)


def test_log_acceptance_length_term_is_the_position_hastings_ratio():
    # |x| = 6 old, |x'| = 4 new: t was uniform over 6 positions, the reverse move picks it among 4.
    with_term = log_acceptance(4.0, -1.0, -2.0, -0.5, -3.0, len_new=4, len_old=6)
    assert with_term == pytest.approx(1.5 + math.log(6 / 4))
    without = log_acceptance(4.0, -1.0, -2.0, -0.5, -3.0, len_new=4, len_old=6, length_correction=False)
    assert without == pytest.approx(1.5)


def test_alpha_one_proposal_is_target_so_every_equal_length_move_is_accepted():
    # α = 1: q = p token by token, so log q = log p on both suffixes and log A = 0 exactly.
    for logp_new, logp_old in [(-0.3, -7.0), (-9.0, -0.1), (-2.5, -2.5)]:
        log_a = log_acceptance(1.0, logp_new, logp_old, logp_new, logp_old, 3, 3)
        assert log_a == pytest.approx(0.0, abs=1e-12)  # 0 up to float rounding
        assert all(accept(log_a, u) for u in (0.0, 0.5, 0.999))
    # with unequal lengths only the position term is left
    assert log_acceptance(1.0, -0.3, -7.0, -0.3, -7.0, 2, 3) == pytest.approx(math.log(3 / 2))


def test_log_acceptance_prefers_likelier_suffix_more_than_the_proposal_does():
    # p(x'_s) = 2 p(x_s), q(x'_s) = 2 q(x_s): at α = 4 the target ratio 2^4 beats the proposal's 2.
    log_a = log_acceptance(4.0, math.log(0.2), math.log(0.1), math.log(0.4), math.log(0.2), 3, 3)
    assert log_a == pytest.approx(3 * math.log(2))


def test_accept_is_log_u_below_log_a():
    assert accept(math.log(0.6), 0.5)
    assert not accept(math.log(0.4), 0.5)
    assert accept(0.0, 0.0) and accept(2.0, 0.999)
    assert accept(-50.0, 0.0)  # u = 0: log u = −∞ is below any finite log A
    assert not accept(-math.inf, 0.0)  # a move the target gives no mass is never taken
    assert not accept(math.nan, 0.1) and not accept(math.nan, 0.0)


def test_token_log_probs_by_hand_on_three_logits():
    logits = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    tokens = torch.tensor([2, 0])
    log_p, log_q = token_log_probs(logits, tokens, alpha=2.0)
    z1 = math.log(math.e ** 1 + math.e ** 2 + math.e ** 3)
    z2 = math.log(math.e ** 2 + math.e ** 4 + math.e ** 6)  # α · logits = [2, 4, 6]: temperature 1/2
    assert log_p.tolist() == pytest.approx([3.0 - z1, 1.0 - z1], abs=1e-6)
    assert log_q.tolist() == pytest.approx([6.0 - z2, 2.0 - z2], abs=1e-6)
    assert log_p.dtype == torch.float32 and log_p.shape == (2,)


def test_token_log_probs_alpha_one_equal_and_half_precision_logits_in_float32():
    logits = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.bfloat16)
    log_p, log_q = token_log_probs(logits, torch.tensor([1]), alpha=1.0)
    assert torch.equal(log_p, log_q)
    assert log_p.dtype == torch.float32


def test_config_defaults_are_the_published_ones():
    cfg = MCMCConfig()
    assert (cfg.alpha, cfg.max_new_tokens, cfg.n_blocks, cfg.n_mcmc) == (4.0, 3072, 16, 10)
    assert cfg.length_correction is True
    assert cfg.block_size == 192
    assert cfg.block_ends()[:2] == [192, 384] and cfg.block_ends()[-1] == 3072 and len(cfg.block_ends()) == 16
    assert all(f.metadata.get("help") for f in dataclasses.fields(MCMCConfig))


def test_block_size_rounds_up_and_last_block_is_shorter():
    assert MCMCConfig(max_new_tokens=10, n_blocks=4).block_ends() == [3, 6, 9, 10]
    # B = ceil(10 / 6) = 2: five blocks reach T_max, the sixth would add nothing
    assert MCMCConfig(max_new_tokens=10, n_blocks=6).block_ends() == [2, 4, 6, 8, 10]
    assert MCMCConfig(max_new_tokens=3, n_blocks=1).block_ends() == [3]


def test_config_loads_from_params_section():
    cfg = section_from_dict(MCMCConfig, {"alpha": 2, "n_mcmc": 0, "length_correction": False}, "baselines.mcmc")
    assert cfg.alpha == 2.0 and cfg.n_mcmc == 0 and cfg.length_correction is False


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"alpha": 0.0}, "baselines.mcmc.alpha"),
        ({"alpha": math.inf}, "baselines.mcmc.alpha"),
        ({"max_new_tokens": 0}, "baselines.mcmc.max_new_tokens"),
        ({"n_blocks": 0}, "baselines.mcmc.n_blocks"),
        ({"max_new_tokens": 8, "n_blocks": 9}, "baselines.mcmc.n_blocks"),
        ({"n_mcmc": -1}, "baselines.mcmc.n_mcmc"),
        ({"batch_size": 0}, "baselines.mcmc.batch_size"),
    ],
)
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        MCMCConfig(**kwargs)
