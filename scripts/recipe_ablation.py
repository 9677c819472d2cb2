"""Recipe ablation on the embedded world: train variants × α × seeds, measure each against the exact p_base^α.

Every run trains one policy with PowerFlowTrainer from `models/base` on the prepared prompts (run
`powerflow prepare` and `powerflow pretrain` first, or `dvc repro base`), with params.yaml's `train:`
section overridden by the variant, then scores the policy on the world's structured support
(powerflow.world.oracle): its exact accuracy mass on the eval reasoning prompts, KL(p_α ‖ π) per
family, open-ended validity and expected coverage of 16 samples, beside the same numbers for p_α.
Nothing is sampled for the metrics, so two runs differ only by training.

    .venv/bin/python scripts/recipe_ablation.py --alphas 2 4 --seeds 0 1 2 --variants old new --jobs 2

writes outputs/ablation/results.jsonl (the run behind docs/recipe.md is kept in benchmarks/results/recipe_ablation.jsonl) (one line per run, with the curve of exact accuracy against
steps) and outputs/ablation/table.md (mean ± standard error over seeds). A run already in
results.jsonl is not trained again.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The recipe before issue 12 and the one after, then one change at a time from the new one.
NEW = {"objective": "tb", "lora_r": 0, "logz": "group", "learning_rate": 5e-4, "lr_schedule": "cosine", "steps": 300}
VARIANTS: dict[str, dict] = {
    "old": {"objective": "la_tb", "lora_r": 8, "logz": "head", "learning_rate": 3e-3, "lr_schedule": "constant",
            "steps": 200},
    "new": NEW,
    "new+lora": {**NEW, "lora_r": 8, "learning_rate": 3e-3},
    "new+head": {**NEW, "logz": "head"},
    "new+la_tb": {**NEW, "objective": "la_tb"},
    "new+tb_token": {**NEW, "objective": "tb_token"},
    "new-s600": {**NEW, "steps": 600},
    "new+constant-200": {**NEW, "lr_schedule": "constant", "steps": 200},
    "new+huber": {**NEW, "huber_delta": 1.0},
    "new+mix25": {**NEW, "base_mix": 0.25},
    "new+mix50": {**NEW, "base_mix": 0.5},
    "old+huber+group": {"objective": "tb", "lora_r": 8, "logz": "group", "learning_rate": 3e-3,
                        "lr_schedule": "constant", "steps": 200, "huber_delta": 1.0},
}
# Issue 20: the LoRA levers, one at a time from the adapter that stalls (new+lora: r = 8, lr 3e-3).
LORA = VARIANTS["new+lora"]
VARIANTS |= {
    "lora-lr1e-3": {**LORA, "learning_rate": 1e-3},
    "lora-warmup": {**LORA, "warmup_steps": 30},
    "lora-r64": {**LORA, "lora_r": 64, "lora_alpha": 128, "learning_rate": 1e-3},
    "lora-embed": {**LORA, "lora_target_modules": ("all-linear", "embed_tokens")},
    "lora-norm": {**LORA, "lora_modules_to_save": ("norm",)},
    "lora-norm-x10": {**LORA, "lora_modules_to_save": ("norm",), "lr_multipliers": {"modules_to_save": 10.0}},
    "lora-norm-x30": {**LORA, "lora_modules_to_save": ("norm",), "lr_multipliers": {"modules_to_save": 30.0}},
    "lora-plus-norm-x10": {**LORA, "learning_rate": 1e-3, "lora_modules_to_save": ("norm",),
                           "lr_multipliers": {"lora_B": 16.0, "modules_to_save": 10.0}},
    "lora-rslora": {**LORA, "lora_rslora": True},
    "lora-plus": {**LORA, "learning_rate": 3e-4, "lr_multipliers": {"lora_B": 16.0}},
    "lora-gfn": {**LORA, "lora_r": 64, "lora_alpha": 64, "learning_rate": 1e-4, "warmup_steps": 30},
    # past the bar: more budget, a faster norm, warm-up; and flattening (α < 1) with the adapter
    "lora-norm-x30-s500": {**LORA, "lora_modules_to_save": ("norm",), "lr_multipliers": {"modules_to_save": 30.0},
                           "steps": 500},
    "lora-norm-x100": {**LORA, "lora_modules_to_save": ("norm",), "lr_multipliers": {"modules_to_save": 100.0}},
    "lora-norm-x30-warmup": {**LORA, "lora_modules_to_save": ("norm",), "lr_multipliers": {"modules_to_save": 30.0},
                             "warmup_steps": 30},
    "lora-norm-x30-lr1e-3": {**LORA, "learning_rate": 1e-3, "lora_modules_to_save": ("norm",),
                             "lr_multipliers": {"modules_to_save": 30.0}},
    "lora-norm-x30-mix50": {**LORA, "lora_modules_to_save": ("norm",), "lr_multipliers": {"modules_to_save": 30.0},
                            "base_mix": 0.5},
    "lora-norm-x30-anneal": {**LORA, "lora_modules_to_save": ("norm",), "lr_multipliers": {"modules_to_save": 30.0},
                             "alpha_warmup_steps": 100},
    "lora-finalnorm-x30": {**LORA, "lora_modules_to_save": ("model.norm",),
                           "lr_multipliers": {"modules_to_save": 30.0}},
    "lora-norm-x5": {**LORA, "lora_modules_to_save": ("norm",), "lr_multipliers": {"modules_to_save": 5.0}},
    "lora-norm-x10-anneal": {**LORA, "lora_modules_to_save": ("norm",), "lr_multipliers": {"modules_to_save": 10.0},
                             "alpha_warmup_steps": 100},
    # closer at α = 4 with full fine-tuning, at the main job's budget (300 steps)
    "new-lr1e-3-warmup": {**NEW, "learning_rate": 1e-3, "warmup_steps": 30},
    "new-lr8e-4": {**NEW, "learning_rate": 8e-4},
    "new-finalnorm-x180": {**NEW, "lr_multipliers": {"model.norm": 180.0}},  # the final gain at ≈ 0.09, as LoRA's
    "new-finalnorm-x120": {**NEW, "lr_multipliers": {"model.norm": 120.0}},  # the gain at 0.06
    "new-lr2.5e-4-finalnorm-x360": {**NEW, "learning_rate": 2.5e-4, "lr_multipliers": {"model.norm": 360.0}},
}


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error across seeds (se = sample std / √n; nan for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def run_one(variant: str, alpha: float, seed: int, curve_every: int, params: Path = ROOT / "params.yaml") -> dict:
    """Train one policy and return its exact metrics (this process; torch on one thread); `params`
    names the project (its folder holds data/prepared and models/base)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    from powerflow.config import load_pipeline_config
    from powerflow.config.train import train_lora_config
    from powerflow.pipeline.evaluate import evaluation_rows
    from powerflow.pipeline.layout import layout_of
    from powerflow.pipeline.loading import load_causal_lm, load_tokenizer
    from powerflow.member import Member
    from powerflow.pipeline.train import training_prompts
    from powerflow.trainer import PowerFlowTrainer, trainer_config
    from powerflow.world import oracle

    torch.set_num_threads(1)
    settings = dict(VARIANTS[variant])
    objective = settings.pop("objective")
    cfg = load_pipeline_config(params)
    cfg = replace(cfg, train=replace(cfg.train, **settings, save_steps=10**6))
    lay = layout_of(cfg)
    tokenizer = load_tokenizer(str(lay.base_model))
    base = load_causal_lm(str(lay.base_model))
    supports = oracle.score_supports(cfg.world, base, tokenizer, evaluation_rows(cfg))
    target = oracle.oracle_metrics(supports, alpha, "tb")
    prompts, _ = training_prompts(cfg)
    workdir = lay.root / "outputs" / "ablation" / "work" / f"{variant}-{alpha}-{seed}"
    args = trainer_config(cfg.train, Member(alpha, objective, seed), workdir,
                          max_prompt_tokens=cfg.data.max_prompt_tokens)
    args.disable_tqdm = True
    curve: list[dict] = []

    def exact_now(model) -> dict:
        d = oracle.policy_distance(supports, model, tokenizer, alpha, "tb")
        return {"accuracy": d["reasoning/accuracy"], "kl_reasoning": d["reasoning/kl_target"],
                "validity": d["open_ended/validity"], "coverage": d["open_ended/coverage"],
                "kl_open": d["open_ended/kl_target"], "mass_reasoning": d["reasoning/mass"],
                "length": d["reasoning/length"]}

    class ExactCurve(TrainerCallback):
        def on_step_end(self, args_, state, control, **kwargs):
            if state.global_step % curve_every == 0 and state.global_step < args_.max_steps:
                curve.append({"step": state.global_step, **exact_now(trainer.model)})

    model = load_causal_lm(str(lay.base_model))
    trainer = PowerFlowTrainer(model=model, args=args,
                               train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tokenizer,
                               peft_config=train_lora_config(cfg.train, model), callbacks=[ExactCurve()])
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model(str(workdir / "final"))  # the trained policy, for a look at its samples
    final = exact_now(trainer.model)
    curve.append({"step": cfg.train.steps, **final})
    own = own_target_distance(supports, trainer.model, tokenizer, alpha, objective)
    if alpha <= 1:  # p^α on S is not TB's fixed point below 1: estimate the true one (oracle.sampled_true_target)
        true = oracle.sampled_true_targets(supports, trainer.model, base, tokenizer, alpha,
                                           max_new_tokens=cfg.train.max_completion_length)
        own |= {f"true/{k}": v for k, v in true.items()}
    return {"variant": variant, "alpha": alpha, "seed": seed, "settings": VARIANTS[variant], "train_s": seconds,
            **final, "target_accuracy": target["reasoning/accuracy"], "target_validity": target["open_ended/validity"],
            "target_coverage": target["open_ended/coverage"], "target_length": target["reasoning/length"],
            **own, "curve": curve}


def own_target_distance(supports, model, tokenizer, alpha: float, objective: str) -> dict:
    """For an objective whose fixed point is not p^α (la_tb: π*_λ ∝ p^α e^{−λ|y|}): KL(π*_λ ‖ π) per
    family and π*_λ's accuracy, under own_* keys; {} for tb."""
    from powerflow.world import oracle

    if objective == "tb":
        return {}
    target = oracle.oracle_metrics(supports, alpha, objective)
    d = oracle.policy_distance(supports, model, tokenizer, alpha, objective)
    return {"own_kl_reasoning": d["reasoning/kl_target"], "own_kl_open": d["open_ended/kl_target"],
            "own_target_accuracy": target["reasoning/accuracy"], "own_lambda": target.get("reasoning/lambda"),
            "own_target_length": target["reasoning/length"]}


def read_results(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def seed_cell(rs: list[dict], key: str, fmt: str = "{:.3f}") -> str:
    """mean ± se of `key` over the seeds `rs` (the mean alone for one seed)."""
    m, se = mean_se([r[key] for r in rs])
    return fmt.format(m) + ("" if math.isnan(se) else " ± " + fmt.format(se))


def table(results: list[dict]) -> str:
    """Markdown: one row per (variant, α), mean ± se over seeds; then, where runs have them, the
    distances to each objective's own fixed point and to TB's true fixed point below α = 1."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in results:
        groups.setdefault((r["variant"], r["alpha"]), []).append(r)
    groups = dict(sorted(groups.items(), key=lambda kv: (kv[0][1], list(VARIANTS).index(kv[0][0]))))
    return "\n".join(distance_rows(groups) + own_target_rows(groups) + true_target_rows(groups)) + "\n"


def distance_rows(groups: dict) -> list[str]:
    lines = ["| variant | α | seeds | exact accuracy | ÷ p^α accuracy | KL(p^α‖π) reasoning | open validity | "
             "open coverage (p^α) | KL(p^α‖π) open | train s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (variant, alpha), rs in groups.items():
        ratio = mean_se([r["accuracy"] / r["target_accuracy"] for r in rs])
        lines.append(
            f"| {variant} | {alpha:g} | {len(rs)} | {seed_cell(rs, 'accuracy')} | {ratio[0]:.2f} | "
            f"{seed_cell(rs, 'kl_reasoning')} | {seed_cell(rs, 'validity')} | {seed_cell(rs, 'coverage')} "
            f"({rs[0]['target_coverage']:.3f}) | {seed_cell(rs, 'kl_open')} | {seed_cell(rs, 'train_s', '{:.0f}')} |")
    return lines


def own_target_rows(groups: dict) -> list[str]:
    own = {key: rs for key, rs in groups.items() if all("own_kl_reasoning" in r for r in rs)}
    if not own:
        return []
    lines = ["", "Against each objective's own fixed point (π*_λ for la_tb):", "",
             "| variant | α | seeds | π*_λ accuracy | ÷ π*_λ accuracy | KL(π*_λ‖π) reasoning | KL(π*_λ‖π) open |",
             "|---|---|---|---|---|---|---|"]
    for (variant, alpha), rs in own.items():
        ratio = mean_se([r["accuracy"] / r["own_target_accuracy"] for r in rs])[0]
        lines.append(f"| {variant} | {alpha:g} | {len(rs)} | {rs[0]['own_target_accuracy']:.3f} | {ratio:.2f} | "
                     f"{seed_cell(rs, 'own_kl_reasoning')} | {seed_cell(rs, 'own_kl_open')} |")
    return lines


def true_target_rows(groups: dict) -> list[str]:
    true = {key: rs for key, rs in groups.items() if all("true/reasoning/accuracy" in r for r in rs)}
    if not true:
        return []
    lines = ["", "Against TB's true fixed point below α = 1 (p^α over every sequence: exact on S, importance-"
             "sampled outside it with the policy as proposal, outside mass at least the bound B):", "",
             "| variant | α | seeds | π accuracy | true target accuracy | true target share on S (≤ bound) | "
             "π share on S | KL(t‖π) reasoning | π validity | true target validity | KL(t‖π) open |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (variant, alpha), rs in true.items():
        cells = [seed_cell(rs, k) for k in ("accuracy", "true/reasoning/accuracy", "true/reasoning/share_s")]
        cells[-1] += f" (≤ {rs[0]['true/reasoning/share_s_max']:.3f})"
        cells += [seed_cell(rs, k) for k in ("true/reasoning/policy_share_s", "true/reasoning/kl_target", "validity",
                                             "true/open_ended/validity", "true/open_ended/kl_target")]
        lines.append(f"| {variant} | {alpha:g} | {len(rs)} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alphas", type=float, nargs="+", default=[2.0, 4.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=["old", "new"], choices=list(VARIANTS))
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at once (one CPU thread each)")
    ap.add_argument("--curve-every", type=int, default=50)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "ablation")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml",
                    help="the project's params file (its folder holds data/prepared and models/base)")
    ap.add_argument("--one", nargs=3, metavar=("VARIANT", "ALPHA", "SEED"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(run_one(a.one[0], float(a.one[1]), int(a.one[2]), a.curve_every, a.params.resolve())))
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    results_path = a.out / "results.jsonl"
    done = {(r["variant"], r["alpha"], r["seed"]) for r in read_results(results_path)}
    todo = [(v, al, s) for v in a.variants for al in a.alphas for s in a.seeds if (v, al, s) not in done]

    def launch(job):
        v, al, s = job
        proc = subprocess.run([sys.executable, __file__, "--one", v, str(al), str(s), "--curve-every",
                               str(a.curve_every), "--params", str(a.params.resolve())], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(f"{v} α={al} seed={s} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            return None
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        with results_path.open("a") as f:
            f.write(json.dumps(result) + "\n")
        print(f"{v} α={al:g} seed={s}: accuracy {result['accuracy']:.3f} (p^α {result['target_accuracy']:.3f}), "
              f"{result['train_s']:.0f} s", flush=True)
        return result

    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        failed = sum(r is None for r in pool.map(launch, todo))
    wanted = [r for r in read_results(results_path)
              if r["variant"] in a.variants and r["alpha"] in a.alphas and r["seed"] in a.seeds]
    (a.out / "table.md").write_text(table(wanted))
    print(table(wanted))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
