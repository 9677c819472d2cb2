"""MCMC power sampling on an enumerable model, checked against the exact p_base^α.

World: `random_base(seed=0, n_symbols=4)` (EOS + a..d), prompt "a", completions of at most L = 3
tokens: K = 85 terminal sequences, enumerated exactly by `powerflow.exact`. One block
(n_blocks=1, max_new_tokens=L), so the chain targets p^α over exactly these terminals.

Two kinds of check:
- exact, no sampling: the Metropolis–Hastings chain the sampler runs, written as a K×K matrix from
  `log_acceptance`, leaves p^α invariant (to 1e-12) with the length term; without it (the paper's
  formula) its stationary law is off by TV 0.084 at α = 2 (0.008 at α = 4).
- sampled, N = 4000 chains: the empirical law of the terminals vs the exact one. Noise floor of the
  TV estimate of an exact sampler, 0.5 Σ_y sqrt(p(1−p)/N) · sqrt(2/π): 0.0030 for p^4 and 0.0154
  for p^2 (asserted < 0.02, well under the 0.05 tolerance).

Measured (exact n-step law π_0 K^n from the proposal π_0; sampled TVs and tokens per chain with
seed 1 on 4000 chains): TV(π_0 K^n, p^α) falls below 0.05 after n = 2 MH steps at α = 4 (0.027;
sampled 0.030, 5.4 tokens sampled per chain) and n = 3 at α = 2 (0.029; sampled 0.029, 8.0 tokens
per chain). The tests run n_mcmc = 6 (exact TV 0.0010 at α = 4, 0.0047 at α = 2): sampled TV
0.0057 / 0.0137 at 12.0 / 13.5 tokens per chain (acceptance 0.86 / 0.77), while plain sampling at
temperature 1 writes E_p|y| = 2.66 tokens per answer (4.5× / 5.1×) and plain sampling at
temperature 1/α (the proposal, token-level power) stays at TV 0.145 / 0.202 from p^α.
"""

import math

import pytest
import torch

from powerflow.eval.generation import generate_completions
from powerflow.exact import enumerate_terminals, power_target, total_variation
from powerflow.sampling.mcmc import MCMCConfig, log_acceptance, mcmc_power_sample, mcmc_sampler, sample_suffixes
from powerflow.world.enumerable import random_base
from tests.model.sampler_contract import empirical_log_probs, tv_noise_floor

PROMPT = "a"
MAX_LENGTH = 3  # L: K = 1 + 4 + 16 + 64 = 85 terminals
N_CHAINS = 4000  # noise floor of the TV estimate <= 0.0154 (module docstring)
N_MCMC = 6  # exact TV to p^α after 6 steps: 0.0010 (α = 4), 0.0047 (α = 2)
TOLERANCE = 0.05


@pytest.fixture(scope="module")
def world():
    model, tokenizer = random_base(seed=0, n_symbols=4)
    model.eval()
    prompt_ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    base = enumerate_terminals(model, prompt_ids, tokenizer.eos_token_id, MAX_LENGTH)
    tempered = {a: enumerate_terminals(model, prompt_ids, tokenizer.eos_token_id, MAX_LENGTH, token_power=a)
                for a in (2.0, 4.0)}
    return model, tokenizer, base, tempered


def mh_kernel(sequences, log_p: torch.Tensor, log_q: torch.Tensor, alpha: float, length_correction: bool):
    """The sampler's one-block MH step as a matrix: K[x, x'] = P(next state x' | state x).

    From x: t uniform in {0..|x|−1}; x' drawn from q among the terminals extending x[:t], with
    probability q(x')/q(x[:t]) (q(x[:t]) = Σ of q over those terminals); accepted with
    min(1, exp(log_acceptance)); the rejected mass stays on x.
    """
    k = len(sequences)
    kernel = torch.zeros(k, k, dtype=torch.float64)
    for i, x in enumerate(sequences):
        for t in range(len(x)):
            extending = [j for j, y in enumerate(sequences) if y[:t] == x[:t]]
            prefix_p = torch.logsumexp(log_p[extending], 0).item()
            prefix_q = torch.logsumexp(log_q[extending], 0).item()
            for j in extending:
                log_a = log_acceptance(
                    alpha, log_p[j].item() - prefix_p, log_p[i].item() - prefix_p, log_q[j].item() - prefix_q,
                    log_q[i].item() - prefix_q, len(sequences[j]), len(x), length_correction,
                )
                move = math.exp(log_q[j].item() - prefix_q) / len(x) * math.exp(min(log_a, 0.0))
                kernel[i, j] += move
                kernel[i, i] -= move
        kernel[i, i] += 1.0
    return kernel


def n_step_law(initial_log_p: torch.Tensor, kernel: torch.Tensor, n: int) -> torch.Tensor:
    """log π_0 K^n."""
    law = initial_log_p.exp()
    for _ in range(n):
        law = law @ kernel
    return law.clamp(min=1e-300).log()


@pytest.mark.parametrize("alpha", [4.0, 2.0])
def test_mh_kernel_with_length_term_leaves_power_target_invariant(world, alpha):
    _, _, base, tempered = world
    kernel = mh_kernel(base.sequences, base.log_prob, tempered[alpha].log_prob, alpha, length_correction=True)
    target = power_target(base.log_prob, alpha).exp()
    assert torch.allclose(kernel.sum(1), torch.ones(len(target), dtype=torch.float64), atol=1e-12)
    assert float((target @ kernel - target).abs().max()) < 1e-12
    # and it converges there from the proposal: the tests' N_MCMC steps leave a bias well under the tolerance
    law = n_step_law(tempered[alpha].log_prob, kernel, N_MCMC)
    assert total_variation(law, power_target(base.log_prob, alpha)) < 0.01


def test_paper_formula_without_length_term_is_biased(world):
    _, _, base, tempered = world
    alpha = 2.0
    kernel = mh_kernel(base.sequences, base.log_prob, tempered[alpha].log_prob, alpha, length_correction=False)
    stationary = n_step_law(tempered[alpha].log_prob, kernel, 500)
    assert float((stationary.exp() @ kernel - stationary.exp()).abs().max()) < 1e-10  # converged
    assert total_variation(stationary, power_target(base.log_prob, alpha)) > 0.07  # measured 0.084


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [4.0, 2.0])
def test_sampler_matches_power_distribution_and_beats_low_temperature(world, alpha):
    model, tokenizer, base, tempered = world
    target = power_target(base.log_prob, alpha)
    assert tv_noise_floor(target, N_CHAINS) < 0.02
    cfg = MCMCConfig(alpha=alpha, max_new_tokens=MAX_LENGTH, n_blocks=1, n_mcmc=N_MCMC, batch_size=N_CHAINS)
    batch = mcmc_power_sample(model, tokenizer, [PROMPT], N_CHAINS, cfg, seed=1)
    sampled = empirical_log_probs([c.token_ids for c in batch.completions[0]], base.sequences)
    mcmc_tv = total_variation(sampled, target)
    assert mcmc_tv <= TOLERANCE

    plain = generate_completions(model, tokenizer, [PROMPT], n=N_CHAINS, greedy=False, max_new_tokens=MAX_LENGTH,
                                 temperature=1 / alpha, seed=1, batch_size=N_CHAINS, progress=False)
    plain_tv = total_variation(empirical_log_probs([c.token_ids for c in plain[0]], base.sequences), target)
    assert total_variation(tempered[alpha].log_prob, target) > 0.14  # exact: 0.145 (α = 4), 0.202 (α = 2)
    assert plain_tv > 0.1
    assert plain_tv > mcmc_tv + TOLERANCE

    # cost: one proposal per chain and step on top of the first block, each at least one token
    assert batch.stats["mh_steps"] == N_CHAINS * N_MCMC
    assert batch.generated_tokens >= N_CHAINS * (N_MCMC + 1)
    assert 0.0 < batch.stats["acceptance_rate"] < 1.0


@pytest.mark.slow
def test_sampler_follows_its_own_kernel_with_the_paper_formula(world):
    # Without the length term the sampler must still be the chain it claims to be: its law after
    # N_MCMC steps is π_0 K^N of that kernel, which stays away from p^α.
    model, tokenizer, base, tempered = world
    alpha = 2.0
    kernel = mh_kernel(base.sequences, base.log_prob, tempered[alpha].log_prob, alpha, length_correction=False)
    law = n_step_law(tempered[alpha].log_prob, kernel, N_MCMC)
    target = power_target(base.log_prob, alpha)
    cfg = MCMCConfig(alpha=alpha, max_new_tokens=MAX_LENGTH, n_blocks=1, n_mcmc=N_MCMC, batch_size=N_CHAINS,
                     length_correction=False)
    batch = mcmc_power_sample(model, tokenizer, [PROMPT], N_CHAINS, cfg, seed=2)
    sampled = empirical_log_probs([c.token_ids for c in batch.completions[0]], base.sequences)
    assert total_variation(sampled, law) <= TOLERANCE
    assert total_variation(sampled, target) > TOLERANCE  # exact: 0.085


def test_without_mh_steps_the_sampler_is_proposal_sampling(world):
    # n_mcmc = 0 and one token per block (B = 1): the blocks just grow the proposal's sample.
    model, tokenizer, base, tempered = world
    alpha = 4.0
    cfg = MCMCConfig(alpha=alpha, max_new_tokens=MAX_LENGTH, n_blocks=MAX_LENGTH, n_mcmc=0, batch_size=N_CHAINS)
    batch = mcmc_power_sample(model, tokenizer, [PROMPT], N_CHAINS, cfg, seed=3)
    completions = batch.completions[0]
    sampled = empirical_log_probs([c.token_ids for c in completions], base.sequences)
    assert tv_noise_floor(tempered[alpha].log_prob, N_CHAINS) < 0.02
    assert total_variation(sampled, tempered[alpha].log_prob) <= TOLERANCE
    assert batch.generated_tokens == sum(c.n_tokens for c in completions)
    assert batch.stats["mh_steps"] == 0 and math.isnan(batch.stats["acceptance_rate"])


def test_suffix_log_probs_equal_unpadded_rescoring(world):
    model, _, _, _ = world
    prefixes = [[1], [1, 2, 3, 1], [2, 2], [3, 1, 2]]
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        suffixes = sample_suffixes(model, prefixes, [5, 3, 6, 1], 4.0, {0}, 0, generator)
        for prefix, suffix, budget in zip(prefixes, suffixes, [5, 3, 6, 1]):
            assert 1 <= len(suffix.tokens) <= budget
            assert 0 not in suffix.tokens[:-1]  # cut at the first EOS
            assert suffix.tokens[-1] == 0 or len(suffix.tokens) == budget
            ids = torch.tensor([prefix + suffix.tokens])
            logits = model(input_ids=ids).logits[0, len(prefix) - 1:-1].float()
            tokens = torch.tensor(suffix.tokens)
            log_p = torch.log_softmax(logits, -1).gather(-1, tokens[:, None]).squeeze(-1)
            log_q = torch.log_softmax(4.0 * logits, -1).gather(-1, tokens[:, None]).squeeze(-1)
            assert torch.allclose(torch.tensor(suffix.log_p), log_p, atol=1e-5)
            assert torch.allclose(torch.tensor(suffix.log_q), log_q, atol=1e-5)


def test_multi_block_completions_are_well_formed_and_seeded(world):
    model, tokenizer, _, _ = world
    model.train()
    # B = 2: three blocks; batch_size 5 makes batches straddle the two prompts
    cfg = MCMCConfig(alpha=2.0, max_new_tokens=6, n_blocks=3, n_mcmc=2, batch_size=5)
    prompts, n = ["a", "b c"], 8
    batch = mcmc_power_sample(model, tokenizer, prompts, n, cfg, seed=7)
    assert model.training  # mode restored
    model.eval()
    assert [len(cs) for cs in batch.completions] == [n, n]
    for completion in (c for cs in batch.completions for c in cs):
        ids = completion.token_ids
        assert 1 <= completion.n_tokens == len(ids) <= cfg.max_new_tokens
        assert completion.truncated == (ids[-1] != tokenizer.eos_token_id)
        assert tokenizer.eos_token_id not in ids[:-1]
        assert not completion.truncated or completion.n_tokens == cfg.max_new_tokens
        assert completion.text == tokenizer.decode([t for t in ids if t != tokenizer.eos_token_id])
    chains = len(prompts) * n
    # every chain runs block 1's steps; a finished chain runs no more blocks
    assert chains * cfg.n_mcmc <= batch.stats["mh_steps"] <= chains * cfg.n_mcmc * 3
    assert batch.stats["mh_steps_per_answer"] == batch.stats["mh_steps"] / chains
    assert 0.0 <= batch.stats["acceptance_rate"] <= 1.0
    assert batch.generated_tokens >= sum(c.n_tokens for cs in batch.completions for c in cs) + batch.stats["mh_steps"]

    again = mcmc_sampler(cfg)(model, tokenizer, prompts, n, 7)
    assert again.completions == batch.completions and again.generated_tokens == batch.generated_tokens
    other = mcmc_power_sample(model, tokenizer, prompts, n, cfg, seed=8)
    assert other.completions != batch.completions


def test_mcmc_sampler_plugs_into_evaluate_model(world):
    # The Sampler contract end to end: the MCMC cost and acceptance reach the metrics.
    from tests.model.sampler_contract import metrics_with_sampler

    model, tokenizer, _, _ = world
    sampler = mcmc_sampler(MCMCConfig(alpha=4.0, max_new_tokens=4, n_blocks=2, n_mcmc=3, batch_size=8))
    metrics = metrics_with_sampler(model, tokenizer, sampler)
    assert 0.0 <= metrics["sampler/acceptance_rate"] <= 1.0
    assert metrics["sampler/mh_steps_per_answer"] >= 3
    # every answer costs its own tokens plus at least one token per MH proposal
    assert metrics["cost/inference_tokens_per_answer"] >= metrics["cost/tokens_per_answer"] + 3
