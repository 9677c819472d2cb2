"""MCMC power sampling: approximate samples from p_base(y|q)^α at inference time, no training.

Karan & Du 2025, "Reasoning with Sampling: Your Base Model is Smarter Than You Think"
(arXiv:2510.14901), Algorithm 1; reference code: github.com/aakaran/reasoning-with-sampling,
llm_experiments/power_samp_utils.py (`mcmc_power_samp`). Per chain, with block size B = ceil(T_max / n_blocks) and block
ends e_k = min(k·B, T_max):

    x = ()                                   # the completion so far
    for k = 1 .. n_blocks:
        extend x up to length e_k with the proposal q, stopping at EOS
        repeat n_mcmc times                  # Metropolis–Hastings on π_k(x) ∝ p(x)^α, |x| ≤ e_k
            t  ~ Uniform{0, .., |x| − 1}
            x' = x[:t] ⊕ (a suffix drawn from q after prompt ⊕ x[:t], until EOS or length e_k)
            accept x' with probability min(1, exp(log A))      # see `log_acceptance`
        stop when x ends in EOS

The proposal q is the base model at temperature 1/α: q(v | ·) = softmax(α · logits)_v (the
token-level power, itself a common baseline). The intermediate target π_k scores a completion cut
at e_k without EOS by its prefix probability, as `powerflow.exact` scores truncated completions, so
with one block (e_1 = T_max) the chain's stationary law is exactly p^α over the terminals of
`powerflow.exact.enumerate_terminals` (tests/model/test_mcmc_exact.py checks it).

Choices where the paper is silent or its code differs (documented, tested):
- Hastings term of the position: t is uniform over the |x| positions of the *current* sequence, so
  the reverse move picks t with probability 1/|x'|: `length_correction=True` (the default) adds
  log(|x| / |x'|) to log A, which makes the chain exact; False gives the issue's and the paper's
  formula (the two agree whenever |x'| = |x|). On an enumerable model the paper's formula leaves
  a stationary bias of TV 0.084 from p^α at α = 2.
- The proposal always regenerates up to the block end e_k (or EOS). The reference code caps it at
  the current length |x| and, when x' stops earlier, sums the current suffix only up to |x'|;
  neither keeps detailed balance when lengths differ.
- A chain that emits EOS during block k still runs block k's n_mcmc steps (they target π_k, which
  includes completions cut at e_k, so it may move off EOS and continue); a chain that ends in EOS
  after block k's steps is finished: no further blocks or steps. This is the reference code's order.
- B = ceil(T_max / n_blocks), the last block shorter (the reference code requires n_blocks to
  divide T_max).

It needs a torch model (the transformers backend, CPU or CUDA; not a vLLM engine). Sampling uses a
torch.Generator on the model's device seeded per batch of chains, so a seed repeats on one device.

Cost: every sampled token counts in `SampleBatch.generated_tokens` (the initial extensions and
every proposal, rejected or not). The paper estimates about 8.84× the tokens of plain sampling
with the published defaults on MATH500.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from powerflow.errors import ConfigError
from powerflow.registry import Baseline

if TYPE_CHECKING:
    import torch

    from powerflow.eval.evaluate import SampleBatch, Sampler

SECTION = "baselines.mcmc"


@dataclass(frozen=True)
class MCMCConfig:
    """MCMC power sampling settings, section `baselines.mcmc` of params.yaml (published defaults)."""

    alpha: float = field(
        default=4.0,
        metadata={"help": "Power α of the target p_base^α; the proposal samples at temperature 1/α. "
                          "4 for base models (the paper), 2 for instruct models, < 1 flattens."},
    )
    max_new_tokens: int = field(
        default=3072, metadata={"help": "T_max: completion length limit; a completion reaching it without EOS is "
                                        "truncated."}
    )
    n_blocks: int = field(
        default=16,
        metadata={"help": "Blocks the completion is grown in; block size B = ceil(max_new_tokens / n_blocks)."},
    )
    n_mcmc: int = field(
        default=10, metadata={"help": "Metropolis–Hastings steps after each block (N_MCMC); 0 = proposal sampling."}
    )
    batch_size: int = field(default=64, metadata={"help": "Chains run together in one forward batch."})
    length_correction: bool = field(
        default=True,
        metadata={"help": "Add the Hastings term log(|x|/|x'|) of choosing the resampling position uniformly over "
                          "the current completion (exact chain); false: the paper's acceptance formula."},
    )

    def __post_init__(self):
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha > 0):
            raise ConfigError(f"{SECTION}.alpha={self.alpha}: must be a finite number > 0 (4 sharpens a base model, "
                              "1 samples it as is).")
        if self.max_new_tokens < 1:
            raise ConfigError(f"{SECTION}.max_new_tokens={self.max_new_tokens}: must be an integer >= 1.")
        if not 1 <= self.n_blocks <= self.max_new_tokens:
            raise ConfigError(f"{SECTION}.n_blocks={self.n_blocks}: must be an integer in 1..max_new_tokens "
                              f"({self.max_new_tokens}); 16 is the published value.")
        if self.n_mcmc < 0:
            raise ConfigError(f"{SECTION}.n_mcmc={self.n_mcmc}: must be an integer >= 0 (0 = proposal sampling).")
        if self.batch_size < 1:
            raise ConfigError(f"{SECTION}.batch_size={self.batch_size}: must be an integer >= 1.")
        if not isinstance(self.length_correction, bool):
            raise ConfigError(f"{SECTION}.length_correction={self.length_correction!r}: write true or false.")

    @property
    def block_size(self) -> int:
        """B = ceil(max_new_tokens / n_blocks)."""
        return -(-self.max_new_tokens // self.n_blocks)

    def block_ends(self) -> list[int]:
        """e_k = min(k·B, T_max) for the blocks that add tokens (fewer than n_blocks when B rounds up)."""
        ends = [min(k * self.block_size, self.max_new_tokens) for k in range(1, self.n_blocks + 1)]
        return sorted(set(ends))


def token_log_probs(logits: torch.Tensor, tokens: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p, log q) of each token under the base model and under the proposal.

        log p(v | ·) = log_softmax(logits)_v
        log q(v | ·) = log_softmax(α · logits)_v        (temperature 1/α)

    logits: [..., V] (computed in float32 whatever their dtype); tokens: [...] ids. Returns two
    float32 tensors of tokens' shape.
    """
    import torch

    logits = logits.float()
    index = tokens.long().unsqueeze(-1)
    log_p = torch.log_softmax(logits, dim=-1).gather(-1, index).squeeze(-1)
    log_q = torch.log_softmax(alpha * logits, dim=-1).gather(-1, index).squeeze(-1)
    return log_p, log_q


def log_acceptance(
    alpha: float,
    logp_new: float,
    logp_old: float,
    logq_new: float,
    logq_old: float,
    len_new: int,
    len_old: int,
    length_correction: bool = True,
) -> float:
    """log A of replacing the suffix x_s = x_{t:} of x by x'_s (x' = x_{:t} ⊕ x'_s).

        log A = α [log p(x'_s) − log p(x_s)] + log q(x_s) − log q(x'_s)  [+ log(|x| / |x'|)]

    logp_* and logq_* are the suffixes' summed token log-probs under the base model p and the
    proposal q; len_* the whole completions' lengths |x'| (new) and |x| (old). The prefix x_{:t}
    is shared, so its terms cancel in α log p(x') − α log p(x). The bracketed term is the Hastings
    ratio of the position: t is uniform over the |x| positions of the current completion, and the
    reverse move picks it among |x'|; it is 0 when |x'| = |x|. Without it (length_correction=False)
    this is the formula of Karan & Du (2025, Alg. 1) and of the issue, which leaves the chain biased
    toward lengths the position choice favours.
    """
    log_a = alpha * (logp_new - logp_old) + logq_old - logq_new
    if length_correction:
        log_a += math.log(len_old) - math.log(len_new)
    return log_a


def accept(log_a: float, u: float) -> bool:
    """Metropolis–Hastings decision: accept with probability min(1, exp(log A)), given u ~ U[0, 1).

    The test is log u < log A; a NaN log A rejects, and u = 0 (log u = −∞) accepts any finite log A.
    """
    if math.isnan(log_a):
        return False
    if u <= 0.0:
        return log_a > -math.inf
    return log_a >= 0.0 or math.log(u) < log_a


@dataclass
class _Chain:
    """One Markov chain: the prompt ids and the completion x with per-token log p and log q."""

    prompt: list[int]
    tokens: list[int] = field(default_factory=list)
    log_p: list[float] = field(default_factory=list)
    log_q: list[float] = field(default_factory=list)

    def ends_in(self, eos_ids: set[int]) -> bool:
        return bool(self.tokens) and self.tokens[-1] in eos_ids

    def replace_suffix(self, t: int, suffix: Suffix) -> None:
        self.tokens[t:] = suffix.tokens
        self.log_p[t:] = suffix.log_p
        self.log_q[t:] = suffix.log_q


@dataclass
class Suffix:
    """Tokens drawn from the proposal after some prefix, with their log p and log q."""

    tokens: list[int]
    log_p: list[float]
    log_q: list[float]


def _forward_options(model) -> tuple[dict, str]:
    """(extra forward kwargs, name of the KV-cache kwarg) that this model's forward accepts.

    logits_to_keep=1 spares the prefill its [n, len, V] logits (GBs at T_max = 3072 and a 150k
    vocabulary). transformers 5.24 renamed past_key_values to cache (the old name warns until 5.40).
    A PEFT wrapper forwards **kwargs, so the wrapped model's signature is the one read.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    accepted = inspect.signature(inner.forward).parameters
    keep_last = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
    return keep_last, ("cache" if "cache" in accepted else "past_key_values")


def _returned_cache(out):
    """The KV cache a forward returned, under its transformers >= 5.24 name or the older one."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def sample_suffixes(
    model,
    prefixes: Sequence[Sequence[int]],
    budgets: Sequence[int],
    alpha: float,
    eos_ids: set[int],
    pad_id: int,
    generator: torch.Generator,
) -> list[Suffix]:
    """For each prefix, tokens drawn from q = softmax(α · logits) until EOS (kept) or budget tokens.

    One left-padded batch with a KV cache: position ids count real tokens only, so a padded row
    sees the positions it would see alone. Every token is drawn with `generator` (on the model's
    device), so a seeded generator gives the same suffixes. Every budget must be >= 1.
    """
    import torch

    from powerflow.eval.generation import _left_padded_batch

    if not prefixes or min(budgets) < 1 or len(budgets) != len(prefixes):
        raise ValueError(f"need one budget >= 1 per prefix; got {len(prefixes)} prefixes, budgets {list(budgets)}")
    device = model.device
    ids, mask = _left_padded_batch([list(p) for p in prefixes], pad_id, device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    budget = torch.tensor(list(budgets), device=device)
    eos = torch.tensor(sorted(eos_ids), device=device)
    keep_last, cache_name = _forward_options(model)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **keep_last)
    next_position = positions[:, -1:] + 1
    done = torch.zeros(len(prefixes), dtype=torch.bool, device=device)
    steps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (token, log p, log q), each [n]
    for step in range(int(budget.max())):
        logits = out.logits[:, -1, :]
        token = torch.multinomial(torch.softmax(alpha * logits.float(), dim=-1), 1, generator=generator).squeeze(-1)
        log_p, log_q = token_log_probs(logits, token, alpha)
        steps.append((token, log_p, log_q))
        done = done | torch.isin(token, eos) | (budget <= step + 1)
        if bool(done.all()):
            break
        mask = torch.cat([mask, mask.new_ones((len(prefixes), 1))], dim=1)
        out = model(input_ids=token.unsqueeze(-1), attention_mask=mask, position_ids=next_position,
                    use_cache=True, **{cache_name: _returned_cache(out)})
        next_position = next_position + 1
    tokens, log_p, log_q = (torch.stack(column, dim=1).tolist() for column in zip(*steps))
    suffixes = []
    for row, limit in enumerate(budgets):
        end = min(limit, len(tokens[row]))
        for position in range(end):
            if tokens[row][position] in eos_ids:
                end = position + 1
                break
        suffixes.append(Suffix(tokens[row][:end], log_p[row][:end], log_q[row][:end]))
    return suffixes


@dataclass
class _Counts:
    """What one batch of chains cost and how its MH steps went."""

    generated_tokens: int = 0
    proposed: int = 0
    accepted: int = 0


def _run_chains(model, chains: list[_Chain], cfg: MCMCConfig, eos_ids: set[int], pad_id: int,
                generator: torch.Generator) -> _Counts:
    """Algorithm 1 on a batch of chains, in place: grow each block, then n_mcmc MH steps on all chains."""
    import torch

    counts = _Counts()
    for end in cfg.block_ends():
        active = [c for c in chains if not c.ends_in(eos_ids)]
        if not active:
            break
        grown = sample_suffixes(model, [c.prompt + c.tokens for c in active], [end - len(c.tokens) for c in active],
                                cfg.alpha, eos_ids, pad_id, generator)
        for chain, suffix in zip(active, grown):
            chain.replace_suffix(len(chain.tokens), suffix)
            counts.generated_tokens += len(suffix.tokens)
        for _ in range(cfg.n_mcmc):
            draws = torch.rand((2, len(active)), generator=generator, device=generator.device).tolist()
            # t uniform over the current completion's positions: floor(u · |x|) < |x|.
            starts = [min(int(u * len(c.tokens)), len(c.tokens) - 1) for u, c in zip(draws[0], active)]
            proposals = sample_suffixes(model, [c.prompt + c.tokens[:t] for c, t in zip(active, starts)],
                                        [end - t for t in starts], cfg.alpha, eos_ids, pad_id, generator)
            for chain, t, proposal, u in zip(active, starts, proposals, draws[1]):
                log_a = log_acceptance(
                    cfg.alpha,
                    logp_new=math.fsum(proposal.log_p), logp_old=math.fsum(chain.log_p[t:]),
                    logq_new=math.fsum(proposal.log_q), logq_old=math.fsum(chain.log_q[t:]),
                    len_new=t + len(proposal.tokens), len_old=len(chain.tokens),
                    length_correction=cfg.length_correction,
                )
                counts.generated_tokens += len(proposal.tokens)
                counts.proposed += 1
                if accept(log_a, u):
                    chain.replace_suffix(t, proposal)
                    counts.accepted += 1
    return counts


def mcmc_power_sample(
    model, tokenizer, prompts: list[str], n: int, cfg: MCMCConfig, seed: int = 0, progress: bool = False
) -> SampleBatch:
    """n MCMC power samples per prompt (module docstring: the algorithm), as a SampleBatch.

    The n·len(prompts) chains run in batches of cfg.batch_size; within a batch every MH step
    proposes for every unfinished chain at once. completions[i][j] is chain j of prompts[i],
    decoded as `generate_completions` decodes. generated_tokens counts every sampled token;
    stats: acceptance_rate (accepted / proposed MH moves; NaN when none were proposed), mh_steps
    (proposed moves in all), mh_steps_per_answer. The same seed (and batch_size) gives the same
    samples on the same device.
    """
    import torch
    from tqdm.auto import tqdm

    from powerflow.eval.evaluate import SampleBatch
    from powerflow.eval.generation import _to_completion, batch_seed, sampling_rows

    if n < 1:
        raise ValueError(f"need n >= 1 samples per prompt, got {n}")
    rows, eos_ids, pad_id = sampling_rows(model, tokenizer, prompts, n)  # (prompt i, ids), sample order
    completions: list[list] = [[] for _ in prompts]
    total = _Counts()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            starts = range(0, len(rows), cfg.batch_size)
            for batch_index, start in enumerate(tqdm(starts, desc="mcmc", disable=not progress, leave=False)):
                batch = rows[start:start + cfg.batch_size]
                chains = [_Chain(prompt=list(ids)) for _, ids in batch]
                generator = torch.Generator(device=model.device).manual_seed(batch_seed(seed, batch_index))
                counts = _run_chains(model, chains, cfg, eos_ids, pad_id, generator)
                total.generated_tokens += counts.generated_tokens
                total.proposed += counts.proposed
                total.accepted += counts.accepted
                for (prompt_index, _), chain in zip(batch, chains):
                    completions[prompt_index].append(_to_completion(chain.tokens, eos_ids, tokenizer))
    finally:
        model.train(was_training)
    stats = {
        "acceptance_rate": total.accepted / total.proposed if total.proposed else math.nan,
        "mh_steps": float(total.proposed),
        "mh_steps_per_answer": total.proposed / max(len(rows), 1),
    }
    return SampleBatch(completions=completions, generated_tokens=total.generated_tokens, stats=stats)


def mcmc_sampler(cfg: MCMCConfig) -> Sampler:
    """A `Sampler` for `powerflow.eval.evaluate.Scoring.sampler`: MCMC power sampling with cfg."""

    def sample(model, tokenizer, prompts: list[str], n: int, seed: int) -> SampleBatch:
        return mcmc_power_sample(model, tokenizer, prompts, n, cfg, seed=seed)

    return sample


def mcmc_for(cfg, alpha: float) -> Sampler:
    """The MCMC power-sampling baseline of a sweep at power α (baselines.mcmc_*, evaluate's batch)."""
    b = cfg.baselines
    return mcmc_sampler(MCMCConfig(alpha=alpha, max_new_tokens=b.mcmc_max_new_tokens, n_blocks=b.mcmc_blocks,
                                   n_mcmc=b.mcmc_steps, batch_size=cfg.evaluate.batch_size))


MCMC = Baseline("mcmc", "inference", "MCMC power sampling toward p_base^α (Metropolis-Hastings over blocks)",
                mcmc_for)

