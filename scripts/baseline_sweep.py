"""Choose each trained baseline's recipe (GRPO, EMPO) on the prepared train split, never on the eval prompts.

Every setting trains one baseline from `models/base` exactly as the pipeline's `train_baseline` stage
does (`powerflow.pipeline.train.baseline_arguments`, `baseline_columns`: the `train:` budget with the
method's own learning rate, KL β and, for EMPO, its entropy band), then scores the policy with the
world's oracle on a fixed seeded sample of the *train* prompts (`--score-prompts` per family): its
exact accuracy mass on the reasoning prompts, and on the open-ended prompts its validity and the
expected coverage of 16 samples. Nothing is sampled for the scores, so two settings differ only by
training. The chosen setting is the one with the highest train-split reasoning accuracy; its values go
to params.yaml's `baselines:` section (docs/baselines.md says how they were chosen).

    .venv/bin/python scripts/baseline_sweep.py --settings "grpo lr=1e-5" "grpo lr=5e-4" \\
        "empo lr=1e-6" "empo lr=5e-5 beta=0.04" "empo lr=5e-5 hmax=0.8" --jobs 2

A setting is "<method> key=value ...", keys lr (learning rate), beta (KL coefficient), hmin / hmax
(EMPO's normalised-entropy band, `powerflow.baselines.rewards.group_kept`), seed (train.seed).
Results go to outputs/baseline_sweep/results.jsonl (one line per run; a run already there is not
trained again) and table.md; the run behind docs/baselines.md is kept in
benchmarks/results/baseline_sweep.jsonl. Needs `powerflow prepare` and `powerflow pretrain` (or
`dvc repro base`) first, on the embedded world (the oracle is the world's).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"lr": "learning_rate", "beta": "beta", "hmin": "entropy_min", "hmax": "entropy_max", "seed": "seed"}


def parse_setting(text: str) -> tuple[str, dict[str, float]]:
    """'empo lr=5e-5 beta=0.04' -> ("empo", {"learning_rate": 5e-5, "beta": 0.04})."""
    method, *pairs = text.split()
    if method not in ("grpo", "empo"):
        raise SystemExit(f"setting {text!r}: start with grpo or empo")
    values = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in KEYS or not value:
            raise SystemExit(f"setting {text!r}: {pair!r} is not key=value with a key in {', '.join(KEYS)}")
        values[KEYS[key]] = float(value)
    if method == "grpo" and {"entropy_min", "entropy_max"} & set(values):
        raise SystemExit(f"setting {text!r}: hmin/hmax are EMPO's")
    return method, values


def configured(cfg, method: str, values: dict[str, float]):
    """The pipeline config with the setting written into `baselines:` (and train.seed)."""
    own = {f"{method}_learning_rate": values.get("learning_rate"), f"{method}_beta": values.get("beta", 0.0)}
    if method == "empo":
        own |= {"empo_entropy_min": values.get("entropy_min", 0.0), "empo_entropy_max": values.get("entropy_max", 1.0)}
    own = {k: v for k, v in own.items() if v is not None}
    train = replace(cfg.train, save_steps=10**6, seed=int(values.get("seed", cfg.train.seed)))
    return replace(cfg, baselines=replace(cfg.baselines, **own), train=train)


def score_rows(cfg, n_per_family: int) -> list[dict]:
    """A fixed seeded sample of n train prompts per family, with their answer keys (the selection set)."""
    from powerflow.pipeline.train import training_rows

    rows, _ = training_rows(cfg)
    rng = random.Random("baseline-sweep")
    picked = []
    for family in sorted({r["family"] for r in rows}):
        members = [r for r in rows if r["family"] == family]
        picked += rng.sample(members, min(n_per_family, len(members)))
    return picked


def run_one(text: str, n_score: int, params: Path) -> dict:
    """Train one setting (this process, torch on one thread) and score it on the train split."""
    import torch
    from datasets import Dataset

    from powerflow.config import load_pipeline_config
    from powerflow.config.train import train_lora_config
    from powerflow.eval.grading import family_graders
    from powerflow.pipeline.layout import layout_of
    from powerflow.pipeline.loading import load_causal_lm, load_tokenizer
    from powerflow.pipeline.train import baseline_arguments, baseline_columns, training_rows
    from powerflow.registry import baseline
    from powerflow.world import oracle

    torch.set_num_threads(1)
    method, values = parse_setting(text)
    cfg = configured(load_pipeline_config(params), method, values)
    lay = layout_of(cfg)
    workdir = lay.root / "outputs" / "baseline_sweep" / "work" / text.replace(" ", "_")
    args, options = baseline_arguments(cfg, method, workdir)
    args.disable_tqdm = True
    rows, answer_kinds = training_rows(cfg)
    tokenizer = load_tokenizer(str(lay.base_model))
    model = load_causal_lm(str(lay.base_model))
    with family_graders(answer_kinds, cfg.evaluate.math_timeout_s) as graders:
        trainer = baseline(method).build(model, tokenizer, Dataset.from_dict(baseline_columns(rows, method)), args,
                                         graders, peft_config=train_lora_config(cfg.train, model), **options)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    policy = trainer.model.merge_and_unload() if hasattr(trainer.model, "merge_and_unload") else trainer.model
    base = load_causal_lm(str(lay.base_model))
    supports = oracle.score_supports(cfg.world, base, tokenizer, score_rows(cfg, n_score))
    d = oracle.policy_distance(supports, policy, tokenizer, 1.0, "tb")  # KL to p_base itself: how far it moved
    b = oracle.oracle_metrics(supports, 1.0, "tb")
    return {"setting": text, "method": method, **values, "train_s": seconds,
            "accuracy": d["reasoning/accuracy"], "validity": d["open_ended/validity"],
            "coverage": d["open_ended/coverage"], "kl_base_reasoning": d["reasoning/kl_target"],
            "kl_base_open": d["open_ended/kl_target"], "base_accuracy": b["reasoning/accuracy"],
            "base_validity": b["open_ended/validity"], "base_coverage": b["open_ended/coverage"],
            "recipe": {k: getattr(args, k) for k in ("learning_rate", "beta", "max_steps", "num_generations")}
            | {k: list(v) for k, v in options.items()}}


def read_results(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def setting_key(text: str) -> str:
    """The setting without its seed: runs of one setting at several seeds are averaged."""
    return " ".join(w for w in text.split() if not w.startswith("seed="))


def by_setting(results: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(setting_key(r["setting"]), []).append(r)
    return groups


def mean_of(runs: list[dict], key: str) -> float:
    return sum(r[key] for r in runs) / len(runs)


def chosen(results: list[dict], method: str) -> str | None:
    """The method's setting with the highest train-split reasoning accuracy, mean over its seeds."""
    groups = {k: rs for k, rs in by_setting(results).items() if rs[0]["method"] == method}
    return max(groups, key=lambda k: mean_of(groups[k], "accuracy")) if groups else None


def table(results: list[dict]) -> str:
    """Markdown: one row per setting (mean over its seeds), the chosen one of each method marked."""
    best = {chosen(results, m) for m in ("grpo", "empo")}
    lines = ["| setting | seeds | train-split accuracy (base) | open validity (base) | open coverage@16 (base) | "
             "KL(p_base‖π) reasoning | KL(p_base‖π) open | train s | |", "|---|---|---|---|---|---|---|---|---|"]
    for key, rs in sorted(by_setting(results).items()):
        m = {k: mean_of(rs, k) for k in ("accuracy", "validity", "coverage", "kl_base_reasoning", "kl_base_open",
                                          "train_s")}
        spread = f" [{min(r['accuracy'] for r in rs):.3f}, {max(r['accuracy'] for r in rs):.3f}]" if len(rs) > 1 else ""
        b = rs[0]
        lines.append(f"| {key} | {len(rs)} | {m['accuracy']:.3f}{spread} ({b['base_accuracy']:.3f}) | "
                     f"{m['validity']:.3f} ({b['base_validity']:.3f}) | {m['coverage']:.3f} ({b['base_coverage']:.3f}) | "
                     f"{m['kl_base_reasoning']:.3f} | {m['kl_base_open']:.3f} | {m['train_s']:.0f} | "
                     f"{'chosen' if key in best else ''} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", default=["grpo lr=5e-4", "empo lr=5e-4"])
    ap.add_argument("--jobs", type=int, default=2, help="settings trained at once (one CPU thread each)")
    ap.add_argument("--score-prompts", type=int, default=64, help="train prompts per family scored by the oracle")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "baseline_sweep")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--one", metavar="SETTING", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(run_one(a.one, a.score_prompts, a.params.resolve())))
        return 0
    for text in a.settings:
        parse_setting(text)  # a typo fails here, before anything trains
    a.out.mkdir(parents=True, exist_ok=True)
    results_path = a.out / "results.jsonl"
    done = {r["setting"] for r in read_results(results_path)}

    def launch(text: str):
        proc = subprocess.run([sys.executable, __file__, "--one", text, "--score-prompts", str(a.score_prompts),
                               "--params", str(a.params.resolve())], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(f"{text} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            return None
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        with results_path.open("a") as f:
            f.write(json.dumps(result) + "\n")
        print(f"{text}: train-split accuracy {result['accuracy']:.3f}, validity {result['validity']:.3f}, "
              f"{result['train_s']:.0f} s", flush=True)
        return result

    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        failed = sum(r is None for r in pool.map(launch, [t for t in a.settings if t not in done]))
    results = read_results(results_path)
    (a.out / "table.md").write_text(table(results))
    print(table(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
