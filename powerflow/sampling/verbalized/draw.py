"""The draw: one candidate sampled from a response's verbalized distribution (`sample_verbalized`),
with the probability threshold τ keeping the draw to the tail candidates."""

from __future__ import annotations

import random


def sample_verbalized(
    candidates: list[tuple[str, float]], rng: random.Random, threshold: float | None = None,
    stated: list[float | None] | None = None,
) -> str | None:
    """One candidate drawn with its verbalized probability; None when there is none.

        P(i) = p_i / Σ_{j ∈ S} p_j,  S = {j : s_j < τ} when τ is set and S ≠ ∅, else all candidates

    s_j is the probability the model stated (`ParsedResponse.stated`, falling back to p_j where
    absent): the paper's tail prompt asks for every probability below τ, and stated tails rarely sum
    to 1, so renormalised values would overstate them. When no candidate is below τ (the model
    ignored the instruction) the draw uses the full verbalized distribution.
    """
    if not candidates:
        return None
    indices = list(range(len(candidates)))
    if threshold is not None:
        levels = [(stated[i] if stated and stated[i] is not None else p) for i, (_, p) in enumerate(candidates)]
        tail = [i for i in indices if levels[i] < threshold]
        indices = tail or indices
    weights = [candidates[i][1] for i in indices]
    if sum(weights) <= 0:
        weights = [1.0] * len(indices)
    return candidates[rng.choices(indices, weights=weights, k=1)[0]][0]
