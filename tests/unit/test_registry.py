"""The objective and baseline registries: every built-in resolves, under its own name and kind."""

from __future__ import annotations

import pytest
import torch

from powerflow import registry
from powerflow.errors import ConfigError


def test_every_builtin_objective_resolves_and_its_residual_vanishes_at_its_fixed_point():
    log_p = torch.log_softmax(torch.tensor([0.3, -1.0, 2.0, 0.1], dtype=torch.float64), dim=0)
    length = torch.tensor([1.0, 2.0, 3.0, 2.0], dtype=torch.float64)
    for name in ("tb", "la_tb", "tb_token"):
        objective = registry.objective(name)
        assert objective.name == name and name in registry.objective_names()
        target, lam = objective.fixed_point(log_p, length, 2.0)
        assert torch.isclose(target.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
        assert objective.exact_power == (name == registry.EXACT_POWER)
        if name == "tb":  # δ = log Z + log π* − α log p = 0 with log Z = log Σ p^α
            log_z = torch.logsumexp(2.0 * log_p, dim=0).expand(4)
            residual = objective.residual(log_z, target, log_p, length, 2.0)
            assert torch.allclose(residual, torch.zeros(4, dtype=torch.float64))


def test_every_builtin_baseline_resolves_under_its_name_and_kind():
    for kind in ("trained", "inference", "always"):
        for name in registry.baseline_names(kind):
            baseline = registry.baseline(name)
            assert (baseline.name, baseline.kind) == (name, kind) and callable(baseline.build)
    assert registry.baseline_names("trained") == ("grpo", "empo")
    assert registry.baseline_names("always") == ("verbalized", "high_temperature")


def test_an_unknown_name_is_one_error_naming_the_choices():
    with pytest.raises(ConfigError, match="tb, la_tb, tb_token"):
        registry.objective("dpo")
    with pytest.raises(ConfigError, match="grpo, empo, low_temperature, mcmc"):
        registry.baseline("best_of_n")
