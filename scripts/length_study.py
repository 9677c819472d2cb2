"""The long-completion study (issue 20): TB, LA-TB and TB-token on the world's long-completion family,
each against its own exact target and against p^α, with exact E|y| curves over training.

    .venv/bin/python scripts/length_study.py --alphas 4 --seeds 0 1 2 --jobs 2

1. writes outputs/length/params.yaml: params.yaml with the long-completion world (`STUDY_SETTINGS`:
   world.max_operands, so solutions run from 1 to 7 steps, 3 to 53 tokens), training on the
   reasoning family with the completion cap at the longest solution;
2. builds that world's prompts and base model (`powerflow prepare`, `powerflow pretrain`; kept when
   present);
3. trains the variants new (tb), new+la_tb and new+tb_token per α and seed with
   scripts/recipe_ablation.py (results in outputs/length/ablation/results.jsonl, one line per run);
4. writes outputs/length/table.md: per objective, the exact accuracy and KL against p^α and against
   the objective's own fixed point, and E_π|y| over training beside E|y| of both targets. Every
   number is computed on the oracle's support (no sampling).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import recipe_ablation  # noqa: E402  (the training and exact scoring of one run)

VARIANTS = ("new", "new+la_tb", "new+tb_token")
STUDY_SETTINGS = {
    "world": {"n_operands": 2, "max_operands": 8, "n_reasoning_train": 320, "n_reasoning_eval": 32,
              "reasoning_fraction": 0.8, "chat_fraction": 0.0},
    "base": {"steps": 3000},
    "train": {"families": ["reasoning"]},
}


def study_params(out: Path) -> Path:
    """Write out/params.yaml: the project's params.yaml with STUDY_SETTINGS, and both length caps at
    the longest solution (powerflow.world.teacher.longest_completion_tokens)."""
    from powerflow.world.config import WorldConfig
    from powerflow.world.teacher import longest_completion_tokens

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in STUDY_SETTINGS.items():
        params.setdefault(section, {}).update(values)
    longest = longest_completion_tokens(WorldConfig(**{k: v for k, v in params["world"].items()}))
    params["train"]["max_completion_length"] = longest
    params.setdefault("evaluate", {})["max_new_tokens"] = longest
    params.pop("plugins", None)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def build_world(params: Path) -> None:
    """Prompts and base model of the study's world (skipped when the base model is there)."""
    if (params.parent / "models" / "base" / "config.json").is_file():
        return
    for stage in ("prepare", "pretrain"):
        subprocess.run([sys.executable, "-m", "powerflow.cli", stage, "--params", str(params),
                        "--orchestrator", "none"], check=True, cwd=params.parent)


def length_table(results: list[dict]) -> str:
    """Markdown: per (objective, α), mean ± se over seeds of accuracy, KL and E|y| against both targets,
    then E_π|y| along training."""
    from collections import defaultdict

    groups = defaultdict(list)
    for r in results:
        groups[(r["variant"], r["alpha"])].append(r)
    cell = recipe_ablation.seed_cell
    lines = ["| variant | α | seeds | accuracy | ÷ p^α's | ÷ own target's | KL(p^α‖π) | KL(own‖π) | π's mass on S | "
             "E_π|y| | E_p^α|y| | E_own|y| |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (variant, alpha), rs in sorted(groups.items()):
        for r in rs:  # an objective whose fixed point is p^α (tb) has no own_* keys: its own target is p^α
            for key in ("kl_reasoning", "target_accuracy", "target_length"):
                r.setdefault(f"own_{key}", r[key])
            r["ratio"] = r["accuracy"] / r["target_accuracy"]
            r["own_ratio"] = r["accuracy"] / r["own_target_accuracy"]
        lines.append(f"| {variant} | {alpha:g} | {len(rs)} | {cell(rs, 'accuracy')} | {cell(rs, 'ratio')} | "
                     f"{cell(rs, 'own_ratio')} | {cell(rs, 'kl_reasoning')} | {cell(rs, 'own_kl_reasoning')} | "
                     f"{cell(rs, 'mass_reasoning')} | {cell(rs, 'length', '{:.1f}')} | "
                     f"{cell(rs, 'target_length', '{:.1f}')} | {cell(rs, 'own_target_length', '{:.1f}')} |")
    lines += ["", "E_π|y| (exact, on the support) along training, mean over seeds:", ""]
    for (variant, alpha), rs in sorted(groups.items()):
        steps = [c["step"] for c in rs[0]["curve"]]
        means = [sum(r["curve"][i]["length"] for r in rs) / len(rs) for i in range(len(steps))]
        lines.append(f"- {variant} α={alpha:g}: " + ", ".join(f"{s}: {m:.1f}" for s, m in zip(steps, means)))
    return "\n".join(lines) + "\n"


def token_normalised_tail(params: Path, policy_dir: Path, alpha: float, n_prompts: int = 8,
                          n_samples: int = 32) -> list[dict]:
    """TB-token's target mass on cap-length sequences against its mass on the oracle's support, per prompt.

        log Z_S     = log Σ_{y∈S} p_base(y|q)^{α/|y|}                       (exact)
        log Z_trunc ≈ log (1/n) Σ_i p_base(y_i|q)^{α/L} / π(y_i|q),  y_i ~ π truncated at L
                                                                           (importance sampling)
    with L the completion cap and truncated sequences scored by their prefix, as the trainer
    scores them; the trained policy is the proposal.
    """
    import math

    import torch

    from powerflow.config import load_pipeline_config
    from powerflow.pipeline.evaluate import evaluation_rows
    from powerflow.pipeline.loading import load_causal_lm, load_tokenizer
    from powerflow.world import oracle

    cfg = load_pipeline_config(params)
    cap = cfg.train.max_completion_length
    tok = load_tokenizer(str(params.parent / "models" / "base"))
    base = load_causal_lm(str(params.parent / "models" / "base"))
    policy = load_causal_lm(str(policy_dir))
    torch.manual_seed(0)
    out = []
    for row in [r for r in evaluation_rows(cfg) if r["family"] == "reasoning"][:n_prompts]:
        items = oracle.support_of(cfg.world, row)
        log_p, length = oracle.completion_log_probs(base, tok, row["prompt"], [it.text for it in items])
        prompt_ids = tok(row["prompt"], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids])
        samples = policy.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                  max_new_tokens=cap, num_return_sequences=n_samples,
                                  pad_token_id=tok.eos_token_id)[:, len(prompt_ids):].tolist()
        truncated = [s for s in samples if tok.eos_token_id not in s]
        entry = {"prompt": row["prompt"], "log_z_support": torch.logsumexp(alpha * log_p / length, 0).item(),
                 "truncated": len(truncated), "samples": len(samples)}
        if truncated:
            log_base, _ = oracle.token_log_probs(base, prompt_ids, truncated, tok.eos_token_id)
            log_pi, _ = oracle.token_log_probs(policy, prompt_ids, truncated, tok.eos_token_id)
            weights = alpha / cap * log_base - log_pi
            entry["log_z_truncated"] = (torch.logsumexp(weights, 0) - math.log(len(samples))).item()
        out.append(entry)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alphas", type=float, nargs="+", default=[4.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(recipe_ablation.VARIANTS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--curve-every", type=int, default=25)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "length")
    ap.add_argument("--tail", metavar="POLICY_DIR", type=Path, default=None,
                    help="instead of training: TB-token's target mass on cap-length sequences against the "
                         "support's, importance-sampled with this trained policy (token_normalised_tail)")
    a = ap.parse_args(argv)
    if a.tail is not None:
        for entry in token_normalised_tail(a.out / "params.yaml", a.tail, a.alphas[0]):
            print(json.dumps(entry))
        return 0
    params = study_params(a.out)
    build_world(params)
    rc = recipe_ablation.main(["--params", str(params), "--out", str(a.out / "ablation"), "--jobs", str(a.jobs),
                               "--curve-every", str(a.curve_every), "--alphas", *map(str, a.alphas),
                               "--seeds", *map(str, a.seeds), "--variants", *a.variants])
    results = [r for r in recipe_ablation.read_results(a.out / "ablation" / "results.jsonl")
               if r["variant"] in a.variants and r["alpha"] in a.alphas and r["seed"] in a.seeds]
    (a.out / "table.md").write_text(length_table(results))
    print(length_table(results))
    return rc


if __name__ == "__main__":
    sys.exit(main())
