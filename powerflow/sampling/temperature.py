"""Low-temperature sampling: the token-level power baseline.

Sampling each token from softmax(α · logits), i.e. at temperature 1/α, raises every next-token
distribution to the power α:

    q(y_t | y_<t, q) = p(y_t | ·)^α / Σ_v p(v | ·)^α

whose sequence distribution Π_t q(y_t | ·) is in general NOT p(y|q)^α / Z(q): each step is
renormalised separately, so low temperature favours locally likely tokens (powerflow.exact measures
the gap on enumerable models). α → ∞ is greedy decoding.

High temperature (T = baselines.high_temperature > 1, run "high_temperature") is the same sampler
at α = 1/T < 1: the token-level flattening that the creative comparison sets against Power-Flow at
α < 1 and verbalized sampling.
"""

from __future__ import annotations

from powerflow.eval.evaluate import SampleBatch, Sampler
from powerflow.eval.generation import generate_completions
from powerflow.registry import Baseline


def low_temperature_sampler(alpha: float, max_new_tokens: int, batch_size: int = 64) -> Sampler:
    """A Sampler drawing n answers per prompt at temperature 1/α from the model itself."""
    if not alpha > 0:
        raise ValueError(f"low-temperature sampling needs α > 0, got {alpha}")

    def sample(model, tokenizer, prompts: list[str], n: int, seed: int) -> SampleBatch:
        completions = generate_completions(model, tokenizer, prompts, n=n, greedy=False, temperature=1.0 / alpha,
                                           max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size,
                                           progress=False)
        return SampleBatch(completions, sum(c.n_tokens for cs in completions for c in cs), {"temperature": 1 / alpha})

    return sample


def low_temperature_for(cfg, alpha: float) -> Sampler:
    """The low-temperature baseline of a sweep at power α (evaluate: lengths and batch)."""
    return low_temperature_sampler(alpha, cfg.evaluate.max_new_tokens, cfg.evaluate.batch_size)


LOW_TEMPERATURE = Baseline("low_temperature", "inference", "token-level temperature 1/α on the base model",
                           low_temperature_for)


def high_temperature_for(cfg, alpha: float | None = None) -> Sampler:
    """The high-temperature baseline of a sweep: temperature T = baselines.high_temperature (α = 1/T)."""
    return low_temperature_sampler(1.0 / cfg.baselines.high_temperature, cfg.evaluate.max_new_tokens,
                                   cfg.evaluate.batch_size)


HIGH_TEMPERATURE = Baseline("high_temperature", "always", "token-level temperature T > 1 on the base model "
                            "(baselines.high_temperature)", high_temperature_for)
