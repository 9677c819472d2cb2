"""The sampler end to end: `verbalized_sampler`, a `Sampler` for `evaluate_model` that prompts the model,
generates its responses (conversation by conversation for multi-turn methods), parses each and fills
the answer slots."""

from __future__ import annotations

import math
import random

from powerflow.eval.evaluate import SampleBatch, Sampler
from powerflow.eval.generation import Completion, batch_seed, generate_completions
from powerflow.registry import Baseline
from powerflow.sampling.verbalized.config import MULTI_TURN_METHODS, VS_METHODS, VerbalizedConfig
from powerflow.sampling.verbalized.draw import sample_verbalized
from powerflow.sampling.verbalized.parsing import direct_answer, parse_candidates, parse_cot_answer, parse_sequence
from powerflow.sampling.verbalized.prompts import build_messages, continue_conversation, render_prompt


def answers_per_response(method: str, k: int) -> int:
    """Answers one response yields: k for sequence and vs_* (k candidates), 1 otherwise."""
    return k if method == "sequence" or method in VS_METHODS else 1


def verbalized_sampler(
    cfg: VerbalizedConfig, *, batch_size: int = 64, backend: str = "transformers", progress: bool = False,
) -> Sampler:
    """A Sampler (evaluate_model's `Scoring.sampler`) running cfg.method on the model.

    Per prompt: R = ceil(n / a) responses, a = `answers_per_response` (k, or 1 for direct, cot and
    multi_turn); multi-turn methods get them from ceil(R / turns) conversations, each turn a new
    generation with the conversation so far. Each response fills a slots, in order, and the first
    n slots are the answers:
        vs_*        a draws (with replacement) from its verbalized distribution (`sample_verbalized`)
        sequence    its listed items in order (fewer than k: the rest of its slots stay empty)
        direct, multi_turn   the reply itself;   cot   its final response (`parse_cot_answer`)
    A response that yields nothing (parse failure, empty reply) fills its slots with empty answers,
    which graders count as no answer, never a guess. Completion.n_tokens = the response's generated
    tokens split evenly over its a slots (integer shares summing to the total); truncated = the
    response's. stats: parse_failures = failed responses / responses, candidates_per_response =
    mean items read per response (failures count 0), responses_per_prompt = R.
    """

    def sample(model, tokenizer, prompts: list[str], n: int, seed: int) -> SampleBatch:
        if n < 1:
            raise ValueError(f"need n >= 1 answers per prompt, got {n}")
        per_response = answers_per_response(cfg.method, cfg.k)
        n_responses = math.ceil(n / per_response)
        responses = _generate_responses(model, tokenizer, prompts, n_responses, seed, cfg,
                                        batch_size=batch_size, backend=backend, progress=progress)
        completions: list[list[Completion]] = []
        failures = candidates = 0
        for index, per_prompt in enumerate(responses):
            rng = random.Random(batch_seed(seed, index))
            slots: list[Completion] = []
            for response in per_prompt:
                answers, n_candidates = _answers_of(response.text, cfg, per_response, rng)
                failures += int(n_candidates == 0)
                candidates += n_candidates
                shares = _even_shares(response.n_tokens, per_response)
                slots += [Completion(answer, share, response.truncated) for answer, share in zip(answers, shares)]
            completions.append(slots[:n])
        n_total = sum(len(per_prompt) for per_prompt in responses)
        stats = {"parse_failures": failures / n_total, "candidates_per_response": candidates / n_total,
                 "responses_per_prompt": float(n_responses)}
        generated = sum(r.n_tokens for per_prompt in responses for r in per_prompt)
        return SampleBatch(completions, generated, stats)

    return sample


def _answers_of(text: str, cfg: VerbalizedConfig, slots: int, rng: random.Random) -> tuple[list[str], int]:
    """(the `slots` answers of one response, empty strings where none; items read from it)."""
    if cfg.method in VS_METHODS:
        parsed = parse_candidates(text, cfg.format)
        if parsed.failed:
            return [""] * slots, 0
        draws = [sample_verbalized(parsed.candidates, rng, cfg.threshold, parsed.stated) or "" for _ in range(slots)]
        return draws, len(parsed.candidates)
    if cfg.method == "sequence":
        items = parse_sequence(text)
        used = items[:slots]
        return used + [""] * (slots - len(used)), len(items)
    answer = parse_cot_answer(text) if cfg.method == "cot" else direct_answer(text)
    return [answer or ""], int(answer is not None)


def _even_shares(total: int, parts: int) -> list[int]:
    """total split into `parts` integers differing by at most 1, summing to total."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def _generate_responses(model, tokenizer, prompts, n_responses, seed, cfg, *, batch_size, backend, progress):
    """n_responses completions per prompt, conversation by conversation for multi-turn methods."""
    common = {"greedy": False, "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "top_p": 1.0,
              "batch_size": batch_size, "progress": progress, "backend": backend}
    first = [build_messages(cfg.method, prompt, cfg) for prompt in prompts]
    rendered = [render_prompt(tokenizer, messages) for messages in first]
    if cfg.method not in MULTI_TURN_METHODS or cfg.turns == 1:
        return generate_completions(model, tokenizer, rendered, n=n_responses, seed=seed, **common)
    n_conversations = math.ceil(n_responses / cfg.turns)
    # conversation c of each prompt has min(turns, n_responses - c * turns) turns
    lengths = [min(cfg.turns, n_responses - c * cfg.turns) for c in range(n_conversations)]
    opening = generate_completions(model, tokenizer, rendered, n=n_conversations, seed=seed, **common)
    replies = {(p, c): [opening[p][c]] for p in range(len(prompts)) for c in range(n_conversations)}
    histories = {(p, c): first[p] for p, c in replies}
    for turn in range(1, cfg.turns):
        active = [key for key in replies if lengths[key[1]] > turn]
        if not active:
            break
        for key in active:
            histories[key] = continue_conversation(histories[key], replies[key][-1].text, turn, cfg)
        followed = generate_completions(model, tokenizer, [render_prompt(tokenizer, histories[key]) for key in active],
                                        n=1, seed=batch_seed(seed, turn), **common)
        for key, reply in zip(active, followed):
            replies[key].append(reply[0])
    return [[r for c in range(n_conversations) for r in replies[(p, c)]] for p in range(len(prompts))]


def verbalized_for(cfg, alpha: float | None = None) -> Sampler:
    """The verbalized-sampling baseline of a sweep (baselines.verbalized_method, verbalized_k,
    verbalized_max_new_tokens), batched as evaluate.batch_size."""
    b = cfg.baselines
    vs = VerbalizedConfig(method=b.verbalized_method, k=b.verbalized_k, max_new_tokens=b.verbalized_max_new_tokens)
    return verbalized_sampler(vs, batch_size=cfg.evaluate.batch_size, backend=cfg.evaluate.backend)


VERBALIZED = Baseline("verbalized", "always", "verbalized sampling: k answers with probabilities, one drawn",
                      verbalized_for)

