"""The report's Markdown tables: headline, exact p_base^α distance, methods side by side, per family, diagnostics."""

from __future__ import annotations

import math

from powerflow.eval.families import families_in, families_of, pass_at_ks
from powerflow.report.seeds import group_key, seed_mean_rows, seed_mean_se
from powerflow.report.values import (
    ANSWER_KEYED, CREATIVE, OPEN_ENDED, alpha_cell, check_runs, family_kind, family_value, finite, fmt, fmt_se,
    method_label, metric_value, not_applicable_reason, row_order,
)


# Per-family columns of the benchmark tables, in this order, when some run has them: (suffix, header).
FAMILY_COLUMNS = (
    ("accuracy_greedy", "acc greedy"), ("accuracy_mean", "avg@n ± se"), ("pass@max", "pass@n"),
    ("maj@max", "maj@n"), ("no_answer", "no answer"), ("validity", "validity"),
    ("coverage", "coverage ± se"), ("kl_uniform", "KL unif"), ("kl_reference", "KL ref"),
    ("semantic_diversity", "semantic div ± se"), ("distinct_1", "distinct-1"), ("distinct_2", "distinct-2"),
    ("rouge_l", "ROUGE-L"),
    ("self_bleu", "self-BLEU"), ("quality", "quality ± se"), ("judged_quality", "judged quality ± se"),
    ("judge_agreement", "judge agrees with key"), ("judge_failures", "judge fail"),
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
# Numbers of the oracle's p_base^α per family (exact/target/<family>/<name>), beside the row key they fill.
_EXACT_ROW = (("accuracy", "accuracy_mean"), ("coverage", "coverage"), ("validity", "validity"),
              ("kl_uniform", "kl_uniform"))


def exact_row_name(alpha: float, target: dict) -> str:
    """"p_base^α (exact)", or for α < 1, where the oracle bounds the true target's mass on the support
    (support_share_max), "p_base^α on S (exact; the true target: ≤ 56 % on S, accuracy ≤ 0.123)"."""
    share = target.get("reasoning/support_share_max", target.get("open_ended/support_share_max"))
    if share is None or not finite(share):
        return f"p_base^{alpha:g} (exact)"
    parts = [f"≤ {share:.0%} on S"]
    for key, what in (("reasoning/accuracy_max", "accuracy"), ("open_ended/validity_max", "validity")):
        if finite(target.get(key, math.nan)):
            parts.append(f"{what} ≤ {target[key]:.3f}")
    return f"p_base^{alpha:g} on S (exact; the true target: {', '.join(parts)})"


def exact_target_rows(runs: list[dict]) -> list[dict]:
    """One headline row "p_base^α (exact)" per α whose runs carry the world oracle's numbers.

    Its cells are p_base^α itself, renormalised on the world's support, keyed like `runs_table`'s:
    per family accuracy and pass@n exact, coverage and KL to uniform the expectations for n samples
    (what a perfect policy would score), no greedy decoding and no length (tokens/answer mixes families).
    """
    rows: dict[float, dict] = {}
    for run in runs:
        m, alpha = run.get("metrics") or {}, run.get("alpha")
        target = {k[len(EXACT_TARGET):]: v for k, v in m.items() if k.startswith(EXACT_TARGET)}
        if alpha is None or alpha in rows or not any(finite(v) for v in target.values()):
            continue
        row = {"name": exact_row_name(alpha, target), "alpha": alpha, "objective": "exact", "seed": None, "group": None,
               "exact": True, "n_samples": m.get("eval/n_samples"), "registered": None}
        for family in families_in([target]):
            max_k = max(pass_at_ks(target, family), default=None)
            row |= {f"{family}/{key}": metric_value(target, f"{family}/{name}") for name, key in _EXACT_ROW}
            row |= {f"{family}/max_k": max_k,
                    f"{family}/pass@max": metric_value(target, f"{family}/pass@{max_k}") if max_k else math.nan}
        rows[alpha] = row
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
    intro = ("p^α is p_base(y|q)^α renormalised on the world's structured support (every guess answer, every worked "
             "path with its step errors, every one-word answer; powerflow.world.oracle), scored by the base model; "
             "'base mass off support' bounds what that renormalisation can miss. π's columns are read off the "
             "policy's own probabilities of the same completions (no sampling); KL(p^α‖π) counts π's mass off the "
             "support as error. Coverage is the expectation for n samples.\n")
    have = [r for r in runs if finite((r.get("metrics") or {}).get(f"{EXACT_POLICY}reasoning/kl_target"))]
    return distance_table_markdown(have, "Against the exact p_base^α", intro, EXACT_COLUMNS)


# The fixed point of a run's own objective: written by the evaluation for objectives whose target is
# not p_base^α (la_tb's length tilt π*_λ); for the others (tb) it is p^α, so exact/* stands in.
OWN_TARGET = "exact/own_target/"
OWN_POLICY = "exact/own_policy/"
OWN_COLUMNS = (
    (f"{OWN_TARGET}reasoning/accuracy", "π* accuracy"),
    (f"{OWN_POLICY}reasoning/accuracy", "π accuracy (exact)"),
    (f"{OWN_POLICY}reasoning/kl_target", "KL(π*‖π) reasoning"),
    (f"{OWN_POLICY}open_ended/kl_target", "KL(π*‖π) open-ended"),
    (f"{OWN_TARGET}reasoning/length", "π* E|y| reasoning"),
    (f"{OWN_TARGET}reasoning/lambda", "λ reasoning"),
    (f"{EXACT_TARGET}reasoning/accuracy", "p^α accuracy"),
    (f"{EXACT_POLICY}reasoning/kl_target", "KL(p^α‖π) reasoning"),
)


def with_own_target(metrics: dict) -> dict:
    """A run's metrics with exact/own_* filled from exact/* when its objective's fixed point is p^α itself."""
    if any(k.startswith(OWN_POLICY) for k in metrics):
        return metrics
    return metrics | {OWN_TARGET + k[len(EXACT_TARGET):]: v for k, v in metrics.items() if k.startswith(EXACT_TARGET)} \
        | {OWN_POLICY + k[len(EXACT_POLICY):]: v for k, v in metrics.items() if k.startswith(EXACT_POLICY)}


def own_target_table_markdown(runs: list[dict]) -> str:
    """Every trained policy against the fixed point of its own objective (world only), shown when some
    run's objective is not p_base^α itself (la_tb): does each objective reach what it converges to?"""
    if not any(any(k.startswith(OWN_POLICY) for k in (r.get("metrics") or {})) for r in runs):
        return ""
    intro = ("π* is the fixed point of the run's own objective on the same support: p_base^α for tb, the length tilt "
             "π*_λ ∝ p_base^α e^{−λ_q|y|} for la_tb (λ_q solved per prompt; its mean per family is shown). KL(π*‖π) "
             "says how close training came to what its objective converges to; KL(p^α‖π) how close it came to what "
             "was asked.\n")
    have = [{**r, "metrics": with_own_target(r["metrics"])} for r in runs
            if finite((r.get("metrics") or {}).get(f"{EXACT_POLICY}reasoning/kl_target"))]
    return distance_table_markdown(have, "Against each objective's own fixed point", intro, OWN_COLUMNS)


def distance_table_markdown(runs: list[dict], title: str, intro: str, columns: tuple[tuple[str, str], ...]) -> str:
    """A table of `columns` (metric, header) per run, in report order, then the mean ± se across seeds
    of each group with ≥ 2 seeds; "" without runs."""
    if not runs:
        return ""
    header = ["run", "α"] + [h for _, h in columns]
    lines = [f"## {title}\n", intro, "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups: dict[str, list[dict]] = {}
    for run in sorted(runs, key=row_order):
        m = run["metrics"]
        lines.append("| " + " | ".join([run["name"], alpha_cell(run)] + [fmt(m.get(key)) for key, _ in columns]) + " |")
        groups.setdefault(group_key(run), []).append(run)
    for key, members in groups.items():
        if len(members) < 2:
            continue
        cells = [f"{key} (mean over {len(members)} seeds)", alpha_cell(members[0])]
        for metric, _ in columns:
            mean, se = seed_mean_se([metric_value(r["metrics"], metric) for r in members])
            cells.append(fmt_se(mean, se))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# Per family, the numbers a headline or methods-table row keeps (`family_value` suffixes; NaN where a run
# lacks one), under "<family>/<suffix>", beside "<family>/max_k" (the largest k of its pass@k, or None).
ROW_SUFFIXES = ("accuracy_greedy", "accuracy_mean", "accuracy_mean_se", "pass@max", "no_answer", "coverage",
                "coverage_se", "validity", "semantic_diversity", "distinct_2", "quality", "quality_se", "kl_uniform",
                "judged_quality", "judged_quality_se", "judge_agreement")
# A row's run-wide numbers, under their metric names (train/seconds from the training summary).
ROW_TOTALS = ("cost/tokens_per_answer", "cost/inference_tokens_per_answer")
# The block of columns a family gets in the headline and methods tables, per kind (`family_kind`), in this
# order: (suffix, header). "diversity" is the family's semantic diversity where some row has it, else distinct-2.
KIND_COLUMNS = {
    ANSWER_KEYED: (("accuracy_greedy", "acc greedy"), ("accuracy_mean", "avg@n ± se"), ("pass@max", "pass@n"),
                   ("no_answer", "no answer")),
    OPEN_ENDED: (("coverage", "coverage ± se"), ("validity", "validity"), ("diversity", "diversity"),
                 ("quality", "quality ± se"), ("judged_quality", "judged quality ± se"),
                 ("judge_agreement", "judge = key"), ("kl_uniform", "KL to uniform")),
    CREATIVE: (("diversity", "diversity"), ("quality", "quality ± se")),
}


def runs_table(runs: list[dict]) -> list[dict]:
    """One row per run with the headline columns, the base model first, then by α and objective.

    Per family that ran (`families_of`) the ROW_SUFFIXES numbers and max_k, keyed "<family>/<suffix>";
    ROW_TOTALS and train/seconds. Missing metrics are NaN, a family without pass@k has max_k None.
    """
    check_runs(runs)
    families = families_of(runs)
    return sorted((_run_row(run, families) for run in runs), key=row_order)


def _run_row(run: dict, families: list[str]) -> dict:
    m = run.get("metrics") or {}
    row = {"name": run["name"], "alpha": run.get("alpha"), "objective": run.get("objective") or "",
           "seed": run.get("seed"), "group": run.get("group"), "method": run.get("method"),
           "method_alpha": run.get("method_alpha"), "not_applicable": not_applicable_reason(run),
           "n_samples": m.get("eval/n_samples"), "registered": run.get("registered")}
    for family in families:
        row |= {f"{family}/{suffix}": family_value(run, family, suffix) for suffix in ROW_SUFFIXES}
        row[f"{family}/max_k"] = max(pass_at_ks(m, family), default=None)
    row |= {key: metric_value(m, key) for key in ROW_TOTALS}
    row["train/seconds"] = metric_value(run.get("train") or {}, "train/seconds")
    return row


def family_columns(rows: list[dict]) -> list[tuple[str, str, bool]]:
    """The family blocks of the headline and methods tables: (row key, header, k in the cell) per column.

    One block per family of the rows, in the order the families ran, its columns by the family's
    kind (KIND_COLUMNS); a column only where some row has a number for it. Headers carry the family
    (math500 avg@16 ± se); pass@n names its k when every row has the same largest k, else each cell does.
    """
    columns = []
    for family in families_in(rows):
        for suffix, header in KIND_COLUMNS[family_kind(rows, family)]:
            if suffix == "diversity":
                suffix, header = _diversity_column(rows, family)
            key = f"{family}/{suffix}"
            if not any(finite(r.get(key)) for r in rows):
                continue
            with_k = False
            if suffix == "pass@max":
                ks = sorted({r[f"{family}/max_k"] for r in rows if r.get(f"{family}/max_k")})
                header, with_k = (f"pass@{ks[0]}", False) if len(ks) == 1 else ("pass@k (max k)", True)
            elif suffix == "accuracy_mean":
                ns = sorted({int(r["n_samples"]) for r in rows if r.get("n_samples")})
                header = f"avg@{ns[0]} ± se" if len(ns) == 1 else header
            columns.append((key, f"{family} {header}", with_k))
    return columns


def _diversity_column(rows: list[dict], family: str) -> tuple[str, str]:
    """A family's diversity column: semantic diversity where some row has it, else distinct-2."""
    if any(finite(r.get(f"{family}/semantic_diversity")) for r in rows):
        return "semantic_diversity", "semantic diversity"
    return "distinct_2", "distinct-2"


def family_cells(row: dict, columns: list[tuple[str, str, bool]]) -> list[str]:
    """A row's cells of `family_columns`: value ± its se where the row has `<key>_se`, pass@n with (k=…)."""
    cells = []
    for key, _, with_k in columns:
        if key.endswith("/pass@max"):
            k = row.get(key.replace("/pass@max", "/max_k"))
            cells.append(fmt(row.get(key)) + (f" (k={k})" if with_k and k else ""))
        else:
            cells.append(fmt_se(row.get(key), row.get(f"{key}_se")))
    return cells


def headline_table_markdown(rows: list[dict]) -> str:
    """The headline table as Markdown: one line per row (`headline_rows`, or `runs_table`), a block of
    columns per family (`family_columns`), then tokens per answer."""
    columns = family_columns(rows)
    header = ["run", "α", "objective"] + [h for _, h, _ in columns] + ["tokens/answer"]
    lines = [_markdown_row(header), "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["name"], alpha_cell(r), r["objective"] or "–"]
        if r.get("not_applicable"):
            lines.append(_not_applicable_row(cells, r["not_applicable"], len(header)))
            continue
        lines.append(_markdown_row(cells + family_cells(r, columns) + [fmt(r.get("cost/tokens_per_answer"), 1)]))
    return "\n".join(lines) + "\n"


def methods_table_markdown(runs: list[dict]) -> str:
    """Every method side by side on the same benchmarks: accuracy, diversity, validity, cost, training time.

    Columns: the headline's block per family (`family_columns`); tokens per answer (answer length),
    inference tokens per answer (every token generated, MCMC's rejected proposals included), both
    over every family (cost/); training seconds. A run marked not applicable (eval/applicable = 0)
    says so instead of printing numbers.
    """
    rows = runs_table(runs)
    columns = family_columns(rows)
    header = ["method", "run"] + [h for _, h, _ in columns] + ["tokens/answer", "inference tokens/answer",
                                                                "training s"]
    lines = [_markdown_row(header), "|" + "---|" * len(header)]
    for row in _methods_order(rows):
        cells = [method_label(row), row["name"]]
        if row.get("not_applicable"):
            lines.append(_not_applicable_row(cells, row["not_applicable"], len(header)))
            continue
        lines.append(_markdown_row(cells + family_cells(row, columns) + [
            fmt(row["cost/tokens_per_answer"], 1), fmt(row["cost/inference_tokens_per_answer"], 1),
            fmt(row["train/seconds"], 0)]))
    return "\n".join(lines) + "\n"


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _not_applicable_row(cells: list[str], reason: str, width: int) -> str:
    """A table line that says why a run has no numbers, padded to the table's width."""
    cells = cells + [f"not applicable: {reason}"]
    return _markdown_row(cells + [""] * (width - len(cells)))


def _methods_order(runs: list[dict]) -> list[dict]:
    order = {"base": 0, "power_flow": 1, "low_temperature": 2, "mcmc": 3, "smc": 4, "verbalized": 5,
             "high_temperature": 6, "grpo": 7, "empo": 8}
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
