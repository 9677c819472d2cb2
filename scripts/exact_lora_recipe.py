"""The presets' LoRA recipe against the exact target over every sequence, on enumerable models.

On the world, TB's fixed point below α = 1 puts much of its mass outside the answers the oracle
enumerates (docs/recipe.md §1, "Below one"), so "on target at α ≤ 1" cannot be checked there. Here
the whole sequence space of a random base (vocabulary of 5, completions up to 4 tokens: 341
terminal sequences, truncated ones included) is enumerated, so KL(π ‖ p_base^α / Z) is exact
whatever α. Each seed is another random base and another training run; the settings are params.yaml's
`exact:` section, with the adapter alone (`plain`, what `powerflow verify-exact` trains) or with the
final norm's gain trained beside it at 30 × the rate (`recipe`, the world-lora and GPU presets).

    .venv/bin/python scripts/exact_lora_recipe.py --alphas 0.5 0.75 4 --seeds 0 1 2

Results are appended to benchmarks/results/exact_lora_recipe.jsonl (a rerun skips what is there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "exact_lora_recipe.jsonl"

#: The LoRA parametrisations compared: `plain` (the adapter alone) and `recipe` (world-lora's).
PARAMETRISATIONS = ("plain", "recipe")


def parametrisation(variant: str) -> dict:
    """Keyword arguments of `powerflow.verify.train_and_measure` for `variant`."""
    from powerflow.presets import preset_lora_parametrisation

    return preset_lora_parametrisation("world-lora") if variant == "recipe" else {}


def run_one(variant: str, alpha: float, seed: int) -> dict:
    """One exact-check run of `variant` at α with the base and training seed `seed`."""
    import torch

    from powerflow.config.sections import load_exact_config
    from powerflow.verify import train_and_measure

    torch.set_num_threads(1)
    cfg = replace(load_exact_config(ROOT / "params.yaml"), seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        report = train_and_measure(cfg, alpha, "tb", tmp, **parametrisation(variant))
    keep = ("kl/base_target", "kl/policy_target", "truncated_mass/policy", "truncated_mass/target",
            "length/policy", "length/target", "train/seconds")
    return {"variant": variant, "alpha": alpha, "seed": seed, **{k: report[k] for k in keep}}


def mean_se(values: list[float]) -> str:
    """'mean ± standard error' of the seeds' values."""
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) / len(values) ** 0.5:.4f}"


def table(results: list[dict]) -> str:
    """A markdown table: one row per (variant, α), seeds' mean ± se."""
    lines = ["| LoRA | α | seeds | KL(p_base‖target) | KL(π‖target) | max over seeds | truncated mass π (target) |",
             "|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["variant"], r["alpha"]), []).append(r)
    for (variant, alpha), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        kl = [r["kl/policy_target"] for r in rs]
        lines.append(f"| {variant} | {alpha:g} | {len(rs)} | {mean_se([r['kl/base_target'] for r in rs])} | "
                     f"{mean_se(kl)} | {max(kl):.4f} | {mean_se([r['truncated_mass/policy'] for r in rs])} "
                     f"({mean_se([r['truncated_mass/target'] for r in rs])}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.5, 0.75, 4.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(PARAMETRISATIONS), choices=list(PARAMETRISATIONS))
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    done = [json.loads(line) for line in a.out.read_text().splitlines()] if a.out.exists() else []
    seen = {(r["variant"], r["alpha"], r["seed"]) for r in done}
    for variant in a.variants:
        for alpha in a.alphas:
            for seed in a.seeds:
                if (variant, alpha, seed) in seen:
                    continue
                result = run_one(variant, alpha, seed)
                a.out.parent.mkdir(parents=True, exist_ok=True)
                with a.out.open("a") as f:
                    f.write(json.dumps(result) + "\n")
                done.append(result)
                print(f"{variant} α={alpha:g} seed={seed}: KL(π‖target) {result['kl/policy_target']:.4f} "
                      f"(base {result['kl/base_target']:.4f}), {result['train/seconds']:.0f} s", flush=True)
    wanted = [r for r in done if r["variant"] in a.variants and r["alpha"] in a.alphas and r["seed"] in a.seeds]
    print(table(wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
