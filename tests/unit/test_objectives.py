"""Mathematical properties of the residuals, weights, losses and log Z estimators."""

import math

import pytest
import torch

from powerflow.objectives import (
    LogZHead,
    completion_length,
    importance_weight,
    leave_one_out_log_z,
    length_aware_residual,
    mean_pool,
    power_flow_loss,
    residual_fn,
    sequence_log_prob,
    token_normalized_residual,
    trajectory_balance_residual,
    weighted_squared_loss,
)

ALPHA = 2.5


def _batch():
    log_p = torch.tensor([-1.0, -3.0, -0.5, -6.0], dtype=torch.float64)
    length = torch.tensor([1.0, 3.0, 2.0, 4.0], dtype=torch.float64)
    psi = torch.tensor([0.0, -0.5, 0.0, 0.0], dtype=torch.float64)
    return log_p, length, psi


def test_residuals_match_the_equations_by_hand():
    log_p, length, psi = _batch()
    log_pi = torch.tensor([-2.0, -1.0, -1.5, -3.0], dtype=torch.float64)
    log_z = torch.full_like(log_pi, 0.7)
    la = length_aware_residual(log_z, log_pi, log_p, length, ALPHA, psi)
    tb = trajectory_balance_residual(log_z, log_pi, log_p, length, ALPHA, psi)
    tt = token_normalized_residual(log_z, log_pi, log_p, length, ALPHA, psi)
    # second sample: |y| = 3, log pi = -1, log p = -3, psi = -0.5
    assert la[1].item() == pytest.approx(0.7 + (-1 / 3) - ALPHA * (-3 / 3 - 0.5))
    assert tb[1].item() == pytest.approx(0.7 + (-1) - ALPHA * (-3 - 0.5))
    assert tt[1].item() == pytest.approx(0.7 + (-1) - ALPHA * (-3 / 3 - 0.5))


@pytest.mark.parametrize("objective", ["la_tb", "tb", "tb_token"])
def test_zero_residual_gives_zero_loss_and_zero_gradient(objective):
    """Put π exactly at the objective's fixed point: loss 0, ∂L/∂log π = 0, ∂L/∂log Z = 0."""
    log_p, length, psi = _batch()
    log_z_value = 0.3
    if objective == "la_tb":
        fixed = ALPHA * log_p + ALPHA * length * psi - log_z_value * length
    elif objective == "tb":
        fixed = ALPHA * (log_p + psi) - log_z_value
    else:
        fixed = ALPHA * (log_p / length + psi) - log_z_value
    log_pi = fixed.clone().requires_grad_(True)
    log_z = torch.full_like(log_p, log_z_value).requires_grad_(True)
    terms = power_flow_loss(objective=objective, alpha=ALPHA, log_z=log_z, log_pi=log_pi,
                            log_pi_old=log_pi.detach(), log_p_base=log_p, length=length, psi=psi,
                            epsilon_low=0.2, epsilon_high=0.28)
    terms.loss.backward()
    assert terms.loss.item() == pytest.approx(0.0, abs=1e-12)
    assert torch.all(log_pi.grad.abs() < 1e-12)
    assert torch.all(log_z.grad.abs() < 1e-12)


def test_off_fixed_point_gradient_is_twice_weighted_residual_over_batch():
    log_p, length, _ = _batch()
    log_pi = torch.tensor([-2.0, -1.0, -1.5, -3.0], dtype=torch.float64, requires_grad=True)
    log_z = torch.zeros(4, dtype=torch.float64)
    residual = trajectory_balance_residual(log_z, log_pi, log_p, length, ALPHA)
    loss = weighted_squared_loss(residual)
    loss.backward()
    assert torch.allclose(log_pi.grad, 2 * residual.detach() / 4)


def test_la_tb_fixed_point_is_length_tilted_power():
    """δ = 0 ⇔ log π = α log p − λ|y| (ψ = 0), for any λ = log Z'."""
    log_p, length, _ = _batch()
    lam = -0.8
    log_pi = ALPHA * log_p - lam * length
    res = length_aware_residual(torch.full_like(log_p, lam), log_pi, log_p, length, ALPHA)
    assert torch.allclose(res, torch.zeros_like(res))


def test_importance_weight_is_clipped_and_carries_no_gradient():
    log_pi = torch.tensor([0.0, math.log(2.0), math.log(0.5), math.log(1.1)], requires_grad=True)
    w, clipped = importance_weight(log_pi, torch.zeros(4), epsilon_low=0.2, epsilon_high=0.28)
    assert torch.allclose(w, torch.tensor([1.0, 1.28, 0.8, 1.1]))
    assert clipped.tolist() == [False, True, True, False]
    assert not w.requires_grad


def test_importance_weight_scales_but_does_not_move_the_fixed_point():
    log_p, length, _ = _batch()
    log_pi = (ALPHA * log_p).requires_grad_(True)
    old = log_pi.detach() - 0.1  # ratio e^0.1 ≠ 1
    terms = power_flow_loss(objective="tb", alpha=ALPHA, log_z=torch.zeros(4, dtype=torch.float64), log_pi=log_pi,
                            log_pi_old=old, log_p_base=log_p, length=length, psi=None,
                            epsilon_low=0.2, epsilon_high=0.28)
    terms.loss.backward()
    assert terms.weight[0].item() == pytest.approx(math.exp(0.1))
    assert torch.all(log_pi.grad.abs() < 1e-12)


def test_leave_one_out_log_z_by_hand_and_exact_at_fixed_point():
    r = torch.tensor([1.0, 2.0, 4.0, -1.0, -1.0, -4.0])
    got = leave_one_out_log_z(r, group_size=3)
    assert torch.allclose(got, -torch.tensor([3.0, 2.5, 1.5, -2.5, -2.5, -1.0]))
    constant = torch.full((6,), -0.37)
    assert torch.allclose(leave_one_out_log_z(constant, 3) + constant, torch.zeros(6))
    with pytest.raises(ValueError, match="num_generations >= 2"):
        leave_one_out_log_z(r, group_size=1)


def test_sequence_log_prob_sums_in_fp32_and_ignores_masked_positions():
    logps = torch.tensor([[-1.0, -2.0, float("nan")], [-0.5, -0.5, -0.5]], dtype=torch.bfloat16)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    out = sequence_log_prob(logps, mask)
    assert out.dtype == torch.float32
    assert out.tolist() == [-3.0, -1.5]
    assert completion_length(mask).tolist() == [2.0, 3.0]


def test_logz_head_starts_at_zero_and_is_a_function_of_features():
    torch.manual_seed(0)
    head = LogZHead(hidden_size=8, width=16)
    feats = torch.randn(5, 8)
    assert torch.equal(head(feats), torch.zeros(5))
    head.out.bias.data.fill_(1.5)
    assert torch.allclose(head(feats), torch.full((5,), 1.5))


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert mean_pool(hidden, torch.tensor([[1, 1, 0]])).item() == 2.0


def test_unknown_objective_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="tb, la_tb, tb_token"):
        residual_fn("subtb")


def test_huber_equals_squared_inside_delta_and_is_linear_outside():
    from powerflow.objectives import huber_loss

    inside = torch.tensor([0.3, -0.9, 0.0], dtype=torch.float64)
    assert huber_loss(inside, 1.0).item() == pytest.approx(weighted_squared_loss(inside).item())
    outside = torch.tensor([3.0, -5.0], dtype=torch.float64)
    assert huber_loss(outside, 1.0).item() == pytest.approx(((2 * 3 - 1) + (2 * 5 - 1)) / 2)


def test_huber_gradient_is_twice_the_clipped_residual_and_zero_at_the_fixed_point():
    from powerflow.objectives import huber_loss

    delta = torch.tensor([0.5, -4.0, 30.0, 0.0], dtype=torch.float64, requires_grad=True)
    huber_loss(delta, 2.0).backward()
    assert delta.grad.tolist() == pytest.approx([2 * 0.5 / 4, 2 * -2.0 / 4, 2 * 2.0 / 4, 0.0])
    zero = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    loss = huber_loss(zero, 1.0)
    loss.backward()
    assert loss.item() == 0.0 and zero.grad.abs().max().item() == 0.0


def test_power_flow_loss_with_huber_delta_bounds_each_samples_pull():
    log_p, length, psi = _batch()
    log_pi = torch.tensor([-1.0, -2.0, -1.5, -0.1], dtype=torch.float64, requires_grad=True)
    terms = power_flow_loss(objective="tb", alpha=4.0, log_z=torch.zeros(4, dtype=torch.float64), log_pi=log_pi,
                            log_pi_old=log_pi.detach(), log_p_base=log_p, length=length, psi=None,
                            epsilon_low=0.2, epsilon_high=0.2, huber_delta=1.0)
    terms.loss.backward()
    assert log_pi.grad.abs().max().item() <= 2 * 1.0 / 4 + 1e-12  # |∂L/∂log π| ≤ 2κ / B
    with pytest.raises(ValueError, match="huber delta must be > 0"):
        from powerflow.objectives import huber_loss

        huber_loss(log_pi, 0.0)
