"""Evaluation cost: what each scorer adds on top of generating the answers, and what the math
grader's worker process costs over calling math-verify in the same process.

1. Scorers on the embedded world (needs the main job's models/base and data/prepared).
   Baseline: sampling the eval answers (`generate_completions`, n = evaluate.n_samples).
   Measured in the same process on the same answers: grading, lexical diversity (distinct-n,
   ROUGE-L, self-BLEU), semantic diversity (all-MiniLM-L6-v2 embeddings, model load excluded)
   and the policy diagnostics (residual variance, E|y|: their own sampling and scoring).
   Reported: seconds per answer of each, and its ratio to sampling.
2. Math grading. Baseline: math-verify `verify(parse(gold), parse(pred))` called in this process
   with its signal timeouts off. Measured: `MathVerifier.equivalent_many` (one worker process,
   time-bounded per item). Reported: seconds per item of each and the ratio, worker start apart.

    .venv/bin/python -m benchmarks.eval_cost --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

def math_pairs(offset: int, n: int = 40) -> list[tuple[str, str]]:
    """3n distinct MATH500-style (prediction, gold) pairs: fractions vs decimals, intervals, roots.

    A fresh offset gives strings never seen before, so math-verify's parse cache never answers.
    """
    pairs = []
    for i in range(offset + 1, offset + n + 1):
        pairs += [(f"{i / (i + 1):.6g}", f"\\frac{{{i}}}{{{i + 1}}}"), (f"({i}, {i + 2}]", f"({i},{i + 2}]"),
                  (f"\\sqrt{{{4 * i * i}}}", f"{2 * i}")]
    return pairs


def _median_time(fn, repeats: int) -> float:
    """Median wall time of fn(r) over r = 0..repeats-1."""
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def math_grading(repeats: int, copies: int = 10) -> dict:
    """Seconds per item: math-verify in process (signals off) vs the worker-process verifier."""
    from math_verify import parse, verify

    from powerflow.eval.math import MathVerifier

    n_items = len(math_pairs(0))

    def in_process(r: int):
        for pred, gold in math_pairs(10_000 * (2 * r + 1)):
            verify(parse(f"${gold}$", parsing_timeout=None), parse(f"${pred}$", parsing_timeout=None),
                   timeout_seconds=None)

    with MathVerifier(timeout_s=5.0) as verifier:
        verifier.equivalent("1", "2")  # start the worker outside the timing
        start_s = verifier.worker_start_s
        worker = _median_time(lambda r: verifier.equivalent_many(math_pairs(10_000 * (2 * r + 2))), repeats)
    direct = _median_time(in_process, repeats)
    return {"items": n_items, "in_process_s_per_item": direct / n_items,
            "worker_s_per_item": worker / n_items, "ratio_worker_over_in_process": worker / direct,
            "worker_start_s": start_s}


def world_scorers(repeats: int) -> dict:
    """Seconds per answer of each scorer against sampling the answers, on the world's eval split."""
    from powerflow.config import load_pipeline_config
    from powerflow.eval.diagnostics import policy_diagnostics
    from powerflow.eval.diversity import diversity_metrics, load_embedder
    from powerflow.eval.generation import generate_completions
    from powerflow.eval.grading import family_graders
    from powerflow.pipeline.evaluate import prepared_split
    from powerflow.pipeline.loading import base_model_source, load_causal_lm, load_tokenizer

    cfg = load_pipeline_config("params.yaml")
    ecfg = cfg.evaluate
    prepared = prepared_split(cfg)
    rows = prepared.rows
    model = load_causal_lm(base_model_source(cfg))
    tok = load_tokenizer(base_model_source(cfg))
    prompts = [r["prompt"] for r in rows]
    embedder = load_embedder(ecfg.embedder)
    out: dict[str, list[float]] = {k: [] for k in ("sampling", "grading", "lexical", "semantic", "diagnostics")}
    for _ in range(repeats):
        start = time.perf_counter()
        sampled = generate_completions(model, tok, prompts, n=ecfg.n_samples, greedy=False,
                                       max_new_tokens=ecfg.max_new_tokens, seed=ecfg.seed, progress=False)
        out["sampling"].append(time.perf_counter() - start)
        texts = [[c.text for c in cs] for cs in sampled]
        start = time.perf_counter()
        with family_graders(prepared.answer_kinds, ecfg.math_timeout_s) as graders:
            for row, cs in zip(rows, sampled):
                for c in cs:
                    graders[row["family"]].grade(row["answer"], c.text)
        out["grading"].append(time.perf_counter() - start)
        start = time.perf_counter()
        diversity_metrics(texts, None)
        out["lexical"].append(time.perf_counter() - start)
        start = time.perf_counter()
        diversity_metrics(texts, embedder)  # lexical + semantic; the lexical part is subtracted
        out["semantic"].append(time.perf_counter() - start - out["lexical"][-1])
        start = time.perf_counter()
        policy_diagnostics(model, model, tok, prompts[:ecfg.diagnostics_prompts * 2], 1.0,
                           n_samples=ecfg.diagnostics_samples, max_new_tokens=ecfg.max_new_tokens)
        out["diagnostics"].append(time.perf_counter() - start)
    answers = len(prompts) * ecfg.n_samples
    medians = {k: statistics.median(v) for k, v in out.items()}
    return {"answers": answers, "seconds": out,
            "s_per_answer": {k: v / answers for k, v in medians.items()},
            "ratio_to_sampling": {k: v / medians["sampling"] for k, v in medians.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/eval_cost.json")
    args = parser.parse_args()
    results = {"math_grading": math_grading(args.repeats), "world_scorers": world_scorers(args.repeats)}
    m = results["math_grading"]
    print(f"math grading: in process {m['in_process_s_per_item'] * 1000:.1f} ms/item, worker process "
          f"{m['worker_s_per_item'] * 1000:.1f} ms/item (x{m['ratio_worker_over_in_process']:.2f}); "
          f"worker start {m['worker_start_s']:.2f} s")
    w = results["world_scorers"]
    for name, ratio in w["ratio_to_sampling"].items():
        print(f"{name:>12}: {w['s_per_answer'][name] * 1000:.2f} ms/answer (x{ratio:.2f} of sampling)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
