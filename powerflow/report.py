"""The sweep report: one Markdown summary and PNG plots comparing the runs across α.

A run is a dict {"name", "alpha" (None for the base model), "objective", "metrics" (the names of
`powerflow.eval.evaluate`), "train" (the training summary), "registered" (dict or None)}; a
Power-Flow run may add "seed" (its training seed) and "group" (the name its seeds share,
alpha-4.0-la_tb). Everything here reads those dicts only, so the report can be rebuilt from
stored metrics files.

Seeds: the runs of one (α, objective) with different training seeds form a group. Every run keeps
its own row; with ≥ 2 seeds the headline table adds the group's row "mean over N seeds": per
metric the mean over seeds x̄ and its standard error across seeds s/√N (s: std with ddof=1), which
is the spread a rerun with new seeds would show (`seed_mean_se`, `aggregate_seeds`). A single
seed has no across-seed spread: its row keeps the per-prompt standard error of its evaluation.

Best runs, the rule the report states: among trained runs (the base model only when there are
none), best reasoning = highest reasoning/accuracy_mean (avg@n); best diversity = highest
open_ended/coverage among runs whose open_ended/validity ≥ min_validity (0.8 by default),
so a run that buys coverage with invalid answers does not win. With several seeds the rule is
applied to the groups' seed means, and the run chosen (the one the registry alias points at) is
the group's median-seed run by that metric (the lower median for an even count; for diversity
among its seeds that keep the validity, when any does): a typical policy of the best setting, not
its luckiest seed. Ties go to the run listed first (lower α). matplotlib is imported lazily and
draws on the Agg canvas (no display, no pyplot state).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from powerflow.io import atomic_directory, write_text_atomic

ACCURACY = "reasoning/accuracy_mean"
COVERAGE = "open_ended/coverage"
VALIDITY = "open_ended/validity"
DEFAULT_MIN_VALIDITY = 0.8  # below it a run's open-ended answers are too often invalid to call diverse
_PASS_AT = re.compile(r"^(?P<family>[^/]+)/pass@(?P<k>\d+)$")
# Metric prefixes that are not eval families.
_NOT_FAMILIES = {"cost", "eval", "diag", "registered", "sampler", "exact"}
# Per-family columns of the benchmark tables, in this order, when some run has them: (suffix, header).
FAMILY_COLUMNS = (
    ("accuracy_greedy", "acc greedy"), ("accuracy_mean", "avg@n ± se"), ("pass@max", "pass@n"),
    ("maj@max", "maj@n"), ("extraction_failures", "no answer"), ("validity", "validity"),
    ("coverage", "coverage ± se"), ("kl_uniform", "KL unif"), ("kl_reference", "KL ref"),
    ("semantic_diversity", "semantic div ± se"), ("distinct_1", "distinct-1"), ("distinct_2", "distinct-2"), ("rouge_l", "ROUGE-L"),
    ("self_bleu", "self-BLEU"), ("quality", "quality ± se"), ("judge_failures", "judge fail"),
    ("tokens_per_answer", "tokens/answer"), ("seconds_per_answer", "ms/answer"),
)
DIAGNOSTIC_COLUMNS = (
    ("diag/residual_var", "Var[log π − α log p_base] ± se"), ("diag/mean_length", "mean length, policy"),
    ("diag/mean_length_base", "mean length, base"), ("diag/length_ratio", "length ratio"),
)

# Metrics plotted against α when some run has them: (metric, y label).
ALPHA_PLOTS = (
    ("reasoning/accuracy_mean", "reasoning accuracy (avg@n)"),
    ("reasoning/accuracy_greedy", "reasoning accuracy (greedy)"),
    ("open_ended/coverage", "open-ended coverage of the valid set"),
    ("open_ended/validity", "open-ended validity"),
    ("open_ended/kl_uniform", "KL(answers ‖ uniform over valid), nats"),
    ("open_ended/distinct_1", "open-ended distinct-1"),
    ("open_ended/semantic_diversity", "open-ended semantic diversity"),
    ("cost/tokens_per_answer", "tokens per answer"),
)


# ----------------------------------------------------------------------------- seeds


def seed_mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean of one metric over seeds and its standard error across seeds.

        x̄ = Σᵢ xᵢ / n,   se = s / √n,   s² = Σᵢ (xᵢ − x̄)² / (n − 1)   (numpy's std with ddof=1)

    Non-finite values (a seed without the metric) are left out. se is NaN with fewer than two
    values (one seed says nothing about the spread across seeds); both are NaN with none.
    """
    xs = [float(v) for v in values if _finite(v)]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    mean = sum(xs) / n
    if n < 2:
        return mean, math.nan
    variance = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, math.sqrt(variance / n)


def group_key(run: dict) -> str:
    """The name a run's seeds share: its "group" (alpha-4.0-la_tb), else its own name."""
    return run.get("group") or run["name"]


def aggregate_seeds(runs: list[dict]) -> list[dict]:
    """One group per (α, objective) of the trained runs with an α (Power-Flow), in first-seen order.

    A group is {"group", "alpha", "objective", "seeds", "members" (run names, in seed order),
    "n_seeds", "mean" {metric: x̄}, "se" {metric: se}, "se_over"}: every numeric metric but the
    per-prompt standard errors (`<metric>_se`) is averaged over the group's runs (`seed_mean_se`).
    se_over "seeds": se across seeds (n ≥ 2). With one seed se_over is "prompts" and se[m] is the
    run's own `<metric>_se` where it has one (NaN otherwise): the se of that one evaluation.
    """
    members: dict[str, list[dict]] = {}
    for run in runs:
        if run.get("alpha") is not None:
            members.setdefault(group_key(run), []).append(run)
    groups = []
    for key, group in members.items():
        group = sorted(group, key=lambda r: (r.get("seed") is None, r.get("seed") or 0, r["name"]))
        metrics = [r.get("metrics") or {} for r in group]
        names = [k for m in metrics for k, v in m.items() if _finite(v) and not k.endswith("_se")]
        mean, se = {}, {}
        for name in dict.fromkeys(names):
            mean[name], se[name] = seed_mean_se([m.get(name) for m in metrics])
            if len(group) == 1:
                se[name] = _get(metrics[0], f"{name}_se")
        groups.append({"group": key, "alpha": group[0]["alpha"], "objective": group[0].get("objective"),
                       "seeds": [r.get("seed") for r in group], "members": [r["name"] for r in group],
                       "n_seeds": len(group), "mean": mean, "se": se,
                       "se_over": "seeds" if len(group) > 1 else "prompts"})
    return groups


def seed_mean_runs(groups: list[dict]) -> list[dict]:
    """Each group as a run (metrics = its means, `<metric>_se` = its se) for the plots against α."""
    return [{"name": f"{g['group']} (mean over {g['n_seeds']} seeds)", "alpha": g["alpha"], "objective": g["objective"],
             "method": "power_flow", "seed_mean": True, "group": g["group"], "train": {}, "registered": None,
             "metrics": g["mean"] | {f"{k}_se": v for k, v in g["se"].items() if _finite(v)}} for g in groups]


def several_seeds(runs: list[dict]) -> bool:
    """Whether some (α, objective) has ≥ 2 seeds: the report then shows seed means."""
    return any(g["n_seeds"] > 1 for g in aggregate_seeds(runs))


# Row fields of `runs_table` that are a run's own per-prompt standard errors.
_ROW_SE = {"accuracy_mean_se": "accuracy_mean", "coverage_se": "coverage"}
_ROW_NUMBERS = ("accuracy_greedy", "accuracy_mean", "pass_at_max_k", "coverage", "validity", "kl_uniform",
                "tokens_per_answer")


def seed_mean_rows(rows: list[dict]) -> list[dict]:
    """One row per group of `rows` (runs_table rows of trained runs), in first-seen order.

    Numbers are means over the group's runs; accuracy_mean_se and coverage_se are the se across
    seeds (`seed_mean_se`), or the run's own per-prompt se when the group has one run.
    """
    groups: dict[str, list[dict]] = {}
    for row in _candidates(rows):
        groups.setdefault(group_key(row), []).append(row)
    out = []
    for key, members in groups.items():
        n = len(members)
        row = {"name": f"{key} (mean over {n} seeds)" if n > 1 else key, "alpha": members[0]["alpha"],
               "objective": members[0]["objective"], "group": key, "seed_mean": True, "n_seeds": n,
               "members": [m["name"] for m in members], "registered": None, "seed": None,
               "n_samples": members[0].get("n_samples"),
               "max_k": members[0]["max_k"] if len({m["max_k"] for m in members}) == 1 else None}
        for field in _ROW_NUMBERS:
            row[field] = seed_mean_se([m[field] for m in members])[0]
        for se_field, field in _ROW_SE.items():
            row[se_field] = seed_mean_se([m[field] for m in members])[1] if n > 1 else members[0][se_field]
        out.append(row)
    return out


def headline_rows(runs: list[dict]) -> list[dict]:
    """The headline table's rows: every run (`runs_table`), each group's "mean over N seeds" row
    when some (α, objective) has ≥ 2 seeds, and a "p_base^α (exact)" row per α on the world."""
    rows = runs_table(runs)
    if any(r["n_seeds"] > 1 for r in seed_mean_rows(rows)):
        rows = rows + seed_mean_rows(rows)
    return sorted(rows + exact_target_rows(runs), key=_row_order)


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
        if alpha is None or alpha in rows or not _finite(m.get(f"{EXACT_TARGET}reasoning/accuracy")):
            continue
        max_k = max(_pass_at_ks({k[len(EXACT_TARGET):]: v for k, v in m.items() if k.startswith(EXACT_TARGET)}),
                    default=None)
        rows[alpha] = {
            "name": f"p_base^{alpha:g} (exact)", "alpha": alpha, "objective": "exact", "seed": None, "group": None,
            "exact": True, "n_samples": m.get("eval/n_samples"), "accuracy_greedy": math.nan,
            "accuracy_mean": _get(m, f"{EXACT_TARGET}reasoning/accuracy"), "accuracy_mean_se": math.nan,
            "max_k": max_k, "pass_at_max_k": _get(m, f"{EXACT_TARGET}reasoning/pass@{max_k}") if max_k else math.nan,
            "coverage": _get(m, f"{EXACT_TARGET}open_ended/coverage"), "coverage_se": math.nan,
            "validity": _get(m, f"{EXACT_TARGET}open_ended/validity"),
            "kl_uniform": _get(m, f"{EXACT_TARGET}open_ended/kl_uniform"), "tokens_per_answer": math.nan,
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
    have = [r for r in sorted(runs, key=_row_order) if _finite((r.get("metrics") or {}).get(
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
        lines.append("| " + " | ".join([run["name"], _fmt_alpha(run.get("alpha"))]
                                       + [_fmt(m.get(key)) for key, _ in EXACT_COLUMNS]) + " |")
        groups.setdefault(group_key(run), []).append(run)
    for key, members in groups.items():
        if len(members) < 2:
            continue
        cells = [f"{key} (mean over {len(members)} seeds)", _fmt_alpha(members[0].get("alpha"))]
        for metric, _ in EXACT_COLUMNS:
            mean, se = seed_mean_se([_get(r["metrics"], metric) for r in members])
            cells.append(_fmt_se(mean, se))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- tables


def runs_table(runs: list[dict]) -> list[dict]:
    """One row per run with the headline columns, the base model first, then by α and objective.

    Missing metrics are NaN; max_k is the largest k with a reasoning/pass@k metric (None if none).
    """
    _check_runs(runs)
    rows = []
    for run in runs:
        m = run.get("metrics") or {}
        max_k = max(_pass_at_ks(m), default=None)
        rows.append({
            "name": run["name"],
            "alpha": run.get("alpha"),
            "objective": run.get("objective") or "",
            "seed": run.get("seed"),
            "group": run.get("group"),
            "n_samples": m.get("eval/n_samples"),
            "accuracy_greedy": _get(m, "reasoning/accuracy_greedy"),
            "accuracy_mean": _get(m, ACCURACY),
            "accuracy_mean_se": _get(m, f"{ACCURACY}_se"),
            "max_k": max_k,
            "pass_at_max_k": _get(m, f"reasoning/pass@{max_k}") if max_k else math.nan,
            "coverage": _get(m, COVERAGE),
            "coverage_se": _get(m, f"{COVERAGE}_se"),
            "validity": _get(m, VALIDITY),
            "kl_uniform": _get(m, "open_ended/kl_uniform"),
            "tokens_per_answer": _get(m, "cost/tokens_per_answer"),
            "registered": run.get("registered"),
        })
    return sorted(rows, key=_row_order)


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
        pass_cell = _fmt(r["pass_at_max_k"])
        if not one_k and r["max_k"]:
            pass_cell += f" (k={r['max_k']})"
        cells = [r["name"], _fmt_alpha(r["alpha"]), r["objective"] or "–", _fmt(r["accuracy_greedy"]),
                 _fmt_se(r["accuracy_mean"], r["accuracy_mean_se"]), pass_cell,
                 _fmt_se(r["coverage"], r["coverage_se"]), _fmt(r["validity"]), _fmt(r["kl_uniform"]),
                 _fmt(r["tokens_per_answer"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def method_label(run: dict) -> str:
    """What a run is, for the methods table: base model, Power-Flow α=2 (la_tb), MCMC α=4, GRPO, ..."""
    method = run.get("method") or ("base" if run.get("alpha") is None else "power_flow")
    alpha = run.get("alpha") if run.get("alpha") is not None else run.get("method_alpha")
    names = {"base": "base model", "power_flow": "Power-Flow", "low_temperature": "low temperature",
             "mcmc": "MCMC power sampling", "verbalized": "verbalized sampling", "grpo": "GRPO (gold answers)",
             "empo": "EMPO (semantic entropy)"}
    label = names.get(method, method)
    if alpha is not None:
        label += f" α={alpha:g}"
    if method == "power_flow" and run.get("objective"):
        label += f" ({run['objective']})"
    return label


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
        if m.get("eval/applicable") == 0:
            lines.append(f"| {method_label(run)} | {run['name']} | not applicable: "
                         + " | " * (len(header) - 3) + " |")
            continue
        ks = _pass_at_ks(m, family)
        seconds = (run.get("train") or {}).get("train/seconds")
        cells = [method_label(run), run["name"], _fmt(m.get(f"{family}/accuracy_greedy")),
                 _fmt_se(m.get(f"{family}/accuracy_mean"), m.get(f"{family}/accuracy_mean_se")),
                 f"{_fmt(m.get(f'{family}/pass@{max(ks)}'))} (k={max(ks)})" if ks else "–",
                 _fmt(m.get(f"{diversity_family}/semantic_diversity")), _fmt(m.get(f"{diversity_family}/validity")),
                 _fmt(m.get(f"{family}/tokens_per_answer"), 1), _fmt(m.get(f"{family}/inference_tokens_per_answer"), 1),
                 _fmt(seconds, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def method_findings(runs: list[dict], family: str = "reasoning") -> list[str]:
    """Plain statements: did Power-Flow match MCMC power sampling's accuracy at a fraction of its
    inference tokens; where does it stand against GRPO; which methods did not apply.

    "Matched" means avg@n at most 2 standard errors (√(se₁² + se₂²)) below the other method's.
    """
    out = []
    policies = [r for r in runs if r.get("method") == "power_flow"]
    acc, se, inf = f"{family}/accuracy_mean", f"{family}/accuracy_mean_se", f"{family}/inference_tokens_per_answer"
    for mcmc in (r for r in runs if r.get("method") == "mcmc" and _finite((r.get("metrics") or {}).get(acc))):
        same = [p for p in policies if p.get("alpha") == mcmc.get("method_alpha")
                and _finite((p.get("metrics") or {}).get(acc))]
        if not same:
            out.append(f"{method_label(mcmc)}: no Power-Flow run at the same α to compare with.")
            continue
        pf = max(same, key=lambda p: p["metrics"][acc])
        gap, sd = _gap(pf["metrics"], mcmc["metrics"], acc, se)
        ratio = pf["metrics"].get(inf, math.nan) / mcmc["metrics"].get(inf, math.nan)
        verdict = "matched" if gap >= -2 * sd else "did not match"
        out.append(f"Power-Flow {verdict} MCMC power sampling at α={mcmc['method_alpha']:g}: avg@n "
                   f"{_fmt(pf['metrics'][acc])} vs {_fmt(mcmc['metrics'][acc])} ({gap:+.3f}, {_units(gap, sd)}), "
                   f"with {_fmt(ratio, 2)}× its inference tokens per answer "
                   f"({_fmt(pf['metrics'].get(inf), 1)} vs {_fmt(mcmc['metrics'].get(inf), 1)}).")
    best = max((p for p in policies if _finite((p.get("metrics") or {}).get(acc))),
               key=lambda p: p["metrics"][acc], default=None)
    for other in (r for r in runs if r.get("method") in ("grpo", "empo", "low_temperature")
                  and _finite((r.get("metrics") or {}).get(acc))):
        if best is None:
            break
        gap, sd = _gap(best["metrics"], other["metrics"], acc, se)
        out.append(f"Best Power-Flow run ({method_label(best)}) vs {method_label(other)}: avg@n "
                   f"{_fmt(best['metrics'][acc])} vs {_fmt(other['metrics'][acc])} ({gap:+.3f}, {_units(gap, sd)}).")
    for run in runs:
        if (run.get("metrics") or {}).get("eval/applicable") == 0:
            out.append(f"{method_label(run)} was not run here: it needs an instruction-following chat model "
                       "(see outputs/eval/" + run["name"] + "/settings.json).")
    return out


def _methods_order(runs: list[dict]) -> list[dict]:
    order = {"base": 0, "power_flow": 1, "low_temperature": 2, "mcmc": 3, "verbalized": 4, "grpo": 5, "empo": 6}
    return sorted(runs, key=lambda r: (order.get(r.get("method") or "power_flow", 9), r.get("alpha") or 0.0,
                                       r.get("method_alpha") or 0.0, r["name"]))


def _gap(a: dict, b: dict, key: str, se_key: str) -> tuple[float, float]:
    """a − b and its standard error √(se_a² + se_b²) (independent evaluations)."""
    return a[key] - b[key], math.sqrt(_nan_to_zero(a.get(se_key)) ** 2 + _nan_to_zero(b.get(se_key)) ** 2)


def _units(gap: float, sd: float) -> str:
    return f"{gap / sd:+.1f} se" if sd > 0 else "se unknown"


def family_tables_markdown(runs: list[dict]) -> str:
    """A table per eval family: every run's values of the FAMILY_COLUMNS the family has.

    pass@n / maj@n use the largest k each run reports; ms/answer is wall time per sampled answer
    in the same evaluation run. "acc per 100 tokens" = avg@n / tokens per answer × 100, what
    accuracy each method buys per token.
    """
    ordered = sorted(runs, key=_row_order)
    parts = ["## Benchmarks, diversity, quality and cost per family\n"]
    for family in families_of(runs):
        columns = [(suffix, header) for suffix, header in FAMILY_COLUMNS
                   if any(_finite(_family_value(r, family, suffix)) for r in ordered)]
        reasoning = any(_finite(_family_value(r, family, "accuracy_mean")) for r in ordered)
        has_cost = reasoning and any(_finite(_family_value(r, family, "tokens_per_answer")) for r in ordered)
        if has_cost:
            columns.append(("acc_per_100_tokens", "acc per 100 tokens"))
        header = ["run", "α"] + [h for _, h in columns]
        lines = [f"### {family}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for run in ordered:
            cells = [run["name"], _fmt_alpha(run.get("alpha"))]
            for suffix, _ in columns:
                value = _family_value(run, family, suffix)
                se = (run.get("metrics") or {}).get(f"{family}/{suffix}_se")
                if suffix == "seconds_per_answer":
                    cells.append(_fmt(value * 1000 if _finite(value) else value, 2))
                elif suffix == "tokens_per_answer":
                    cells.append(_fmt(value, 1))
                else:
                    cells.append(_fmt_se(value, se) if _finite(se) else _fmt(value))
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def diagnostics_table_markdown(runs: list[dict]) -> str:
    """Distribution diagnostics of the trained policies (powerflow.eval.diagnostics), if any has them."""
    have = [r for r in sorted(runs, key=_row_order) if _finite((r.get("metrics") or {}).get("diag/residual_var"))]
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
        cells = [run["name"], _fmt_alpha(run.get("alpha"))]
        for key, _ in DIAGNOSTIC_COLUMNS:
            cells.append(_fmt_se(m.get(key), m.get(f"{key}_se")) if _finite(m.get(f"{key}_se")) else _fmt(m.get(key)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _family_value(run: dict, family: str, suffix: str) -> float:
    """A family's metric for a table cell: pass@max / maj@max pick the largest k; a derived cost ratio."""
    m = run.get("metrics") or {}
    if suffix in ("pass@max", "maj@max"):
        ks = _pass_at_ks(m, family)
        return _get(m, f"{family}/{suffix[:-4]}@{max(ks)}") if ks else math.nan
    if suffix == "acc_per_100_tokens":
        acc, tokens = _get(m, f"{family}/accuracy_mean"), _get(m, f"{family}/tokens_per_answer")
        return acc / tokens * 100 if tokens > 0 else math.nan
    return _get(m, f"{family}/{suffix}")


def best_runs(rows: list[dict], min_validity: float = DEFAULT_MIN_VALIDITY) -> dict[str, str | None]:
    """Names of the best reasoning and best diversity runs by the rule in the module docstring
    (with several seeds: the median-seed run of the group with the best seed mean)."""
    return {role: run["name"] if run else None for role, (_group, run) in best_choices(rows, min_validity).items()}


def best_groups(rows: list[dict], min_validity: float = DEFAULT_MIN_VALIDITY) -> dict[str, str | None]:
    """The group (alpha-4.0-la_tb; a run's own name when it has no group) each best run is chosen from."""
    return {role: group["group"] if group else None for role, (group, _run) in best_choices(rows, min_validity).items()}


def best_choices(rows: list[dict], min_validity: float = DEFAULT_MIN_VALIDITY) -> dict[str, tuple]:
    """{role: (group row, run row)} for reasoning and diversity; (None, None) when no run qualifies.

    The groups' seed means (`seed_mean_rows`) compete by the rule; the run is the group's
    median-seed member by the role's metric (`_median_member`). One seed: the run itself.
    """
    trained = [r for r in rows if r["alpha"] is not None]
    if trained:
        groups = seed_mean_rows(rows)
        members = {g["group"]: [r for r in trained if group_key(r) == g["group"]] for g in groups}
    else:  # no trained run: the base model (one group of its own)
        groups = [r | {"group": r["name"]} for r in rows]
        members = {r["name"]: [r] for r in rows}
    reasoning = _argmax(groups, "accuracy_mean")
    diversity = _argmax([g for g in groups if g["validity"] >= min_validity], "coverage")  # NaN never passes
    out = {"reasoning": (reasoning, _median_member(members[reasoning["group"]], "accuracy_mean"))
           if reasoning else (None, None)}
    if diversity:
        group = members[diversity["group"]]
        valid = [r for r in group if r["validity"] >= min_validity]
        out["diversity"] = (diversity, _median_member(valid or group, "coverage"))
    else:
        out["diversity"] = (None, None)
    return out


def _median_member(members: list[dict], key: str) -> dict:
    """The member at the (lower) median of `key`; ties by seed. Members without the metric last."""
    ordered = sorted(members, key=lambda r: (not _finite(r[key]), r[key] if _finite(r[key]) else 0.0,
                                             r.get("seed") or 0, r["name"]))
    finite = [r for r in ordered if _finite(r[key])]
    return finite[(len(finite) - 1) // 2] if finite else ordered[0]


def sweep_findings(rows: list[dict], min_validity: float = DEFAULT_MIN_VALIDITY) -> list[str]:
    """Sentences for "what the sweep shows": the best runs against the base model, in se units.

    A difference d = x_run − x_base is reported in units of its standard error
    se_d = √(se_run² + se_base²) (the two evaluations are independent samples).
    """
    base = next((r for r in rows if r["alpha"] is None), None)
    choices = best_choices(rows, min_validity)
    out = []
    run, member = choices["reasoning"]
    if run is None:
        out.append("No run has a reasoning accuracy (reasoning/accuracy_mean).")
    else:
        text = (f"Best reasoning: {_describe(run)} with avg@n accuracy "
                f"{_fmt_se(run['accuracy_mean'], run['accuracy_mean_se'])}")
        if base is not None and run is not base:
            text += (f" vs base {_fmt_se(base['accuracy_mean'], base['accuracy_mean_se'])}: "
                     + _difference(run, base, "accuracy_mean"))
            text += f"; greedy {_fmt(run['accuracy_greedy'])} vs base {_fmt(base['accuracy_greedy'])}"
        out.append(text + _chosen_member(run, member, "accuracy_mean") + ".")
    run, member = choices["diversity"]
    if run is None:
        candidates = [r for r in _candidates(rows) if not math.isnan(r["coverage"])]
        if not candidates:
            out.append("No run has an open-ended coverage (open_ended/coverage).")
        else:
            widest = _argmax(candidates, "coverage")
            out.append(f"No run keeps open-ended validity ≥ {min_validity:g}: the highest coverage, "
                       f"{_fmt(widest['coverage'])} at {_describe(widest)}, comes with validity "
                       f"{_fmt(widest['validity'])} (not kept).")
    else:
        text = f"Best diversity (validity ≥ {min_validity:g}): {_describe(run)} with coverage " + _fmt_se(
            run["coverage"], run["coverage_se"])
        if base is not None and run is not base:
            text += f" vs base {_fmt_se(base['coverage'], base['coverage_se'])}: " + _difference(run, base, "coverage")
            text += f"; KL to uniform {_fmt(run['kl_uniform'])} vs base {_fmt(base['kl_uniform'])}"
        text += f"; validity {_fmt(run['validity'])}"
        if base is not None and run is not base:
            text += f" vs base {_fmt(base['validity'])}"
        out.append(text + f", kept (≥ {min_validity:g})" + _chosen_member(run, member, "coverage") + ".")
    return out


def _chosen_member(group: dict, member: dict, key: str) -> str:
    """", the alias points at <run> (median seed, <value>)" for a group of several seeds; "" otherwise."""
    if (group.get("n_seeds") or 1) < 2:
        return ""
    return (f"; the registry alias points at {member['name']}, its median seed by {key} "
            f"({_fmt(member[key])})")


# ----------------------------------------------------------------------------- plots


def plot_metric_vs_alpha(runs: list[dict], metric: str, path: str | Path, *, ylabel: str | None = None) -> Path:
    """`metric` against α (log₂ axis), one line per objective, ± se bars when `<metric>_se` exists.

    The base model (α None) is a dashed horizontal line. Raises ValueError if no run has `metric`.
    """
    _check_runs(runs)
    have = [r for r in runs if _finite((r.get("metrics") or {}).get(metric))]
    if not have:
        raise ValueError(f"no run has metric {metric!r}")
    fig, ax = _figure()
    trained = sorted((r for r in have if r.get("alpha") is not None), key=lambda r: r["alpha"])
    for objective in sorted({r.get("objective") or "" for r in trained}):
        group = [r for r in trained if (r.get("objective") or "") == objective]
        ys = [r["metrics"][metric] for r in group]
        errs = [_get(r["metrics"], f"{metric}_se") for r in group]
        errs = [0.0 if math.isnan(e) else e for e in errs] if any(_finite(e) for e in errs) else None
        ax.errorbar([r["alpha"] for r in group], ys, yerr=errs, marker="o", capsize=3, label=objective or "policy")
    for i, ref in enumerate(r for r in have if r.get("alpha") is None):  # base model and baselines
        ax.axhline(ref["metrics"][metric], linestyle="--" if i < 4 else ":", color=f"C{(7 + i) % 10}",
                   label=_reference_label(ref))
    if trained:
        ax.set_xscale("log", base=2)
        alphas = sorted({r["alpha"] for r in trained})
        ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
    ax.set_xlabel("α")
    ax.set_ylabel(ylabel or metric)
    ax.set_title(metric)
    ax.legend(fontsize="small")
    return _save_figure(fig, path)


def plot_pass_at_k(runs: list[dict], path: str | Path, family: str = "reasoning") -> Path:
    """pass@k of one family against k (log₂ axis), one curve per run; the base model dashed."""
    _check_runs(runs)
    curves = [(r, sorted(_pass_at_ks(r.get("metrics") or {}, family))) for r in runs]
    curves = [(r, ks) for r, ks in curves if ks]
    if not curves:
        raise ValueError(f"no run has {family}/pass@k metrics")
    fig, ax = _figure()
    for run, ks in sorted(curves, key=lambda c: _row_order(c[0])):
        ys = [run["metrics"][f"{family}/pass@{k}"] for k in ks]
        if run.get("alpha") is None and run["name"] == "base":
            ax.plot(ks, ys, "--", marker="o", color="C7", label=_base_label(run["name"]))
        elif run.get("alpha") is None and run.get("method"):
            ax.plot(ks, ys, ":", marker="s", label=method_label(run))
        elif run.get("alpha") is not None:
            ax.plot(ks, ys, "-", marker="o", label=f"{run['name']} (α={run['alpha']:g})")
        else:
            ax.plot(ks, ys, "-", marker="o", label=run["name"])
    all_ks = sorted({k for _, ks in curves for k in ks})
    ax.set_xscale("log", base=2)
    ax.set_xticks(all_ks, [str(k) for k in all_ks])
    ax.set_xlabel("k")
    ax.set_ylabel(f"{family} pass@k")
    ax.set_title(f"{family}: pass@k")
    ax.legend(fontsize="small")
    return _save_figure(fig, path)


def plot_diversity_vs_quality(
    runs: list[dict], path: str | Path, family: str, diversity: str = "semantic_diversity", quality: str = "quality"
) -> Path:
    """One point per run: <family>/<quality> (x) against <family>/<diversity> (y), labelled by α and
    method (the objective, or the run name for the base model and baselines), ± se bars."""
    _check_runs(runs)
    xk, yk = f"{family}/{quality}", f"{family}/{diversity}"
    have = [r for r in runs if _finite((r.get("metrics") or {}).get(xk)) and _finite(r["metrics"].get(yk))]
    if not have:
        raise ValueError(f"no run has both {xk} and {yk}")
    fig, ax = _figure()
    for i, run in enumerate(sorted(have, key=_row_order)):
        m = run["metrics"]
        label = (f"α={run['alpha']:g} {run.get('objective') or ''}".strip() if run.get("alpha") is not None
                 else _reference_label(run))
        ax.errorbar(m[xk], m[yk], xerr=_nan_to_zero(m.get(f"{xk}_se")), yerr=_nan_to_zero(m.get(f"{yk}_se")),
                    marker="s" if run.get("alpha") is None else "o", capsize=3, color=f"C{i % 10}", label=label)
    ax.set_xlabel(f"{family} {quality}")
    ax.set_ylabel(f"{family} {diversity}")
    ax.set_title(f"{family}: diversity against quality")
    ax.legend(fontsize="small")
    return _save_figure(fig, path)


def plot_training_curves(histories: dict[str, list[dict]], metric: str, path: str | Path) -> Path:
    """`metric` against training step, one curve per run (entries without the metric are skipped)."""
    fig, ax = _figure()
    drawn = 0
    for name, history in histories.items():
        points = [(h["step"], h[metric]) for h in history if "step" in h and _finite(h.get(metric))]
        if points:
            ax.plot(*zip(*points), label=name)
            drawn += 1
    if not drawn:
        raise ValueError(f"no training history has metric {metric!r}")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(metric)
    ax.legend(fontsize="small")
    return _save_figure(fig, path)


# ----------------------------------------------------------------------------- the report


def write_report(
    runs: list[dict],
    histories: dict[str, list[dict]],
    out_dir: str | Path,
    *,
    title: str,
    notes: Sequence[str] = (),
    min_validity: float = DEFAULT_MIN_VALIDITY,
    training_metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write out_dir/report.md and out_dir/plots/*.png; return their paths and the best runs.

    The plots directory is replaced whole (no stale plots survive) and report.md is written after
    it, both atomically. training_metrics: the history keys to plot (default: every numeric key
    but "step"). Returns {"report": Path, "plots": [Path], "best": {"reasoning", "diversity"} (run
    names), "best_groups" (the (α, objective) groups they were chosen from), "groups"
    (`aggregate_seeds`)}. With several seeds the plots against α draw each group's seed mean ± its
    se across seeds (`seed_mean_runs`) instead of one point per seed.
    """
    out_dir = Path(out_dir)
    rows = runs_table(runs)
    groups = aggregate_seeds(runs)
    multi_seed = any(g["n_seeds"] > 1 for g in groups)
    if multi_seed:  # one point per (α, objective): the seed mean; the base model and baselines as they are
        runs_for_plots = [r for r in runs if r.get("alpha") is None] + seed_mean_runs(groups)
    else:
        runs_for_plots = runs
    plot_dir = out_dir / "plots"
    names: list[tuple[str, str]] = []  # (file name, caption)
    with atomic_directory(plot_dir) as tmp:
        for metric, ylabel in ALPHA_PLOTS:
            if any(_finite((r.get("metrics") or {}).get(metric)) for r in runs_for_plots):
                name = f"{_slug(metric)}_vs_alpha.png"
                plot_metric_vs_alpha(runs_for_plots, metric, tmp / name, ylabel=ylabel)
                names.append((name, f"{ylabel} vs α"))
        for family in families_of(runs_for_plots):
            if any(_pass_at_ks(r.get("metrics") or {}, family) for r in runs_for_plots):
                plot_pass_at_k(runs_for_plots, tmp / f"{_slug(family)}_pass_at_k.png", family)
                names.append((f"{_slug(family)}_pass_at_k.png", f"{family} pass@k"))
            if family != "reasoning" and any(_finite((r.get("metrics") or {}).get(f"{family}/accuracy_mean"))
                                             for r in runs_for_plots):
                name = f"{_slug(family)}_accuracy_mean_vs_alpha.png"
                plot_metric_vs_alpha(runs_for_plots, f"{family}/accuracy_mean", tmp / name,
                                     ylabel=f"{family} avg@n")
                names.append((name, f"{family} accuracy (avg@n) vs α"))
            for diversity in ("semantic_diversity", "coverage"):
                if any(_finite((r.get("metrics") or {}).get(f"{family}/{diversity}"))
                       and _finite(r["metrics"].get(f"{family}/quality")) for r in runs_for_plots):
                    name = f"{_slug(family)}_{diversity}_vs_quality.png"
                    plot_diversity_vs_quality(runs_for_plots, tmp / name, family, diversity)
                    names.append((name, f"{family}: {diversity} against quality per α and method"))
        for metric in training_metrics if training_metrics is not None else _history_metrics(histories):
            if any(_finite(h.get(metric)) for hist in histories.values() for h in hist):
                name = f"training_{_slug(metric)}.png"
                plot_training_curves(histories, metric, tmp / name)
                names.append((name, f"training: {metric}"))
    best = best_runs(rows, min_validity)
    text = _report_markdown(title, rows, runs, sweep_findings(rows, min_validity), names, notes,
                            min_validity, groups)
    report = write_text_atomic(text, out_dir / "report.md")
    return {"report": report, "plots": [plot_dir / name for name, _ in names], "best": best,
            "best_groups": best_groups(rows, min_validity), "groups": groups}


def seeds_note(groups: list[dict]) -> str:
    """What the ± of the headline table means, given how many seeds each (α, objective) has."""
    counts = sorted({g["n_seeds"] for g in groups})
    if not counts or counts == [1]:
        return ("Seeds: one training seed per (α, objective), so ± is the per-prompt standard error of that "
                "one evaluation; a standard error across seeds needs ≥ 2 seeds (sweep.seeds, e.g. [0, 1, 2]).\n")
    n = "/".join(map(str, counts))
    return (f"Seeds: {n} training seeds per (α, objective). A run's row gives ± its per-prompt standard error; "
            "each \"mean over N seeds\" row gives the mean over its seeds ± the standard error across seeds, "
            "std(ddof=1)/√N, the spread a rerun with other seeds would show.\n")


def _report_markdown(title, rows, runs, findings, plots, notes, min_validity, groups=()) -> str:
    multi_seed = any(g["n_seeds"] > 1 for g in groups)
    headline = headline_rows(runs)
    rule_seeds = (" With several seeds the rule compares the (α, objective) seed means, and the run chosen is "
                  "that group's median-seed run by the same metric (the lower median for an even count)."
                  if multi_seed else "")
    parts = [f"# {title}\n", "## Headline\n", headline_table_markdown(headline),
             ("Reasoning accuracy: greedy decoding, and avg@n (mean over prompts of the fraction of n samples that "
              "are correct) ± its standard error over prompts. Coverage: fraction of each open-ended prompt's valid "
              "answers that appear among its samples, averaged over prompts. Validity: fraction of open-ended "
              "samples that are valid answers. KL to uniform: KL(empirical valid answers ‖ uniform over the valid "
              "set), nats. Tokens/answer: mean sampled completion length (EOS included).\n"),
             seeds_note(list(groups)),
             "## What the sweep shows\n", *[f"- {f}" for f in findings], "",
             (f"Rule: best reasoning = highest avg@n among trained runs; best diversity = highest coverage among "
              f"trained runs with open-ended validity ≥ {min_validity:g}.{rule_seeds} Differences are given in "
              "units of √(se_run² + se_base²).\n")]
    if any(r.get("method") not in (None, "base", "power_flow") for r in runs):
        parts += ["## Methods side by side\n", methods_table_markdown(runs),
                  "Every method uses the same base model, prompts, evaluation and training budget. Inference "
                  "tokens count every token a method generated per answer (MCMC's rejected proposals included); "
                  "greedy accuracy of an inference-time method is the base model's.\n",
                  *[f"- {f}" for f in method_findings(runs)], ""]
    parts += [exact_distance_table_markdown(runs), family_tables_markdown(runs), diagnostics_table_markdown(runs)]
    if plots:
        parts += ["## Plots\n", *[f"![{caption}](plots/{name})\n" for name, caption in plots]]
    parts += ["## Runs\n", _runs_markdown(rows, runs)]
    if notes:
        parts += ["## Notes\n", *[f"- {n}" for n in notes], ""]
    return "\n".join(parts).rstrip() + "\n"


def _runs_markdown(rows: list[dict], runs: list[dict]) -> str:
    """Per run: the registered model and the scalar values of its training summary."""
    train = {r["name"]: r.get("train") or {} for r in runs}
    lines = ["| run | α | registered | training summary |", "|---|---|---|---|"]
    for row in rows:
        reg = row["registered"]
        reg_cell = ", ".join(f"{k}={v}" for k, v in sorted(reg.items()) if _is_scalar(v)) if reg else "–"
        summary = ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}"
                            for k, v in sorted(train[row["name"]].items()) if _is_scalar(v))
        lines.append(f"| {row['name']} | {_fmt_alpha(row['alpha'])} | {reg_cell or '–'} | {summary or '–'} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- helpers


def _check_runs(runs: list[dict]) -> None:
    if not runs:
        raise ValueError("the report needs at least one run")
    for i, run in enumerate(runs):
        if "name" not in run or not isinstance(run.get("metrics", {}), dict):
            raise ValueError(f"run {i} needs a 'name' and a 'metrics' dict, got keys {sorted(run)}")
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {names}")


def _row_order(row: dict) -> tuple:
    """Base model (α None) first, then α ascending, then objective, seed (a group's seed mean after
    its seeds) and name."""
    alpha = row.get("alpha")
    seed = row.get("seed")
    return (alpha is not None, alpha if alpha is not None else 0.0, row.get("objective") or "",
            bool(row.get("seed_mean")), seed if isinstance(seed, int) else 0, row["name"])


def _candidates(rows: list[dict]) -> list[dict]:
    trained = [r for r in rows if r["alpha"] is not None]
    return trained or rows


def _argmax(rows: list[dict], key: str) -> dict | None:
    best = None
    for r in rows:
        if _finite(r[key]) and (best is None or r[key] > best[key]):
            best = r
    return best


def _difference(run: dict, base: dict, key: str) -> str:
    diff = run[key] - base[key]
    se = math.sqrt(_nan_to_zero(run.get(f"{key}_se")) ** 2 + _nan_to_zero(base.get(f"{key}_se")) ** 2)
    units = f"{diff / se:+.1f} se" if se > 0 else "se unknown"
    return f"{diff:+.3f} ({units})"


def _describe(row: dict) -> str:
    alpha = "base model" if row["alpha"] is None else f"α={row['alpha']:g}"
    objective = f" {row['objective']}" if row["objective"] else ""
    if (row.get("n_seeds") or 1) > 1:
        return f"{alpha}{objective} ({row['group']}, mean over {row['n_seeds']} seeds, ± se across seeds)"
    return f"{alpha}{objective} (run {row.get('members', [row['name']])[0]})"


def _pass_at_ks(metrics: dict, family: str = "reasoning") -> list[int]:
    return [int(m["k"]) for key in metrics
            if (m := _PASS_AT.match(key)) and m["family"] == family and _finite(metrics[key])]


def families_of(runs: list[dict]) -> list[str]:
    """Eval families in the runs' metrics (the prefix before '/'), in first-seen order."""
    seen: dict[str, None] = {}
    for run in runs:
        for key in run.get("metrics") or {}:
            prefix = key.split("/", 1)[0]
            if "/" in key and prefix not in _NOT_FAMILIES:
                seen.setdefault(prefix, None)
    return list(seen)


def _history_metrics(histories: dict[str, list[dict]]) -> list[str]:
    keys = {k for hist in histories.values() for h in hist for k, v in h.items() if k != "step" and _finite(v)}
    return sorted(keys)


def _get(metrics: dict, key: str) -> float:
    value = metrics.get(key)
    return float(value) if _finite(value) else math.nan


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _nan_to_zero(value: Any) -> float:
    return float(value) if _finite(value) else 0.0


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if _finite(value) else "–"


def _fmt_se(value: Any, se: Any) -> str:
    return f"{_fmt(value)} ± {_fmt(se)}" if _finite(value) and _finite(se) else _fmt(value)


def _fmt_alpha(alpha: float | None) -> str:
    return "base" if alpha is None else f"{alpha:g}"


def _reference_label(run: dict) -> str:
    """Legend text of a run drawn as a reference line: the base model, or a baseline method."""
    if run.get("method") not in (None, "base"):
        return method_label(run)
    return _base_label(run["name"])


def _base_label(name: str) -> str:
    return "base model" if name == "base" else f"base model ({name})"


def _slug(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric.replace("@", "_at_")).strip("_")


def _figure():
    """A figure on the Agg canvas (no pyplot: no global state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(alpha=0.3)
    return fig, ax


def _save_figure(fig, path: str | Path) -> Path:
    """Save as PNG beside `path` under a temporary name, then rename: no half-written image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=110)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
