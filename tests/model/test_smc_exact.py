"""Power-SMC on an enumerable model, checked against the exact p_base^α.

World: `random_base(seed=0, n_symbols=4)` (EOS + a..d), prompt "a", completions of at most L = 3
tokens: K = 85 terminal sequences, enumerated exactly by `powerflow.exact` (as
tests/model/test_mcmc_exact.py does).

Two kinds of check:
- exact, no sampling: for every terminal y, log q(y) + Σ_t log w_t(y) = α log p(y) to 1e-9
  (`path_log_weights` on the model's own next-token rows, in float64), with and without the α ramp,
  whether the population stops at |y| or at L, at α = 4, 2 and 0.5; without the ramp q is
  temperature-1/α sampling (`enumerate_terminals(token_power=α)`), and with it q still sums to one
  over the terminals. The sampler's own final weights equal the identity's on its particles, and its
  KV cache follows resampled particles (their log p equals an unpadded rescoring).
- sampled, 4000 answers, each from its own system of N = 16 particles, no ramp: the empirical law
  of the answers vs the exact p^α. Noise floor of the TV estimate of an exact sampler,
  0.5 Σ_y sqrt(p(1−p)/n) · sqrt(2/π): 0.0030 for p^4 and 0.0154 for p^2 (asserted < 0.02, well
  under the 0.05 tolerance). N = 1 is the proposal itself (temperature 1/α), far from p^α.

Measured (seed 1, 4000 answers, CPU; tokens per answer = every particle's tokens / answers):
α = 4: TV 0.0032 at N = 16 (34.8 tokens per answer), 0.0037 at N = 8 (17.4), 0.0018 at N = 16 with
a 2-token ramp; α = 2: TV 0.0186 at N = 16 (39.3 tokens per answer), 0.0324 at N = 8 (19.7),
0.0127 at N = 32 (78.6): at α = 2 the O(1/N) bias of self-normalised weights shows above the
noise floor at N = 8. N = 1 (the proposal, 2.2 / 2.5 tokens per answer) stays at TV 0.143 / 0.200,
as exact temperature 1/α does (0.145 / 0.202). Plain sampling at temperature 1 writes
E_p|y| = 2.66 tokens per answer, so N = 16 costs 13× / 15× its tokens (MCMC with 6 steps: 4.5× /
5.1× at TV 0.006 / 0.014). With L = 3 a system rarely resamples at the default threshold 0.5
(0.025 resamplings per system at α = 4; final ESS ≈ 0.85 N).
"""

import copy

import pytest
import torch

from powerflow.eval.generation import generate_completions
from powerflow.exact import enumerate_terminals, power_target, total_variation
from powerflow.sampling.smc import (
    SMCConfig,
    _run_systems,
    alpha_schedule,
    path_log_weights,
    power_smc_sample,
    smc_sampler,
)
from powerflow.world.enumerable import random_base
from tests.model.sampler_contract import empirical_log_probs, tv_noise_floor

PROMPT = "a"
MAX_LENGTH = 3  # L: K = 1 + 4 + 16 + 64 = 85 terminals
N_ANSWERS = 4000  # noise floor of the TV estimate <= 0.0154 (module docstring)
N_PARTICLES = 16
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


@pytest.fixture(scope="module")
def exact_world(world):
    """The same model in float64, its terminals, and each terminal's next-token rows log p(·|x ⊕ y_<t)."""
    model, tokenizer, _, _ = world
    model64 = copy.deepcopy(model).double()
    prompt_ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    base = enumerate_terminals(model64, prompt_ids, tokenizer.eos_token_id, MAX_LENGTH)
    rows = [next_token_rows(model64, prompt_ids, y) for y in base.sequences]
    return model64, prompt_ids, base, rows


@torch.no_grad()
def next_token_rows(model, prompt_ids, tokens) -> torch.Tensor:
    """[|y|, V] float64 log p(·|x ⊕ y_<t) for t = 1..|y|, from one unpadded forward."""
    ids = torch.tensor([list(prompt_ids) + list(tokens)])
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1]
    return torch.log_softmax(logits.double(), dim=-1)


# ------------------------------------------------------------------------------ exact, no sampling


@pytest.mark.parametrize("alpha", [4.0, 2.0, 0.5])
@pytest.mark.parametrize("ramp", [0, 2, 5])  # 5 > L: clamped to a 3-token ramp
def test_weights_times_proposal_is_the_power_on_every_terminal(exact_world, alpha, ramp):
    _, _, base, rows = exact_world
    alphas = alpha_schedule(alpha, ramp, MAX_LENGTH)
    log_q = torch.empty(len(base.sequences), dtype=torch.float64)
    for i, (y, step_rows) in enumerate(zip(base.sequences, rows)):
        for stop in sorted({len(y), MAX_LENGTH}):  # the population stops when y ends, or at L
            q, w = path_log_weights(step_rows, y, alphas, stop_step=stop)
            assert abs(q + w - alpha * base.log_prob[i].item()) < 1e-9, (y, stop)
        log_q[i] = q
    # q is a distribution over the terminals, and the weights are not constant (q is not p^α)
    assert abs(torch.logsumexp(log_q, 0).item()) < 1e-9
    log_w = alpha * base.log_prob - log_q
    assert float(log_w.max() - log_w.min()) > 0.1
    if ramp == 0:  # q is token-level temperature 1/α
        tempered = enumerate_terminals(exact_world[0], exact_world[1], 0, MAX_LENGTH, token_power=alpha)
        assert float((log_q - tempered.log_prob).abs().max()) < 1e-9


@pytest.mark.parametrize("ramp", [0, 2])
def test_sampler_weights_are_the_identitys_and_its_cache_follows_resampling(world, ramp):
    # ess_threshold 0: never resample, so each particle's final weight is its path's (the identity's);
    # ess_threshold 1: resample at almost every step, and each particle's log p still matches rescoring,
    # which fails if a resampled row kept another particle's KV cache.
    model, _, _, _ = world
    prompts = [[1], [2, 3, 1]]  # two prompt lengths: left padding in the batch
    alpha, horizon = 0.5, 5  # a flattening power: long, diverse particles that resample (at α = 4 all stop at EOS)
    alphas = alpha_schedule(alpha, ramp, horizon)
    for threshold in (0.0, 1.0):
        cfg = SMCConfig(alpha=alpha, max_new_tokens=horizon, n_particles=6, ess_threshold=threshold,
                        ramp_tokens=ramp)
        generator = torch.Generator().manual_seed(5)
        with torch.inference_mode():
            population = _run_systems(model, prompts, cfg, {0}, 0, generator)
            stop = population.tokens.shape[1]
            for row, tokens in enumerate(population.tokens.tolist()):
                y = tokens[:tokens.index(0) + 1] if 0 in tokens else tokens
                step_rows = next_token_rows(model, prompts[row // cfg.n_particles], y)
                log_p = float(sum(step_rows[t, v] for t, v in enumerate(y)))
                assert population.log_p[row].item() == pytest.approx(log_p, abs=1e-4)
                if threshold == 0.0:
                    log_q, log_w = path_log_weights(step_rows, y, alphas, stop_step=stop)
                    assert population.log_w[row].item() == pytest.approx(log_w, abs=1e-4)
                    assert log_q + population.log_w[row].item() == pytest.approx(alpha * log_p, abs=1e-4)
        assert (population.resamples > 0) == (threshold == 1.0)


# ------------------------------------------------------------------------------ sampled


@pytest.mark.slow  # 5-8 s each on 2 busy CPU cores: 64,000 particles
@pytest.mark.parametrize("alpha", [4.0, 2.0])
def test_sampler_matches_power_distribution_and_beats_low_temperature(world, alpha):
    model, tokenizer, base, tempered = world
    target = power_target(base.log_prob, alpha)
    assert tv_noise_floor(target, N_ANSWERS) < 0.02
    cfg = SMCConfig(alpha=alpha, max_new_tokens=MAX_LENGTH, n_particles=N_PARTICLES,
                    batch_size=N_ANSWERS * N_PARTICLES)
    batch = power_smc_sample(model, tokenizer, [PROMPT], N_ANSWERS, cfg, seed=1)
    completions = batch.completions[0]
    smc_tv = total_variation(empirical_log_probs([c.token_ids for c in completions], base.sequences), target)
    assert smc_tv <= TOLERANCE  # measured 0.0032 (α = 4), 0.0186 (α = 2)

    plain = generate_completions(model, tokenizer, [PROMPT], n=N_ANSWERS, greedy=False, max_new_tokens=MAX_LENGTH,
                                 temperature=1 / alpha, seed=1, batch_size=N_ANSWERS, progress=False)
    plain_tv = total_variation(empirical_log_probs([c.token_ids for c in plain[0]], base.sequences), target)
    assert plain_tv > 0.1 and plain_tv > smc_tv + TOLERANCE

    # cost: all N particles draw the first token; no particle draws more than L
    assert N_ANSWERS * N_PARTICLES <= batch.generated_tokens <= N_ANSWERS * N_PARTICLES * MAX_LENGTH
    assert batch.generated_tokens > N_PARTICLES * sum(c.n_tokens for c in completions) / 2
    assert batch.stats["particles"] == N_PARTICLES
    assert 0.0 <= batch.stats["resamples_per_system"] <= MAX_LENGTH - 1
    assert 1 / N_PARTICLES <= batch.stats["final_ess_fraction"] <= 1.0


@pytest.mark.parametrize("alpha", [4.0, 2.0])
def test_one_particle_is_the_proposal_far_from_the_power_target(world, alpha):
    # N = 1: no correction can act, so the answer is a temperature-1/α sample: the test above could fail.
    model, tokenizer, base, tempered = world
    cfg = SMCConfig(alpha=alpha, max_new_tokens=MAX_LENGTH, n_particles=1, batch_size=N_ANSWERS)
    batch = power_smc_sample(model, tokenizer, [PROMPT], N_ANSWERS, cfg, seed=3)
    completions = batch.completions[0]
    sampled = empirical_log_probs([c.token_ids for c in completions], base.sequences)
    assert tv_noise_floor(tempered[alpha].log_prob, N_ANSWERS) < 0.02
    assert total_variation(sampled, tempered[alpha].log_prob) <= TOLERANCE
    assert total_variation(sampled, power_target(base.log_prob, alpha)) > 0.1  # measured 0.143 / 0.200
    assert batch.generated_tokens == sum(c.n_tokens for c in completions)
    assert batch.stats["resamples_per_system"] == 0.0 and batch.stats["final_ess_fraction"] == 1.0


def test_completions_are_well_formed_seeded_and_batches_straddle_prompts(world):
    model, tokenizer, _, _ = world
    model.train()
    # batch_size 10 rows of 3 particles: 3 systems per batch, so batches straddle the two prompts
    cfg = SMCConfig(alpha=2.0, max_new_tokens=6, n_particles=3, ess_threshold=0.9, ramp_tokens=2, batch_size=10)
    prompts, n = ["a", "b c"], 5
    batch = power_smc_sample(model, tokenizer, prompts, n, cfg, seed=7)
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
    assert batch.generated_tokens >= len(prompts) * n * cfg.n_particles
    assert batch.stats["resamples_per_system"] > 0

    again = smc_sampler(cfg)(model, tokenizer, prompts, n, 7)
    assert again.completions == batch.completions and again.generated_tokens == batch.generated_tokens
    assert again.stats == batch.stats
    other = power_smc_sample(model, tokenizer, prompts, n, cfg, seed=8)
    assert other.completions != batch.completions


def test_smc_sampler_plugs_into_evaluate_model(world):
    # The Sampler contract end to end: the SMC cost and its resampling statistics reach the metrics.
    from tests.model.sampler_contract import metrics_with_sampler

    model, tokenizer, _, _ = world
    sampler = smc_sampler(SMCConfig(alpha=4.0, max_new_tokens=4, n_particles=4, batch_size=16))
    metrics = metrics_with_sampler(model, tokenizer, sampler)
    assert metrics["sampler/particles"] == 4
    assert 0.0 < metrics["sampler/final_ess_fraction"] <= 1.0
    # every answer costs at least the first token of each of its 4 particles
    assert metrics["cost/inference_tokens_per_answer"] >= 4
    assert metrics["cost/inference_tokens_per_answer"] > metrics["cost/tokens_per_answer"]
