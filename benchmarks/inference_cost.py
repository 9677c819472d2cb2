"""Inference cost per answer: MCMC power sampling, Power-SMC and the fine-tuned α-power policy, each
divided by plain sampling from the base model, measured in the same process on the same prompts.

Baseline: `generate_completions` from the base model at temperature 1 (what an untrained user pays).
Measured: MCMC power sampling from the base model toward p^α (baselines.mcmc_* settings of
params.yaml), Power-SMC toward p^α (baselines.smc_particles and smc_ramp_tokens, answers of
mcmc_max_new_tokens) and plain sampling from the fine-tuned policy alpha-<α>-<objective>-s<seed>
(models/policies/, from the main job; left out, with a note, when it has not been trained here).
Reported: tokens generated per answer (every sampled token, MCMC's rejected proposals and every SMC
particle's tokens included) and wall seconds per answer, medians over repeats, and their ratios.

    .venv/bin/python -m benchmarks.inference_cost --alpha 4.0 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def timed_batch(fn) -> tuple[float, int, int]:
    """(seconds, generated tokens, answers) of one call returning a SampleBatch."""
    start = time.perf_counter()
    batch = fn()
    seconds = time.perf_counter() - start
    return seconds, batch.generated_tokens, sum(len(cs) for cs in batch.completions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", default="4.0",
                        help="α of MCMC, of Power-SMC and of the policy alpha-<α>-<objective>-s<seed>")
    parser.add_argument("--objective", default=None, help="objective of the policy (default: sweep.objectives' first)")
    parser.add_argument("--seed", type=int, default=0, help="training seed of the policy (one of sweep.seeds)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=32, help="reasoning eval prompts used")
    parser.add_argument("--out", default="benchmarks/results/inference_cost.json")
    args = parser.parse_args()

    from powerflow.config import load_pipeline_config
    from powerflow.pipeline.evaluate import evaluation_rows, method_sampler
    from powerflow.pipeline.layout import layout_of
    from powerflow.pipeline.loading import base_model_source, load_causal_lm, load_tokenizer
    from powerflow.sampling.temperature import low_temperature_sampler

    cfg = load_pipeline_config("params.yaml")
    e = cfg.evaluate
    prompts = [r["prompt"] for r in evaluation_rows(cfg) if r["family"] == "reasoning"][: args.prompts]
    tok = load_tokenizer(base_model_source(cfg))
    base = load_causal_lm(base_model_source(cfg))
    objective = args.objective or cfg.sweep.objectives[0]
    policy_dir = layout_of(cfg).policy(cfg.sweep.member(args.alpha, objective, args.seed, listed=False).name)
    policy = load_causal_lm(str(policy_dir)) if policy_dir.is_dir() else None
    if policy is None:
        print(f"no policy at {policy_dir} (the main job trains it): policy_plain is left out")
    plain = low_temperature_sampler(1.0, e.max_new_tokens, e.batch_size)  # temperature 1 = plain sampling
    mcmc = method_sampler(cfg, {"method": "mcmc", "alpha": float(args.alpha)})
    smc = method_sampler(cfg, {"method": "smc", "alpha": float(args.alpha)})
    methods = {
        "base_plain": lambda s: plain(base, tok, prompts, e.n_samples, s),
        "mcmc": lambda s: mcmc(base, tok, prompts, e.n_samples, s),
        "smc": lambda s: smc(base, tok, prompts, e.n_samples, s),
    }
    if policy is not None:
        methods["policy_plain"] = lambda s: plain(policy, tok, prompts, e.n_samples, s)
    raw: dict[str, list[tuple[float, int, int]]] = {k: [] for k in methods}
    for r in range(args.repeats):  # alternate the methods so drift hits them alike
        for name, fn in methods.items():
            raw[name].append(timed_batch(lambda: fn(r)))
    per_answer = {name: {"seconds": statistics.median(s / n for s, _, n in runs),
                         "tokens": statistics.median(t / n for _, t, n in runs)} for name, runs in raw.items()}
    base_cost = per_answer["base_plain"]
    results = {"alpha": float(args.alpha), "prompts": len(prompts), "n_samples": e.n_samples,
               "mcmc": {"max_new_tokens": cfg.baselines.mcmc_max_new_tokens, "blocks": cfg.baselines.mcmc_blocks,
                        "steps": cfg.baselines.mcmc_steps},
               "smc": {"max_new_tokens": cfg.baselines.mcmc_max_new_tokens, "particles": cfg.baselines.smc_particles,
                       "ramp_tokens": cfg.baselines.smc_ramp_tokens},
               "policy": policy_dir.name if policy is not None else None,
               "per_answer": per_answer, "raw": raw,
               "ratio_to_base_plain": {name: {k: v[k] / base_cost[k] for k in ("seconds", "tokens")}
                                       for name, v in per_answer.items()}}
    for name, ratio in results["ratio_to_base_plain"].items():
        cost = per_answer[name]
        print(f"{name:>13}: {cost['tokens']:.1f} tokens/answer (x{ratio['tokens']:.2f}), "
              f"{cost['seconds'] * 1000:.2f} ms/answer (x{ratio['seconds']:.2f})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
