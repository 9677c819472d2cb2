"""The report's Markdown tables: headline, exact p_base^α distance, methods side by side, per family, diagnostics."""

from __future__ import annotations

import math

from powerflow.report.seeds import group_key, seed_mean_rows, seed_mean_se
from powerflow.report.values import (
    ACCURACY, COVERAGE, VALIDITY, alpha_cell, check_runs, families_of, family_value, finite, fmt, fmt_se,
    method_label, metric_value, not_applicable_reason, pass_at_ks, row_order,
)


# Per-family columns of the benchmark tables, in this order, when some run has them: (suffix, header).
FAMILY_COLUMNS = (
    ("accuracy_greedy", "acc greedy"), ("accuracy_mean", "avg@n ± se"), ("pass@max", "pass@n"),
    ("maj@max", "maj@n"), ("extraction_failures", "no answer"), ("validity", "validity"),
    ("coverage", "coverage ± se"), ("kl_uniform", "KL unif"), ("kl_reference", "KL ref"),
    ("semantic_diversity", "semantic div ± se"), ("distinct_1", "distinct-1"), ("distinct_2", "distinct-2"),
    ("rouge_l", "ROUGE-L"),
    ("self_bleu", "self-BLEU"), ("quality", "quality ± se"), ("judge_failures", "judge fail"),
    ("tokens_per_answer", "tokens/answer"), ("seconds_per_answer", "ms/answer"),
)
DIAGNOSTIC_COLUMNS = (
    ("diag/residual_var", "Var[log π − α log p_base] ± se"), ("diag/mean_length", "mean length, policy"),
    ("diag/mean_length_base", "mean length, base"), ("diag/length_ratio", "length ratio"),
)


def headline_rows(runs: list[dict]) -> list[dict]:
    """The headline table's rows: every run (`runs_table`), each group's "mean over N seeds" row
    when some (α, objective) has ≥ 2 seeds, and a "p_base^α (exact)" row per α on the world."""
    rows = runs_table(runs)
    if any(r["n_seeds"] > 1 for r in seed_mean_rows(rows)):
        rows = rows + seed_mean_rows(rows)
    return sorted(rows + exact_target_rows(runs), key=row_order)


# Exact targets on the embedded world (pipeline.world_exact_metrics, powerflow.world.oracle).
EXACT_TARGET = "exact/target/"
EXACT_POLICY = "exact/policy/"


def exact_target_rows(runs: list[dict]) -> list[dict]:
    """One headline row "p_base^α (exact)" per α whose runs carry the world oracle's numbers.

    Its cells are p_base^α itself, renormalised on the world's support: accuracy and pass@n exact,
    coverage and KL to uniform the expectations for n samples (what a perfect policy would score),
    no greedy decoding and no length (the table's tokens/answer mixes families).
    """
    rows: dict[float, dict] = {}
    for run in runs:
        m, alpha = run.get("metrics") or {}, run.get("alpha")
        if alpha is None or alpha in rows or not finite(m.get(f"{EXACT_TARGET}reasoning/accuracy")):
            continue
        max_k = max(pass_at_ks({k[len(EXACT_TARGET):]: v for k, v in m.items() if k.startswith(EXACT_TARGET)}),
                    default=None)
        rows[alpha] = {
            "name": f"p_base^{alpha:g} (exact)", "alpha": alpha, "objective": "exact", "seed": None, "group": None,
            "exact": True, "n_samples": m.get("eval/n_samples"), "accuracy_greedy": math.nan,
            "accuracy_mean": metric_value(m, f"{EXACT_TARGET}reasoning/accuracy"), "accuracy_mean_se": math.nan,
            "max_k": max_k,
            "pass_at_max_k": metric_value(m, f"{EXACT_TARGET}reasoning/pass@{max_k}") if max_k else math.nan,
            "coverage": metric_value(m, f"{EXACT_TARGET}open_ended/coverage"), "coverage_se": math.nan,
            "validity": metric_value(m, f"{EXACT_TARGET}open_ended/validity"),
            "kl_uniform": metric_value(m, f"{EXACT_TARGET}open_ended/kl_uniform"), "tokens_per_answer": math.nan,
            "registered": None,
        }
    return list(rows.values())


EXACT_COLUMNS = (  # (metric, header) of the distance table, read from a run's metrics
    (f"{EXACT_TARGET}reasoning/accuracy", "p^α accuracy"),
    ("exact/accuracy_ratio", "avg@n ÷ p^α accuracy"),
    (f"{EXACT_POLICY}reasoning/accuracy", "π accuracy (exact)"),
    (f"{EXACT_POLICY}reasoning/kl_target", "KL(p^α‖π) reasoning"),
    (f"{EXACT_POLICY}open_ended/validity", "π validity (exact)"),
    (f"{EXACT_TARGET}open_ended/validity", "p^α validity"),
    (f"{EXACT_POLICY}open_ended/coverage", "π coverage (exact)"),
    (f"{EXACT_TARGET}open_ended/coverage", "p^α coverage"),
    (f"{EXACT_POLICY}open_ended/kl_target", "KL(p^α‖π) open-ended"),
    (f"{EXACT_TARGET}reasoning/support_bound", "base mass off support"),
)


def exact_distance_table_markdown(runs: list[dict]) -> str:
    """Every trained policy against the exact p_base^α of its α (world only): per run, and the
    mean ± se across seeds for groups of ≥ 2 seeds."""
    have = [r for r in sorted(runs, key=row_order) if finite((r.get("metrics") or {}).get(
        f"{EXACT_POLICY}reasoning/kl_target"))]
    if not have:
        return ""
    header = ["run", "α"] + [h for _, h in EXACT_COLUMNS]
    lines = ["## Against the exact p_base^α\n",
             "p^α is p_base(y|q)^α renormalised on the world's structured support (every guess answer, every worked "
             "path with its step errors, every one-word answer; powerflow.world.oracle), scored by the base model; "
             "'base mass off support' bounds what that renormalisation can miss. π's columns are read off the "
             "policy's own probabilities of the same completions (no sampling); KL(p^α‖π) counts π's mass off the "
             "support as error. Coverage is the expectation for n samples.\n",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups: dict[str, list[dict]] = {}
    for run in have:
        m = run["metrics"]
        lines.append("| " + " | ".join([run["name"], alpha_cell(run)]
                                       + [fmt(m.get(key)) for key, _ in EXACT_COLUMNS]) + " |")
        groups.setdefault(group_key(run), []).append(run)
    for key, members in groups.items():
        if len(members) < 2:
            continue
        cells = [f"{key} (mean over {len(members)} seeds)", alpha_cell(members[0])]
        for metric, _ in EXACT_COLUMNS:
            mean, se = seed_mean_se([metric_value(r["metrics"], metric) for r in members])
            cells.append(fmt_se(mean, se))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def runs_table(runs: list[dict]) -> list[dict]:
    """One row per run with the headline columns, the base model first, then by α and objective.

    Missing metrics are NaN; max_k is the largest k with a reasoning/pass@k metric (None if none).
    """
    check_runs(runs)
    rows = []
    for run in runs:
        m = run.get("metrics") or {}
        max_k = max(pass_at_ks(m), default=None)
        rows.append({
            "name": run["name"],
            "alpha": run.get("alpha"),
            "objective": run.get("objective") or "",
            "seed": run.get("seed"),
            "group": run.get("group"),
            "method": run.get("method"),
            "method_alpha": run.get("method_alpha"),
            "not_applicable": not_applicable_reason(run),
            "n_samples": m.get("eval/n_samples"),
            "accuracy_greedy": metric_value(m, "reasoning/accuracy_greedy"),
            "accuracy_mean": metric_value(m, ACCURACY),
            "accuracy_mean_se": metric_value(m, f"{ACCURACY}_se"),
            "max_k": max_k,
            "pass_at_max_k": metric_value(m, f"reasoning/pass@{max_k}") if max_k else math.nan,
            "coverage": metric_value(m, COVERAGE),
            "coverage_se": metric_value(m, f"{COVERAGE}_se"),
            "validity": metric_value(m, VALIDITY),
            "kl_uniform": metric_value(m, "open_ended/kl_uniform"),
            "tokens_per_answer": metric_value(m, "cost/tokens_per_answer"),
            "registered": run.get("registered"),
        })
    return sorted(rows, key=row_order)


def headline_table_markdown(rows: list[dict]) -> str:
    """The headline table as Markdown: one line per run of `runs_table`."""
    ks = sorted({r["max_k"] for r in rows if r["max_k"]})
    ns = sorted({int(r["n_samples"]) for r in rows if r["n_samples"]})
    one_k = len(ks) == 1
    pass_header = f"pass@{ks[0]}" if one_k else "pass@k (max k)"
    mean_header = f"avg@{ns[0]} ± se" if len(ns) == 1 else "avg@n ± se"
    header = ["run", "α", "objective", "reasoning acc (greedy)", f"reasoning acc ({mean_header})", pass_header,
              "open-ended coverage ± se", "open-ended validity", "KL to uniform", "tokens/answer"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        if r.get("not_applicable"):
            cells = [r["name"], alpha_cell(r), r["objective"] or "–", f"not applicable: {r['not_applicable']}"]
            lines.append("| " + " | ".join(cells + [""] * (len(header) - len(cells))) + " |")
            continue
        pass_cell = fmt(r["pass_at_max_k"])
        if not one_k and r["max_k"]:
            pass_cell += f" (k={r['max_k']})"
        cells = [r["name"], alpha_cell(r), r["objective"] or "–", fmt(r["accuracy_greedy"]),
                 fmt_se(r["accuracy_mean"], r["accuracy_mean_se"]), pass_cell,
                 fmt_se(r["coverage"], r["coverage_se"]), fmt(r["validity"]), fmt(r["kl_uniform"]),
                 fmt(r["tokens_per_answer"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def methods_table_markdown(runs: list[dict], family: str = "reasoning", diversity_family: str = "open_ended") -> str:
    """Every method side by side on one world: accuracy, diversity, validity, cost, training time.

    Columns: pass@1 greedy, avg@n ± se, pass@k at the largest k (reasoning family); semantic
    diversity and validity (open-ended family); tokens per answer (answer length) and inference
    tokens per answer (every token generated, MCMC's rejected proposals included); training seconds.
    A run marked not applicable (eval/applicable = 0) says so instead of printing numbers.
    """
    header = ["method", "run", "greedy", "avg@n ± se", "pass@k (max k)", "semantic diversity", "validity",
              "tokens/answer", "inference tokens/answer", "training s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in _methods_order(runs):
        m = run.get("metrics") or {}
        reason = not_applicable_reason(run)
        if reason is not None:
            lines.append(f"| {method_label(run)} | {run['name']} | not applicable: {reason} |"
                         + " |" * (len(header) - 3))
            continue
        ks = pass_at_ks(m, family)
        seconds = (run.get("train") or {}).get("train/seconds")
        cells = [method_label(run), run["name"], fmt(m.get(f"{family}/accuracy_greedy")),
                 fmt_se(m.get(f"{family}/accuracy_mean"), m.get(f"{family}/accuracy_mean_se")),
                 f"{fmt(m.get(f'{family}/pass@{max(ks)}'))} (k={max(ks)})" if ks else "–",
                 fmt(m.get(f"{diversity_family}/semantic_diversity")), fmt(m.get(f"{diversity_family}/validity")),
                 fmt(m.get(f"{family}/tokens_per_answer"), 1), fmt(m.get(f"{family}/inference_tokens_per_answer"), 1),
                 fmt(seconds, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _methods_order(runs: list[dict]) -> list[dict]:
    order = {"base": 0, "power_flow": 1, "low_temperature": 2, "mcmc": 3, "verbalized": 4, "grpo": 5, "empo": 6}
    return sorted(runs, key=lambda r: (order.get(r.get("method") or "power_flow", 9), r.get("alpha") or 0.0,
                                       r.get("method_alpha") or 0.0, r["name"]))


def family_tables_markdown(runs: list[dict]) -> str:
    """A table per eval family: every run's values of the FAMILY_COLUMNS the family has.

    pass@n / maj@n use the largest k each run reports; ms/answer is wall time per sampled answer
    in the same evaluation run. "acc per 100 tokens" = avg@n / tokens per answer × 100, what
    accuracy each method buys per token.
    """
    ordered = sorted(runs, key=row_order)
    parts = ["## Benchmarks, diversity, quality and cost per family\n"]
    for family in families_of(runs):
        columns = [(suffix, header) for suffix, header in FAMILY_COLUMNS
                   if any(finite(family_value(r, family, suffix)) for r in ordered)]
        reasoning = any(finite(family_value(r, family, "accuracy_mean")) for r in ordered)
        has_cost = reasoning and any(finite(family_value(r, family, "tokens_per_answer")) for r in ordered)
        if has_cost:
            columns.append(("acc_per_100_tokens", "acc per 100 tokens"))
        header = ["run", "α"] + [h for _, h in columns]
        lines = [f"### {family}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for run in ordered:
            cells = [run["name"], alpha_cell(run)]
            for suffix, _ in columns:
                value = family_value(run, family, suffix)
                se = (run.get("metrics") or {}).get(f"{family}/{suffix}_se")
                if suffix == "seconds_per_answer":
                    cells.append(fmt(value * 1000 if finite(value) else value, 2))
                elif suffix == "tokens_per_answer":
                    cells.append(fmt(value, 1))
                else:
                    cells.append(fmt_se(value, se) if finite(se) else fmt(value))
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def diagnostics_table_markdown(runs: list[dict]) -> str:
    """Distribution diagnostics of the trained policies (powerflow.eval.diagnostics), if any has them."""
    have = [r for r in sorted(runs, key=row_order) if finite((r.get("metrics") or {}).get("diag/residual_var"))]
    if not have:
        return ""
    header = ["run", "α"] + [h for _, h in DIAGNOSTIC_COLUMNS]
    lines = ["## Distribution diagnostics\n",
             "Residual r = log π(y|q) − α log p_base(y|q) on the policy's own samples: its variance over samples "
             "of a prompt is 0 at the p^α fixed point (LA-TB's length tilt adds λ·length by design). Mean length: "
             "tokens per sampled completion (EOS included) of the policy and of the base model on the same prompts.\n",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in have:
        m = run["metrics"]
        cells = [run["name"], alpha_cell(run)]
        for key, _ in DIAGNOSTIC_COLUMNS:
            cells.append(fmt_se(m.get(key), m.get(f"{key}_se")) if finite(m.get(f"{key}_se")) else fmt(m.get(key)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
