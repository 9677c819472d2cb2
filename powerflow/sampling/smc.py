"""Power-SMC: sequential Monte Carlo toward p_base(y|q)^α at inference time, no training.

"Power-SMC: Low-Latency Sequence-Level Power Sampling" (arXiv:2602.10273). N particles advance
token by token in one batched decode toward the sequence-level power distribution
π_α(y|x) ∝ p(y|x)^α. With α_t the exponent in force after t tokens (`alpha_schedule`), the
intermediate unnormalised target of a particle is

    γ_t(y_{1:t}) = p(y_{1:t})^{α_t}      (an unfinished particle: its prefix probability)
    γ_t(y)       = p(y)^{α_t}            (a particle that emitted EOS at some step ≤ t)

and per system of N particles, for t = 1, 2, ..:

    every unfinished particle draws y_t ~ q_t = softmax(α_t · logits)       (temperature 1/α_t)
    log w ← log w + log γ_t − log γ_{t−1} − log q_t(y_t)                    (`incremental_log_weights`)
    stop when every particle has EOS or t = T_max
    else, if ESS = (Σw)² / Σw² < ess_threshold · N: systematic resampling, weights reset to uniform
    at the stop t_s: log w ← log w + (α − α_{t_s}) · log p(y)              (`tempering_log_weight`)
    the answer: one particle drawn ∝ w

Temperature 1/α_t is the prefix-only proposal that minimises the variance of the incremental weight
(the paper's result): with it p(v)^{α_t} / q_t(v) = Σ_u p(u|prefix)^{α_t} does not depend on the
token drawn. The exponent-bridging schedule ("α ramp") raises α_t linearly from 1 to α over the
first ramp_tokens tokens; the final target stays p^α.

The targets are this project's: a completion ends in EOS (p(y) includes the EOS) or is cut at
T_max without EOS and scored by its prefix probability, as `powerflow.exact.enumerate_terminals`
and `powerflow.sampling.mcmc` score it. Along any path y the weights telescope, so

    log q(y) + Σ_t log w_t(y) = α · log p(y)

exactly (`path_log_weights`; tests/model/test_smc_exact.py checks it on every terminal of an
enumerable model). The answer's law tends to p^α as N grows (self-normalised importance sampling
with resampling: a bias of order 1/N at finite N).

Choices where the paper is silent (documented, tested):
- The ramp is over R' = min(ramp_tokens, T_max) tokens, so α_{T_max} = α; when every particle has
  finished before the ramp ends, the last step's exponent is raised to α by the final
  (α − α_{t_s}) · log p(y) reweighting (no token is drawn). α_0 = 1 multiplies log p(()) = 0.
- Resampling is checked after the tokens of step t are weighted, never after the last step (the
  final draw ∝ w is itself a resampling of one). u ~ U[0, 1) per system from the batch's generator.
- After a resampling the KV cache rows follow their ancestors: `Cache.reorder_cache(index)` (an
  index_select of every layer's keys and values on the batch axis; transformers 5.24), not a new
  prefill.
- n answers per prompt are n independent systems of N particles each (avg@n needs independent
  draws). cfg.batch_size counts particle rows: batch_size // N whole systems per forward batch, at
  least one.
- A finished particle draws no token and is fed the pad id (its row is still computed, as in any
  batched decode).

It needs a torch model (the transformers backend, CPU or CUDA; not a vLLM engine). Sampling uses a
torch.Generator on the model's device seeded per batch of systems, so a seed repeats on one device.

Cost: `SampleBatch.generated_tokens` counts every token drawn by every particle (N per step while
unfinished; a resampled copy does not recount its ancestor's tokens), so tokens per answer are
about N × the answer length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from powerflow.errors import ConfigError
from powerflow.registry import Baseline

if TYPE_CHECKING:
    import torch

    from powerflow.eval.evaluate import SampleBatch, Sampler

SECTION = "baselines.smc"


@dataclass(frozen=True)
class SMCConfig:
    """Power-SMC settings, section `baselines.smc` (the baselines run reads baselines.smc_*)."""

    alpha: float = field(
        default=4.0,
        metadata={"help": "Power α of the target p_base^α; the proposal samples at temperature 1/α_t. "
                          "4 for base models, 2 for instruct models, < 1 flattens."},
    )
    max_new_tokens: int = field(
        default=3072, metadata={"help": "T_max: completion length limit; a completion reaching it without EOS is "
                                        "truncated (scored by its prefix probability)."}
    )
    n_particles: int = field(
        default=8, metadata={"help": "N: particles per answer; each answer is one particle of its own system, "
                                     "drawn by weight. 1 = temperature-1/α sampling (no correction)."}
    )
    ess_threshold: float = field(
        default=0.5,
        metadata={"help": "Resample a system when its effective sample size (Σw)²/Σw² falls below "
                          "ess_threshold · N; 0 never resamples (sequential importance sampling)."},
    )
    ramp_tokens: int = field(
        default=0,
        metadata={"help": "Exponent-bridging schedule: α_t rises linearly from 1 to α over the first ramp_tokens "
                          "tokens (clamped to max_new_tokens); 0 = α from the first token (the variance-optimal "
                          "proposal throughout). The target is p^α either way."},
    )
    batch_size: int = field(
        default=64, metadata={"help": "Particle rows per forward batch (whole systems: batch_size // n_particles, "
                                      "at least one)."}
    )

    def __post_init__(self):
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha > 0):
            raise ConfigError(f"{SECTION}.alpha={self.alpha}: must be a finite number > 0 (4 sharpens a base model, "
                              "1 samples it as is).")
        if self.max_new_tokens < 1:
            raise ConfigError(f"{SECTION}.max_new_tokens={self.max_new_tokens}: must be an integer >= 1.")
        if self.n_particles < 1:
            raise ConfigError(f"{SECTION}.n_particles={self.n_particles}: must be an integer >= 1 (8 by default).")
        if not (isinstance(self.ess_threshold, (int, float)) and 0.0 <= self.ess_threshold <= 1.0):
            raise ConfigError(f"{SECTION}.ess_threshold={self.ess_threshold}: must be a number in [0, 1] (0.5 "
                              "resamples when half the particles' weight is effectively lost; 0 never).")
        if self.ramp_tokens < 0:
            raise ConfigError(f"{SECTION}.ramp_tokens={self.ramp_tokens}: must be an integer >= 0 (0 = no ramp).")
        if self.batch_size < 1:
            raise ConfigError(f"{SECTION}.batch_size={self.batch_size}: must be an integer >= 1.")

    def schedule(self) -> list[float]:
        """α_0 .. α_{max_new_tokens} (`alpha_schedule`)."""
        return alpha_schedule(self.alpha, self.ramp_tokens, self.max_new_tokens)

    @property
    def systems_per_batch(self) -> int:
        """Whole systems of n_particles rows in one forward batch of batch_size rows (at least one)."""
        return max(1, self.batch_size // self.n_particles)


def alpha_schedule(alpha: float, ramp_tokens: int, max_new_tokens: int) -> list[float]:
    """[α_0, α_1, .., α_T], T = max_new_tokens: the exponent in force after t tokens.

        α_t = 1 + (α − 1) · min(t, R') / R',   R' = min(ramp_tokens, T) > 0
        α_t = α for t ≥ 1,                      R' = 0
        α_0 = 1

    α_t = α is set exactly for t ≥ R' (no rounding of 1 + (α − 1)), so α_T = α always.
    """
    ramp = min(ramp_tokens, max_new_tokens)
    return [1.0] + [alpha if t >= ramp else 1.0 + (alpha - 1.0) * t / ramp for t in range(1, max_new_tokens + 1)]


def tempering_log_weight(log_p: torch.Tensor, alpha_prev: float, alpha_now: float) -> torch.Tensor:
    """log γ_now − log γ_prev of a sequence whose probability does not change: (α_now − α_prev) · log p.

    The whole incremental weight of a finished particle (log p = log p(y), EOS included), the ramp
    part of an unfinished one's (log p = log p(y_{1:t−1})), and the final jump to α at the stop.
    """
    if alpha_now == alpha_prev:
        return log_p.new_zeros(log_p.shape)
    return (alpha_now - alpha_prev) * log_p


def incremental_log_weights(
    step_log_p: torch.Tensor, prefix_log_p: torch.Tensor, finished: torch.Tensor, alpha_prev: float, alpha_now: float
) -> torch.Tensor:
    """log w_t of each particle at step t (token t drawn from q_t = softmax(α_t · logits)).

        unfinished: log w_t = log γ_t − log γ_{t−1} − log q_t(y_t)
                            = (α_t − α_{t−1}) · log p(y_{1:t−1}) + log Σ_u p(u | y_{1:t−1})^{α_t}
        finished:   log w_t = (α_t − α_{t−1}) · log p(y)

    Since q_t(v) = p(v|·)^{α_t} / Σ_u p(u|·)^{α_t}, the token drawn cancels: the weight is known
    before the draw. step_log_p: [B, V] log p(·|y_{1:t−1}) (float64; rows of finished particles are
    ignored); prefix_log_p: [B] log p(y_{1:t−1}), log p(y) for finished particles; finished: [B] bool.
    Returns [B] in step_log_p's dtype.
    """
    import torch

    normaliser = torch.logsumexp(alpha_now * step_log_p, dim=-1)
    return tempering_log_weight(prefix_log_p, alpha_prev, alpha_now) + torch.where(
        finished, torch.zeros_like(normaliser), normaliser)


def path_log_weights(
    step_log_p: torch.Tensor, tokens: Sequence[int], alphas: Sequence[float], stop_step: int | None = None
) -> tuple[float, float]:
    """(log q(y), Σ_t log w_t(y)) of one particle that drew the whole path y = tokens, no resampling.

        log q(y)      = Σ_{t=1}^{|y|} log softmax(α_t · log p(·|y_{<t}))_{y_t}
        Σ_t log w_t(y) = Σ_{t=1}^{|y|} [(α_t − α_{t−1}) log p(y_{<t}) + log Σ_u p(u|y_{<t})^{α_t}]
                       + Σ_{t=|y|+1}^{t_s} (α_t − α_{t−1}) log p(y) + (α − α_{t_s}) log p(y)

    and log q(y) + Σ_t log w_t(y) = α · log p(y) (the weights telescope). step_log_p: [|y|, V] rows
    log p(·|x ⊕ y_{<t}); tokens: y, finished after its last token (EOS, or cut at T); alphas:
    α_0 .. α_T (`alpha_schedule`, α = alphas[-1]); stop_step: t_s, the step the population stopped
    at (|y| ≤ t_s ≤ T; default |y|). Uses `incremental_log_weights` and `tempering_log_weight`, as
    the sampler does. Sums in float64.
    """
    import torch

    rows = step_log_p.double()
    length, horizon = len(tokens), len(alphas) - 1
    stop = length if stop_step is None else stop_step
    if not (1 <= length <= stop <= horizon and rows.shape[0] == length):
        raise ValueError(f"need 1 <= |y| = {length} <= stop_step = {stop} <= T = {horizon} and one row per token "
                         f"(got {rows.shape[0]})")
    log_q = log_p = log_w = torch.zeros(1, dtype=torch.float64)
    unfinished = torch.zeros(1, dtype=torch.bool)
    for t in range(1, length + 1):
        row = rows[t - 1:t]  # [1, V]
        log_w = log_w + incremental_log_weights(row, log_p, unfinished, alphas[t - 1], alphas[t])
        log_q = log_q + torch.log_softmax(alphas[t] * row, dim=-1)[0, tokens[t - 1]]
        log_p = log_p + row[0, tokens[t - 1]]
    for t in range(length + 1, stop + 1):
        log_w = log_w + incremental_log_weights(rows[-1:], log_p, ~unfinished, alphas[t - 1], alphas[t])
    log_w = log_w + tempering_log_weight(log_p, alphas[stop], alphas[-1])
    return float(log_q), float(log_w)


def effective_sample_size(log_w: torch.Tensor) -> torch.Tensor:
    """ESS = (Σ_i w_i)² / Σ_i w_i² over the last axis, from log weights: N for equal weights, 1 for one.

        log ESS = 2 · logsumexp(log w) − logsumexp(2 · log w)
    """
    import torch

    return torch.exp(2 * torch.logsumexp(log_w, dim=-1) - torch.logsumexp(2 * log_w, dim=-1))


def systematic_resample(log_w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Ancestor indices of systematic resampling, one row per system.

        W = softmax(log w),  positions p_k = (u + k) / N for k = 0 .. N−1,
        ancestor_k = the smallest i with W_1 + .. + W_i > p_k

    so particle i is copied ⌊N W_i⌋ or ⌈N W_i⌉ times and E[copies] = N W_i. log_w: [S, N];
    u: [S] in [0, 1). Returns [S, N] long, sorted in each row.
    """
    import torch

    n = log_w.shape[-1]
    cdf = torch.softmax(log_w.double(), dim=-1).cumsum(-1)
    cdf[..., -1] = 1.0  # rounding must not leave a position above the last cumulative weight
    positions = (u.double().unsqueeze(-1) + torch.arange(n, dtype=torch.float64, device=log_w.device)) / n
    return torch.searchsorted(cdf, positions, right=True).clamp(max=n - 1)


@dataclass
class _Population:
    """The particles of S systems after the stop, rows s·N .. s·N + N − 1 being system s.

    tokens: [S·N, t_s] (pad after a particle's EOS); log_p: [S·N] float64 log p of each particle's
    sequence; log_w: [S·N] float64 final log weights (reset at each resampling); the step counts.
    """

    tokens: torch.Tensor
    log_p: torch.Tensor
    log_w: torch.Tensor
    n_particles: int
    generated_tokens: int = 0
    resamples: int = 0  # system resamplings in all


def _run_systems(model, prompts: Sequence[Sequence[int]], cfg: SMCConfig, eos_ids: set[int], pad_id: int,
                 generator: torch.Generator) -> _Population:
    """Power-SMC (module docstring) for one system of cfg.n_particles particles per prompt, in one batch.

    One left-padded prefill and a KV cache (as `powerflow.sampling.mcmc.sample_suffixes`); position
    ids count real tokens only. On a resampling every row of the cache, the mask and the particle
    state is gathered by ancestor index (rows of systems that do not resample map to themselves).
    """
    import torch

    from powerflow.eval.generation import _left_padded_batch
    from powerflow.sampling.mcmc import _forward_options, _returned_cache

    n_systems, n = len(prompts), cfg.n_particles
    rows = n_systems * n
    device = model.device
    alphas = cfg.schedule()
    ids, mask = _left_padded_batch([list(p) for p in prompts for _ in range(n)], pad_id, device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    eos = torch.tensor(sorted(eos_ids), device=device)
    keep_last, cache_name = _forward_options(model)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **keep_last)
    cache = _returned_cache(out)
    next_position = positions[:, -1:] + 1
    own_rows = torch.arange(rows, device=device).view(n_systems, n)
    log_p = torch.zeros(rows, dtype=torch.float64, device=device)
    log_w = torch.zeros(rows, dtype=torch.float64, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    tokens = torch.empty((rows, 0), dtype=torch.long, device=device)
    generated = resamples = 0
    stop = cfg.max_new_tokens
    for t in range(1, cfg.max_new_tokens + 1):
        logits = out.logits[:, -1, :].float()  # [rows, V]
        step_log_p = torch.log_softmax(logits.double(), dim=-1)
        log_w = log_w + incremental_log_weights(step_log_p, log_p, finished, alphas[t - 1], alphas[t])
        drawn = torch.multinomial(torch.softmax(alphas[t] * logits, dim=-1), 1, generator=generator).squeeze(-1)
        token = torch.where(finished, torch.full_like(drawn, pad_id), drawn)
        log_p = log_p + torch.where(finished, 0.0, step_log_p.gather(-1, token.unsqueeze(-1)).squeeze(-1))
        generated += int((~finished).sum())
        tokens = torch.cat([tokens, token.unsqueeze(-1)], dim=1)
        finished = finished | torch.isin(token, eos)
        if bool(finished.all()) or t == cfg.max_new_tokens:
            stop = t
            break
        resample = effective_sample_size(log_w.view(n_systems, n)) < cfg.ess_threshold * n  # [S]
        if bool(resample.any()):
            u = torch.rand(n_systems, generator=generator, device=device, dtype=torch.float64)
            ancestors = systematic_resample(log_w.view(n_systems, n), u) + own_rows[:, :1]
            index = torch.where(resample.unsqueeze(-1), ancestors, own_rows).view(-1)
            tokens, log_p, finished = tokens[index], log_p[index], finished[index]
            mask, next_position = mask[index], next_position[index]
            log_w = torch.where(resample.repeat_interleave(n), torch.zeros_like(log_w), log_w)
            cache.reorder_cache(index)
            resamples += int(resample.sum())
        mask = torch.cat([mask, mask.new_ones((rows, 1))], dim=1)
        out = model(input_ids=tokens[:, -1:], attention_mask=mask, position_ids=next_position, use_cache=True,
                    **{cache_name: cache})
        cache = _returned_cache(out)
        next_position = next_position + 1
    log_w = log_w + tempering_log_weight(log_p, alphas[stop], cfg.alpha)  # α_stop < α only if all ended early
    return _Population(tokens, log_p, log_w, n, generated_tokens=generated, resamples=resamples)


def power_smc_sample(
    model, tokenizer, prompts: list[str], n: int, cfg: SMCConfig, seed: int = 0, progress: bool = False
) -> SampleBatch:
    """n Power-SMC answers per prompt (module docstring: the algorithm), as a SampleBatch.

    Each answer is one particle drawn ∝ its final weight from its own system of cfg.n_particles;
    cfg.systems_per_batch systems share a forward batch. completions[i][j] is answer j of
    prompts[i], decoded as `generate_completions` decodes. generated_tokens counts every token of
    every particle; stats: resamples_per_system (resamplings per system), final_ess_fraction (the
    mean over systems of the final ESS / N), particles (N). The same seed (and batch_size) gives
    the same answers on the same device.
    """
    import torch
    from tqdm.auto import tqdm

    from powerflow.eval.evaluate import SampleBatch
    from powerflow.eval.generation import _to_completion, batch_seed, sampling_rows

    if n < 1:
        raise ValueError(f"need n >= 1 samples per prompt, got {n}")
    rows, eos_ids, pad_id = sampling_rows(model, tokenizer, prompts, n)  # one system per (prompt i, ids)
    completions: list[list] = [[] for _ in prompts]
    generated = resamples = 0
    final_ess: list[float] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            starts = range(0, len(rows), cfg.systems_per_batch)
            for batch_index, start in enumerate(tqdm(starts, desc="smc", disable=not progress, leave=False)):
                batch = rows[start:start + cfg.systems_per_batch]
                generator = torch.Generator(device=model.device).manual_seed(batch_seed(seed, batch_index))
                population = _run_systems(model, [ids for _, ids in batch], cfg, eos_ids, pad_id, generator)
                log_w = population.log_w.view(len(batch), cfg.n_particles)
                chosen = torch.multinomial(torch.softmax(log_w, dim=-1), 1, generator=generator).squeeze(-1)
                answers = population.tokens.reshape(len(batch), cfg.n_particles, -1)
                answers = answers[torch.arange(len(batch), device=answers.device), chosen].tolist()
                for (prompt_index, _), answer in zip(batch, answers):
                    completions[prompt_index].append(_to_completion(answer, eos_ids, tokenizer))
                generated += population.generated_tokens
                resamples += population.resamples
                final_ess += (effective_sample_size(log_w) / cfg.n_particles).tolist()
    finally:
        model.train(was_training)
    stats = {
        "resamples_per_system": resamples / len(rows),
        "final_ess_fraction": math.fsum(final_ess) / len(final_ess),
        "particles": float(cfg.n_particles),
    }
    return SampleBatch(completions=completions, generated_tokens=generated, stats=stats)


def smc_sampler(cfg: SMCConfig) -> Sampler:
    """A `Sampler` for `powerflow.eval.evaluate.Scoring.sampler`: Power-SMC with cfg."""

    def sample(model, tokenizer, prompts: list[str], n: int, seed: int) -> SampleBatch:
        return power_smc_sample(model, tokenizer, prompts, n, cfg, seed=seed)

    return sample


def smc_for(cfg, alpha: float) -> Sampler:
    """The Power-SMC baseline of a sweep at power α: baselines.smc_particles and smc_ramp_tokens, the
    answer length of MCMC (baselines.mcmc_max_new_tokens, so the two compare at one T_max) and
    evaluate's batch size (particle rows per forward batch)."""
    b = cfg.baselines
    return smc_sampler(SMCConfig(alpha=alpha, max_new_tokens=b.mcmc_max_new_tokens, n_particles=b.smc_particles,
                                 ramp_tokens=b.smc_ramp_tokens, batch_size=cfg.evaluate.batch_size))


POWER_SMC = Baseline("smc", "inference", "Power-SMC toward p_base^α (sequential Monte Carlo, temperature-1/α "
                     "proposal, ESS resampling)", smc_for)
