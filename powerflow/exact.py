"""Exact distributions of causal LMs small enough to enumerate, and the targets of each objective.

A terminal state is a completion y that ends in EOS (|y| counts the EOS) or that reaches the
maximum length without EOS (truncated: scored by its prefix, as in training). For a vocabulary of
V ≤ 8 tokens and a maximum length L ≤ 6 there are at most Σ_{k<L} (V−1)^k + (V−1)^L terminals, so
every probability below is computed exactly, in float64, by one batched forward pass per depth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

MAX_ENUMERABLE_VOCAB = 8
MAX_ENUMERABLE_LENGTH = 6


@dataclass
class TerminalSet:
    """All terminal completions of one prompt with their exact log-probabilities.

    sequences: completion token ids, in a fixed order that depends only on (V, L, EOS).
    log_prob: float64 [N], log π(y|q) under the enumerated model (sums to one in probability).
    length: float64 [N], |y|.
    truncated: bool [N], True where y reached max length without EOS.
    """

    sequences: list[tuple[int, ...]]
    log_prob: torch.Tensor
    length: torch.Tensor
    truncated: torch.Tensor


def check_enumerable(vocab_size: int, max_length: int) -> None:
    """Refuse sizes whose terminal set is too large to enumerate, naming the limit."""
    if vocab_size > MAX_ENUMERABLE_VOCAB or max_length > MAX_ENUMERABLE_LENGTH:
        raise ValueError(
            f"exact enumeration needs vocab_size <= {MAX_ENUMERABLE_VOCAB} and max_length <= "
            f"{MAX_ENUMERABLE_LENGTH}; got vocab_size={vocab_size}, max_length={max_length}. "
            "Use a smaller model (powerflow.world.enumerable) or a shorter max_completion_length."
        )


@torch.no_grad()
def enumerate_terminals(
    model: torch.nn.Module,
    prompt_ids: Sequence[int],
    eos_token_id: int,
    max_length: int,
    token_power: float = 1.0,
) -> TerminalSet:
    """Exact log π(y|q) for every terminal y, breadth first over prefixes.

    With token_power = τ ≠ 1 the per-step distribution is softmax(τ · logits): token-level
    tempering at temperature 1/τ (what "low temperature" sampling draws from), whose sequence
    distribution Π_t p(y_t|·)^τ / Σ_v p(v|·)^τ is in general *not* p^τ renormalised.
    """
    vocab_size = int(model.config.get_text_config().vocab_size)
    check_enumerable(vocab_size, max_length)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    prompt = torch.tensor(list(prompt_ids), dtype=torch.long, device=device)

    sequences: list[tuple[int, ...]] = []
    log_probs: list[float] = []
    truncated: list[bool] = []
    prefixes: list[tuple[int, ...]] = [()]
    prefix_logp = torch.zeros(1, dtype=torch.float64)
    for depth in range(max_length):
        batch = torch.stack([torch.cat([prompt, prompt.new_tensor(p)]) for p in prefixes])
        logits = model(input_ids=batch, attention_mask=torch.ones_like(batch)).logits[:, -1, :]
        step = torch.log_softmax(token_power * logits.double(), dim=-1).cpu()  # [n_prefix, V]
        joint = prefix_logp.unsqueeze(1) + step
        next_prefixes, next_logp = [], []
        for i, prefix in enumerate(prefixes):
            for tok in range(vocab_size):
                lp = joint[i, tok].item()
                if tok == eos_token_id:
                    sequences.append(prefix + (tok,))
                    log_probs.append(lp)
                    truncated.append(False)
                elif depth + 1 == max_length:
                    sequences.append(prefix + (tok,))
                    log_probs.append(lp)
                    truncated.append(True)
                else:
                    next_prefixes.append(prefix + (tok,))
                    next_logp.append(lp)
        prefixes = next_prefixes
        prefix_logp = torch.tensor(next_logp, dtype=torch.float64)
        if not prefixes:
            break
    model.train(was_training)
    return TerminalSet(
        sequences=sequences,
        log_prob=torch.tensor(log_probs, dtype=torch.float64),
        length=torch.tensor([float(len(s)) for s in sequences], dtype=torch.float64),
        truncated=torch.tensor(truncated, dtype=torch.bool),
    )


def power_target(log_p: torch.Tensor, alpha: float) -> torch.Tensor:
    """log p_α(y|q) = α log p(y|q) − log Σ_y' p(y'|q)^α: the TB fixed point."""
    return torch.log_softmax(alpha * log_p, dim=0)


def token_normalized_target(log_p: torch.Tensor, length: torch.Tensor, alpha: float) -> torch.Tensor:
    """log π*(y|q) ∝ (α/|y|) log p(y|q): the TB-token fixed point."""
    return torch.log_softmax(alpha * log_p / length, dim=0)


def _log_mass(scores: torch.Tensor, length: torch.Tensor, lam: float) -> float:
    """log Σ_y exp(s(y) − λ|y|)."""
    return torch.logsumexp(scores - lam * length, dim=0).item()


def length_tilted_target(
    log_p: torch.Tensor, length: torch.Tensor, alpha: float, psi: torch.Tensor | None = None
) -> tuple[torch.Tensor, float]:
    """The LA-TB fixed point and its tilt λ.

        π*(y|q) = p(y|q)^α · e^{α|y|ψ(y)} · e^{−λ|y|},   λ solving Σ_y π*(y|q) = 1.

    Σ_y exp(s(y) − λ|y|) is strictly decreasing in λ (every |y| ≥ 1), so λ is unique; it is found
    by bisection in float64. Returns (log π* [N], λ). λ is the value log Z'(q) converges to.
    """
    scores = alpha * log_p + (0.0 if psi is None else alpha * length * psi)
    lo, hi = -1.0, 1.0
    while _log_mass(scores, length, lo) < 0.0:
        lo *= 2.0
    while _log_mass(scores, length, hi) > 0.0:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _log_mass(scores, length, mid) > 0.0:
            lo = mid
        else:
            hi = mid
    lam = 0.5 * (lo + hi)
    log_target = scores - lam * length
    return log_target - torch.logsumexp(log_target, dim=0), lam


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> float:
    """KL(p ‖ q) = Σ_y p(y) (log p(y) − log q(y)), in nats; terms with p(y) = 0 contribute 0."""
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return float(terms.sum().clamp(min=0.0))


def total_variation(log_p: torch.Tensor, log_q: torch.Tensor) -> float:
    """TV(p, q) = ½ Σ_y |p(y) − q(y)|."""
    return float(0.5 * (log_p.exp() - log_q.exp()).abs().sum())


def truncated_mass(log_p: torch.Tensor, truncated: torch.Tensor) -> float:
    """Σ_{y truncated} p(y): the mass on completions that never emitted EOS."""
    return float(log_p.exp()[truncated].sum())


def expected_length(log_p: torch.Tensor, length: torch.Tensor) -> float:
    """E_p |y|."""
    return float((log_p.exp() * length).sum())


def objective_target(
    name: str, log_p_base: torch.Tensor, length: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, float | None]:
    """(log target, λ or None): the fixed point of the objective called `name` (powerflow.registry)."""
    from powerflow.registry import objective

    return objective(name).fixed_point(log_p_base, length, alpha)


def exact_report(
    policy: TerminalSet, base: TerminalSet, alpha: float, objective: str = "la_tb"
) -> dict[str, float]:
    """Every exact quantity the product reports for one prompt, as a flat dict of floats.

    kl/policy_target is KL(π_θ ‖ target of `objective`); kl/policy_power is KL(π_θ ‖ p_α);
    kl/base_target is where training started from (π_θ = p_base).
    """
    if policy.sequences != base.sequences:
        raise ValueError("policy and base were enumerated with different vocabularies or lengths")
    target, lam = objective_target(objective, base.log_prob, base.length, alpha)
    p_alpha = power_target(base.log_prob, alpha)
    report = {
        "kl/policy_target": kl_divergence(policy.log_prob, target),
        "kl/policy_power": kl_divergence(policy.log_prob, p_alpha),
        "kl/base_target": kl_divergence(base.log_prob, target),
        "tv/policy_target": total_variation(policy.log_prob, target),
        "truncated_mass/policy": truncated_mass(policy.log_prob, policy.truncated),
        "truncated_mass/target": truncated_mass(target, base.truncated),
        "length/policy": expected_length(policy.log_prob, policy.length),
        "length/target": expected_length(target, base.length),
        "length/power": expected_length(p_alpha, base.length),
        "length/base": expected_length(base.log_prob, base.length),
        "num_terminals": float(len(base.sequences)),
    }
    report["lambda/target"] = lam if lam is not None else math.nan
    return report
