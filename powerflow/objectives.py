"""The α-power GFlowNet objectives: residuals, importance weights, losses and log Z estimators.

Notation (docs/design.md section 2): q prompt, y a completion ending in EOS or truncated at the maximum
length, |y| its length in tokens (the EOS counts), log π_θ(y|q) and log p_base(y|q) sums of
per-token log-probabilities in fp32, α > 0 the power, ψ(y) an optional penalty.

Every function here is pure torch on per-sequence tensors of shape [B]; the trainer gathers the
inputs. Each objective is split, as in torchgfn, into a *residual* (the quantity driven to zero),
a *weight* and a *reduction*, so the tests can state properties of each part separately.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from powerflow.exact import length_tilted_target, power_target, token_normalized_target
from powerflow.registry import objective


def sequence_log_prob(per_token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log π(y|q) = Σ_t mask_t · log π(y_t | y_<t, q), summed in fp32.

    per_token_logps, mask: [B, T] -> [B]. Positions after EOS carry mask 0 (and may hold any finite
    or non-finite filler; they are zeroed before the sum, so a NaN there cannot leak in).
    """
    logps = per_token_logps.float()
    return torch.where(mask.bool(), logps, torch.zeros_like(logps)).sum(dim=-1)


def completion_length(mask: torch.Tensor) -> torch.Tensor:
    """|y| = Σ_t mask_t, as float [B]; a completion that ends in EOS counts its EOS token."""
    return mask.float().sum(dim=-1)


def length_aware_residual(
    log_z: torch.Tensor,
    log_pi: torch.Tensor,
    log_p_base: torch.Tensor,
    length: torch.Tensor,
    alpha: float,
    psi: torch.Tensor | None = None,
) -> torch.Tensor:
    """LA-TB residual (an alternative to exact TB; its target is the length-tilted π*_λ).

        δ(y) = log Z'(q) + (1/|y|) log π_θ(y|q) − α · [ (1/|y|) log p_base(y|q) + ψ(y) ]

    Fixed point (δ = 0 for every y): log π*(y|q) = α log p_base(y|q) + α|y|ψ(y) − λ_q |y| with
    λ_q = log Z'(q), i.e. π* ∝ p_base^α · exp(−λ_q |y|): the power distribution tilted in length,
    λ_q being the unique value that makes π* sum to one (see `exact.length_tilted_target`).
    """
    psi = torch.zeros_like(log_pi) if psi is None else psi
    return log_z + log_pi / length - alpha * (log_p_base / length + psi)


def trajectory_balance_residual(
    log_z: torch.Tensor,
    log_pi: torch.Tensor,
    log_p_base: torch.Tensor,
    length: torch.Tensor,
    alpha: float,
    psi: torch.Tensor | None = None,
) -> torch.Tensor:
    """TB residual, exact (Malkin et al. 2022, eq. 14, with log R(y) = α[log p_base(y|q) + ψ(y)]).

        δ(y) = log Z(q) + log π_θ(y|q) − α · [ log p_base(y|q) + ψ(y) ]

    Fixed point: π*(y|q) = p_base(y|q)^α e^{αψ(y)} / Z(q); with ψ = 0 exactly p_α. `length` is
    accepted for a uniform signature and unused.
    """
    del length
    psi = torch.zeros_like(log_pi) if psi is None else psi
    return log_z + log_pi - alpha * (log_p_base + psi)


def token_normalized_residual(
    log_z: torch.Tensor,
    log_pi: torch.Tensor,
    log_p_base: torch.Tensor,
    length: torch.Tensor,
    alpha: float,
    psi: torch.Tensor | None = None,
) -> torch.Tensor:
    """TB-token residual, kept for the ablation table: only log p_base is divided by |y|.

        δ(y) = log Z(q) + log π_θ(y|q) − α · [ (1/|y|) log p_base(y|q) + ψ(y) ]

    Fixed point: π*(y|q) ∝ p_base(y|q)^{α/|y|} e^{αψ(y)}: a per-token-mean reward, which
    over-weights long sequences relative to p_α.
    """
    psi = torch.zeros_like(log_pi) if psi is None else psi
    return log_z + log_pi - alpha * (log_p_base / length + psi)


@dataclass(frozen=True)
class ResidualObjective:
    """A built-in objective (powerflow.registry.Objective): a residual and its fixed point."""

    name: str
    summary: str
    exact_power: bool
    residual_of: Callable[..., torch.Tensor]
    fixed_point_of: Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, float | None]]

    def residual(self, log_z, log_pi, log_p_base, length, alpha, psi=None) -> torch.Tensor:
        return self.residual_of(log_z, log_pi, log_p_base, length, alpha, psi)

    def fixed_point(self, log_p_base, length, alpha) -> tuple[torch.Tensor, float | None]:
        return self.fixed_point_of(log_p_base, length, alpha)


TRAJECTORY_BALANCE = ResidualObjective(
    "tb", "trajectory balance: fixed point p_base^α exactly", True, trajectory_balance_residual,
    lambda log_p, length, alpha: (power_target(log_p, alpha), None))
LENGTH_AWARE_TB = ResidualObjective(
    "la_tb", "length-aware TB: fixed point p_base^α e^{-λ|y|} (the length tilt)", False, length_aware_residual,
    length_tilted_target)
TOKEN_NORMALIZED_TB = ResidualObjective(
    "tb_token", "token-normalised TB (ablation): fixed point ∝ p_base^{α/|y|}", False, token_normalized_residual,
    lambda log_p, length, alpha: (token_normalized_target(log_p, length, alpha), None))


def residual_fn(name: str) -> Callable[..., torch.Tensor]:
    """The residual δ(log_z, log_pi, log_p_base, length, alpha, psi) of the objective called `name`."""
    return objective(name).residual


def importance_weight(
    log_pi: torch.Tensor, log_pi_old: torch.Tensor, epsilon_low: float, epsilon_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence-level clipped importance weight, no gradient.

        w(y) = stop_grad( clip( π_θ(y|q) / π_old(y|q), 1 − ε_low, 1 + ε_high ) )

    Returns (w [B], clipped [B] bool). It rescales each sample's squared residual (variance and
    step size), so it does not move the fixed point: at δ ≡ 0 every weight multiplies zero.
    The ratio is formed in log space and clamped before exp, so it cannot overflow.
    """
    log_ratio = (log_pi.detach().float() - log_pi_old.detach().float()).clamp(-20.0, 20.0)
    ratio = log_ratio.exp()
    low, high = 1.0 - epsilon_low, 1.0 + epsilon_high
    clipped = (ratio < low) | (ratio > high)
    return ratio.clamp(low, high), clipped


def weighted_squared_loss(residual: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """L = mean_y [ w(y) · δ(y)² ]: the regression loss and its reduction over sequences."""
    sq = residual.pow(2)
    if weight is not None:
        sq = weight * sq
    return sq.mean()


def huber_loss(residual: torch.Tensor, delta: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Robust regression loss on the residual, scaled to agree with δ² near zero (Huber 1964).

        ρ_κ(δ) = δ²                 if |δ| ≤ κ
               = 2κ|δ| − κ²         otherwise;        ∂ρ_κ/∂δ = 2 · clip(δ, −κ, κ)
        L = mean_y [ w(y) · ρ_κ(δ(y)) ]

    A sample with a huge residual (a rare completion the base gives ~1e-9, times α) then pulls with
    the force of a residual of κ instead of dominating the batch's gradient. ρ_κ ≥ 0 with equality
    only at δ = 0, so the fixed point (δ ≡ 0) is the same as the squared loss's whenever the policy
    can represent the target; only the path to it changes.
    """
    if not delta > 0:
        raise ValueError(f"huber delta must be > 0, got {delta}")
    absolute = residual.abs()
    rho = torch.where(absolute <= delta, residual.pow(2), 2.0 * delta * absolute - delta**2)
    if weight is not None:
        rho = weight * rho
    return rho.mean()


def leave_one_out_log_z(partial_residual: torch.Tensor, group_size: int) -> torch.Tensor:
    """Parameter-free log Z from the other samples of the same prompt (leave-one-out).

    With r(y) = δ(y) evaluated at log Z = 0, samples laid out in consecutive groups of G per prompt:

        log Ẑ_i = − (1/(G−1)) Σ_{j ≠ i, j in group(i)} stop_grad(r_j)

    At the fixed point every r_j in a group equals −log Z(q), so the estimate is exact there and
    needs no parameters. partial_residual: [B] with B divisible by G ≥ 2 -> [B].
    """
    if group_size < 2:
        raise ValueError("logz='group' needs num_generations >= 2 (the leave-one-out mean needs a second sample)")
    r = partial_residual.detach().float().view(-1, group_size)
    others = (r.sum(dim=1, keepdim=True) - r) / (group_size - 1)
    return (-others).reshape(-1)


class LogZHead(nn.Module):
    """Learned log Z(q): a small MLP on the mean-pooled hidden states of the prompt.

        log Z_φ(q) = w₂ · silu(W₁ · LayerNorm(mean_t h_t(q)) + b₁) + b₂

    The features come from the frozen base model (detached), so the head is a function of q only.
    The output layer starts at zero, so a fresh head predicts log Z = 0 (exact for α = 1). It has
    its own parameter group and learning rate, is saved beside the adapter, and is never pushed to
    a rollout engine (it is not part of the language model). SiLU rather than GELU: the decoder
    models it sits beside already use SiLU, and a first GELU call costs about 15 MiB of kernel
    state on CPU (measured with benchmarks/step_time.py).
    """

    def __init__(self, hidden_size: int, width: int = 64):
        super().__init__()
        self.hidden_size = hidden_size
        self.width = width
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False)
        self.proj = nn.Linear(hidden_size, width)
        self.out = nn.Linear(width, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: [B, hidden_size] -> log Z: [B] (fp32)."""
        x = self.norm(features.float())
        return self.out(nn.functional.silu(self.proj(x))).squeeze(-1)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid positions: hidden [B, T, H], mask [B, T] -> [B, H]."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


@dataclass
class ObjectiveTerms:
    """What one loss evaluation produced, for logging: all [B] except `loss` (scalar)."""

    loss: torch.Tensor
    residual: torch.Tensor
    log_z: torch.Tensor
    weight: torch.Tensor
    clipped: torch.Tensor


def power_flow_loss(
    *,
    objective: str,
    alpha: float,
    log_z: torch.Tensor,
    log_pi: torch.Tensor,
    log_pi_old: torch.Tensor,
    log_p_base: torch.Tensor,
    length: torch.Tensor,
    psi: torch.Tensor | None,
    epsilon_low: float,
    epsilon_high: float,
    huber_delta: float | None = None,
) -> ObjectiveTerms:
    """L = mean_y w(y) · ρ(δ(y)), with δ the residual of `objective`, w the clipped weight and ρ the
    squared loss (huber_delta None) or the Huber loss ρ_κ with κ = huber_delta."""
    residual = residual_fn(objective)(log_z, log_pi, log_p_base, length, alpha, psi)
    weight, clipped = importance_weight(log_pi, log_pi_old, epsilon_low, epsilon_high)
    if huber_delta is None:
        loss = weighted_squared_loss(residual, weight)
    else:
        loss = huber_loss(residual, huber_delta, weight)
    return ObjectiveTerms(loss=loss, residual=residual, log_z=log_z, weight=weight, clipped=clipped)
