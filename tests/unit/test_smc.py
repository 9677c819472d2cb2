"""Power-SMC by hand: the schedule, the weights and their identity, ESS, systematic resampling, the
config, and its place in the registry and the report."""

import dataclasses
import math

import pytest
import torch

from powerflow.config.parse import section_from_dict
from powerflow.errors import ConfigError
from powerflow.sampling.smc import (
    SMCConfig,
    alpha_schedule,
    effective_sample_size,
    incremental_log_weights,
    path_log_weights,
    systematic_resample,
    tempering_log_weight,
)


def random_rows(length: int, vocab: int = 5, seed: int = 0) -> torch.Tensor:
    """[length, vocab] float64 next-token log-probabilities of a made-up model, one row per step."""
    generator = torch.Generator().manual_seed(seed)
    return torch.log_softmax(3 * torch.randn(length, vocab, generator=generator, dtype=torch.float64), dim=-1)


# ------------------------------------------------------------------------------ schedule


def test_schedule_without_ramp_is_alpha_from_the_first_token():
    assert alpha_schedule(4.0, 0, 3) == [1.0, 4.0, 4.0, 4.0]


def test_schedule_ramps_linearly_then_holds():
    # R = 2: α_1 = 1 + 3·1/2 = 2.5, α_2 = 4
    assert alpha_schedule(4.0, 2, 5) == [1.0, 2.5, 4.0, 4.0, 4.0, 4.0]
    assert alpha_schedule(0.5, 2, 3) == [1.0, 0.75, 0.5, 0.5]  # a flattening power ramps down


def test_schedule_ramp_is_clamped_to_the_horizon_and_ends_exactly_at_alpha():
    # R = 10 > T = 3: the ramp is over 3 tokens, so α_T = α
    assert alpha_schedule(4.0, 10, 3) == [1.0, 2.0, 3.0, 4.0]
    for alpha in (0.1, 0.3, 2.7, 4.0):
        assert alpha_schedule(alpha, 3, 3)[-1] == alpha  # exactly, not 1 + (α − 1)
    assert SMCConfig(max_new_tokens=4, ramp_tokens=9).schedule() == alpha_schedule(4.0, 9, 4)


# ------------------------------------------------------------------------------ weights


def test_tempering_weight_by_hand_and_zero_without_change():
    log_p = torch.tensor([-2.0, -0.5], dtype=torch.float64)
    assert tempering_log_weight(log_p, 1.0, 2.5).tolist() == pytest.approx([-3.0, -0.75])
    # no exponent change: exactly 0, even for a sequence of probability 0 (no 0 · −∞ = NaN)
    assert tempering_log_weight(torch.tensor([-math.inf]), 4.0, 4.0).tolist() == [0.0]


def test_incremental_weight_by_hand_unfinished_and_finished():
    row = torch.log(torch.tensor([[0.5, 0.25, 0.25]] * 2, dtype=torch.float64))
    prefix = torch.tensor([-1.0, -3.0], dtype=torch.float64)
    finished = torch.tensor([False, True])
    w = incremental_log_weights(row, prefix, finished, 2.0, 3.0)
    # unfinished: (3 − 2)·(−1) + log(0.5³ + 2·0.25³); finished: (3 − 2)·(−3), its row ignored
    assert w.tolist() == pytest.approx([-1.0 + math.log(0.125 + 2 * 0.015625), -3.0])


def test_incremental_weight_does_not_depend_on_the_token_drawn():
    # the variance-optimal proposal: p(v)^α / q(v) = Σ_u p(u)^α for every v
    row = random_rows(1)
    alpha = 4.0
    log_q = torch.log_softmax(alpha * row, dim=-1)[0]
    ratios = alpha * row[0] - log_q
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), atol=1e-12)
    w = incremental_log_weights(row, torch.zeros(1, dtype=torch.float64), torch.tensor([False]), alpha, alpha)
    assert float(w) == pytest.approx(float(ratios[0]), abs=1e-12)


@pytest.mark.parametrize("alpha", [4.0, 2.0, 0.5])
@pytest.mark.parametrize("ramp", [0, 2, 7])
@pytest.mark.parametrize("stop", [3, 4, 5])
def test_path_weights_telescope_to_the_power_target(alpha, ramp, stop):
    # a path of 3 tokens (finished: EOS, say) in a population that stopped at step `stop` of T = 5
    rows, tokens = random_rows(3), [2, 0, 4]
    alphas = alpha_schedule(alpha, ramp, 5)
    log_q, log_w = path_log_weights(rows, tokens, alphas, stop_step=stop)
    log_p = float(sum(rows[t, y] for t, y in enumerate(tokens)))
    assert log_q + log_w == pytest.approx(alpha * log_p, abs=1e-12)
    # the proposal is the schedule's temperature chain, whatever the stop
    expected_q = sum(float(torch.log_softmax(alphas[t + 1] * rows[t], -1)[y]) for t, y in enumerate(tokens))
    assert log_q == pytest.approx(expected_q, abs=1e-12)


def test_path_weights_truncated_path_and_alpha_one():
    rows, tokens = random_rows(4, seed=1), [1, 3, 3, 2]  # cut at T = 4 without EOS
    log_q, log_w = path_log_weights(rows, tokens, alpha_schedule(2.0, 2, 4))
    assert log_q + log_w == pytest.approx(2.0 * float(sum(rows[t, y] for t, y in enumerate(tokens))), abs=1e-12)
    # α = 1: the proposal is the model, every weight is 1
    log_q, log_w = path_log_weights(rows, tokens, alpha_schedule(1.0, 0, 4))
    assert log_w == pytest.approx(0.0, abs=1e-12)
    assert log_q == pytest.approx(float(sum(rows[t, y] for t, y in enumerate(tokens))), abs=1e-12)


def test_path_weights_refuse_an_inconsistent_path():
    rows = random_rows(3)
    with pytest.raises(ValueError, match="stop_step"):
        path_log_weights(rows, [1, 2, 0], alpha_schedule(4.0, 0, 5), stop_step=2)  # stopped before it finished
    with pytest.raises(ValueError, match="stop_step"):
        path_log_weights(rows, [1, 2, 0], alpha_schedule(4.0, 0, 2))  # longer than T
    with pytest.raises(ValueError, match="one row per token"):
        path_log_weights(rows[:2], [1, 2, 0], alpha_schedule(4.0, 0, 5))


# ------------------------------------------------------------------------------ ESS and resampling


def test_effective_sample_size_by_hand():
    log = lambda *w: torch.tensor(w, dtype=torch.float64).log()  # noqa: E731
    assert float(effective_sample_size(log(1, 1, 1, 1))) == pytest.approx(4.0)
    assert float(effective_sample_size(log(1, 0, 0, 0))) == pytest.approx(1.0)
    assert float(effective_sample_size(log(1, 1, 2))) == pytest.approx(16 / 6)  # (Σw)² / Σw²
    # scale-free, and batched over the leading axes
    rows = torch.stack([log(1, 1, 2) + 700.0, log(3, 3, 3)])
    assert effective_sample_size(rows).tolist() == pytest.approx([16 / 6, 3.0])


def test_systematic_resampling_by_hand():
    log_w = torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64).log()
    # positions (0.5 + k)/3 = 1/6, 1/2, 5/6 against the cumulative weights 0.5, 0.75, 1
    assert systematic_resample(log_w, torch.tensor([0.5])).tolist() == [[0, 1, 2]]
    # positions 0, 1/3, 2/3: the first particle twice, the second once, the third not at all
    assert systematic_resample(log_w, torch.tensor([0.0])).tolist() == [[0, 0, 1]]


def test_systematic_resampling_copies_floor_or_ceil_of_n_w_and_never_a_zero_weight():
    weights = torch.tensor([0.41, 0.0, 0.07, 0.22, 0.3, 0.0, 0.0, 0.0], dtype=torch.float64)
    n = len(weights)
    for u in torch.linspace(0, 1 - 1e-12, 101, dtype=torch.float64):
        ancestors = systematic_resample(weights.log().unsqueeze(0), u.reshape(1))[0]
        copies = torch.bincount(ancestors, minlength=n).double()
        assert bool(((copies - n * weights).abs() < 1.0 + 1e-9).all())
        assert bool((copies[weights == 0] == 0).all())
        assert bool((ancestors[1:] >= ancestors[:-1]).all())


def test_systematic_resampling_of_equal_weights_is_the_identity_per_system():
    log_w = torch.zeros(3, 5, dtype=torch.float64)
    # (u = 0 exactly puts the positions k/N on the cumulative weights, where rounding may pick either side)
    ancestors = systematic_resample(log_w, torch.tensor([1e-9, 0.4, 0.999999]))
    assert ancestors.tolist() == [list(range(5))] * 3


# ------------------------------------------------------------------------------ config


def test_config_defaults_and_help():
    cfg = SMCConfig()
    assert (cfg.alpha, cfg.n_particles, cfg.ess_threshold, cfg.ramp_tokens) == (4.0, 8, 0.5, 0)
    assert all(f.metadata.get("help") for f in dataclasses.fields(SMCConfig))
    assert cfg.systems_per_batch == 8  # 64 rows of 8 particles
    assert SMCConfig(n_particles=100, batch_size=64).systems_per_batch == 1  # at least one whole system


def test_config_loads_from_params_section():
    cfg = section_from_dict(SMCConfig, {"alpha": 2, "n_particles": 4, "ramp_tokens": 3}, "baselines.smc")
    assert (cfg.alpha, cfg.n_particles, cfg.ramp_tokens) == (2.0, 4, 3)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"alpha": 0.0}, "baselines.smc.alpha"),
        ({"alpha": math.nan}, "baselines.smc.alpha"),
        ({"max_new_tokens": 0}, "baselines.smc.max_new_tokens"),
        ({"n_particles": 0}, "baselines.smc.n_particles"),
        ({"ess_threshold": -0.1}, "baselines.smc.ess_threshold"),
        ({"ess_threshold": 1.5}, "baselines.smc.ess_threshold"),
        ({"ramp_tokens": -1}, "baselines.smc.ramp_tokens"),
        ({"batch_size": 0}, "baselines.smc.batch_size"),
    ],
)
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        SMCConfig(**kwargs)


@pytest.mark.parametrize(("kwargs", "key"), [({"smc_particles": 0}, "baselines.smc_particles"),
                                             ({"smc_ramp_tokens": -2}, "baselines.smc_ramp_tokens")])
def test_baselines_section_checks_the_smc_settings(kwargs, key):
    from powerflow.baselines.config import BaselinesConfig

    assert (BaselinesConfig().smc_particles, BaselinesConfig().smc_ramp_tokens) == (8, 0)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        BaselinesConfig(**kwargs)


# ------------------------------------------------------------------------------ registry and report


def test_smc_is_a_registered_inference_baseline_built_from_the_baselines_section():
    from types import SimpleNamespace

    from powerflow.baselines.config import BaselinesConfig
    from powerflow.registry import baseline, baseline_names
    from powerflow.sampling.smc import POWER_SMC

    assert "smc" in baseline_names("inference")
    assert baseline("smc") is POWER_SMC and POWER_SMC.kind == "inference"
    cfg = SimpleNamespace(baselines=BaselinesConfig(inference=("smc",)), evaluate=SimpleNamespace(batch_size=32))
    assert callable(POWER_SMC.build(cfg, 4.0))


def test_report_names_orders_and_compares_power_smc_like_mcmc():
    from powerflow.report.findings import method_findings
    from powerflow.report.tables import _methods_order
    from powerflow.report.values import method_label

    def run(name, method, accuracy, inference, **extra):
        metrics = {"reasoning/accuracy_mean": accuracy, "reasoning/accuracy_mean_se": 0.02,
                   "reasoning/inference_tokens_per_answer": inference}
        return {"name": name, "method": method, "metrics": metrics, **extra}

    runs = [run("smc-4.0", "smc", 0.55, 200.0, alpha=None, method_alpha=4.0),
            run("mcmc-4.0", "mcmc", 0.50, 220.0, alpha=None, method_alpha=4.0),
            run("alpha-4.0-la_tb-s0", "power_flow", 0.48, 11.0, alpha=4.0, objective="la_tb", seed=0)]
    assert method_label(runs[0]) == "Power-SMC α=4"
    assert [r["name"] for r in _methods_order(runs)] == ["alpha-4.0-la_tb-s0", "mcmc-4.0", "smc-4.0"]
    said = method_findings(runs)
    mcmc = next(f for f in said if "MCMC" in f)
    smc = next(f for f in said if "Power-SMC" in f)
    assert mcmc.startswith("Power-Flow matched MCMC power sampling at α=4: reasoning avg@n 0.480 vs 0.500")
    assert smc.startswith("Power-Flow did not match Power-SMC at α=4: reasoning avg@n 0.480 vs 0.550 (-0.070")
    assert "0.06× its inference tokens per answer (11.0 vs 200.0)" in smc
