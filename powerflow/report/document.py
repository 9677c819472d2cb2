"""The whole report: report.md assembled from the tables, findings and plots, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from powerflow.io import atomic_directory, write_text_atomic
from powerflow.report.findings import best_groups, best_runs, method_findings, sweep_findings
from powerflow.report.plots import (
    ALPHA_PLOTS, history_metrics, plot_diversity_vs_quality, plot_metric_vs_alpha, plot_pass_at_k,
    plot_training_curves,
)
from powerflow.report.seeds import aggregate_seeds, seed_mean_runs
from powerflow.report.tables import (
    diagnostics_table_markdown, exact_distance_table_markdown, family_tables_markdown, headline_rows,
    headline_table_markdown, methods_table_markdown, runs_table,
)
from powerflow.report.values import (
    DEFAULT_MIN_VALIDITY, alpha_cell, families_of, finite, fmt, is_scalar, pass_at_ks, slug,
)


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
            if any(finite((r.get("metrics") or {}).get(metric)) for r in runs_for_plots):
                name = f"{slug(metric)}_vs_alpha.png"
                plot_metric_vs_alpha(runs_for_plots, metric, tmp / name, ylabel=ylabel)
                names.append((name, f"{ylabel} vs α"))
        for family in families_of(runs_for_plots):
            if any(pass_at_ks(r.get("metrics") or {}, family) for r in runs_for_plots):
                plot_pass_at_k(runs_for_plots, tmp / f"{slug(family)}_pass_at_k.png", family)
                names.append((f"{slug(family)}_pass_at_k.png", f"{family} pass@k"))
            if family != "reasoning" and any(finite((r.get("metrics") or {}).get(f"{family}/accuracy_mean"))
                                             for r in runs_for_plots):
                name = f"{slug(family)}_accuracy_mean_vs_alpha.png"
                plot_metric_vs_alpha(runs_for_plots, f"{family}/accuracy_mean", tmp / name,
                                     ylabel=f"{family} avg@n")
                names.append((name, f"{family} accuracy (avg@n) vs α"))
            for diversity in ("semantic_diversity", "coverage"):
                if any(finite((r.get("metrics") or {}).get(f"{family}/{diversity}"))
                       and finite(r["metrics"].get(f"{family}/quality")) for r in runs_for_plots):
                    name = f"{slug(family)}_{diversity}_vs_quality.png"
                    plot_diversity_vs_quality(runs_for_plots, tmp / name, family, diversity)
                    names.append((name, f"{family}: {diversity} against quality per α and method"))
        for metric in training_metrics if training_metrics is not None else history_metrics(histories):
            if any(finite(h.get(metric)) for hist in histories.values() for h in hist):
                name = f"training_{slug(metric)}.png"
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
        reg_cell = ", ".join(f"{k}={v}" for k, v in sorted(reg.items()) if is_scalar(v)) if reg else "–"
        summary = ", ".join(f"{k}={fmt(v) if isinstance(v, float) else v}"
                            for k, v in sorted(train[row["name"]].items()) if is_scalar(v))
        lines.append(f"| {row['name']} | {alpha_cell(row)} | {reg_cell or '–'} | {summary or '–'} |")
    return "\n".join(lines) + "\n"
