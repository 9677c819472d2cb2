"""The whole report: report.md assembled from the tables, findings and plots, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from powerflow.eval.families import families_in, families_of, pass_at_ks
from powerflow.io import atomic_directory, write_text_atomic
from powerflow.report.creative import creative_table_markdown
from powerflow.report.findings import alias_families, best_groups, best_runs, method_findings, sweep_findings
from powerflow.report.plots import (
    ALPHA_PLOTS, history_metrics, plot_diversity_vs_quality, plot_metric_vs_alpha, plot_pass_at_k,
    plot_training_curves,
)
from powerflow.report.seeds import aggregate_seeds, seed_mean_runs
from powerflow.report.tables import (
    diagnostics_table_markdown, exact_distance_table_markdown, family_tables_markdown, headline_rows,
    headline_table_markdown, methods_table_markdown, own_target_table_markdown, runs_table,
)
from powerflow.report.values import (
    ANSWER_KEYED, CREATIVE, DEFAULT_MIN_VALIDITY, OPEN_ENDED, alpha_cell, family_kind, finite, fmt, is_scalar, slug,
)
from powerflow.config.sections import WORLD_MODEL


def sweep_title(sweep: str, model: str) -> str:
    """The report's title when report.title is null, from the sweep and the base model:
    "powerflow α sweep `default` on the embedded world", or "... on Qwen/Qwen2.5-0.5B"."""
    return f"powerflow α sweep `{sweep}` on {'the embedded world' if model == WORLD_MODEL else model}"


def write_report(
    runs: list[dict],
    histories: dict[str, list[dict]],
    out_dir: str | Path,
    *,
    title: str,
    notes: Sequence[str] = (),
    min_validity: float = DEFAULT_MIN_VALIDITY,
    training_metrics: Sequence[str] | None = None,
    select_on: str | None = None,
    select_diversity_on: str | None = None,
) -> dict[str, Any]:
    """Write out_dir/report.md and out_dir/plots/*.png; return their paths and the best runs.

    The plots directory is replaced whole (no stale plots survive) and report.md is written after
    it, both atomically. training_metrics: the history keys to plot (default: every numeric key
    but "step"). select_on / select_diversity_on: the families the best runs are chosen on (None:
    the first answer-keyed / open-ended family that ran; `alias_family`); a family that did not run
    is a ConfigError, raised before anything is written. Returns {"report": Path, "plots": [Path],
    "best": {"reasoning", "diversity"} (run names), "best_groups" (the (α, objective) groups they
    were chosen from), "select_on": {"reasoning", "diversity"} (the families they were chosen on,
    None where no family of the kind ran), "groups" (`aggregate_seeds`)}. With several seeds the
    plots against α draw each group's seed mean ± its se across seeds (`seed_mean_runs`) instead of
    one point per seed.
    """
    out_dir = Path(out_dir)
    rows = runs_table(runs)
    families = alias_families(rows, select_on, select_diversity_on)
    chosen_on = {"select_on": families["reasoning"], "select_diversity_on": families["diversity"]}
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
    best = best_runs(rows, min_validity, **chosen_on)
    text = _report_markdown(title, rows, runs, sweep_findings(rows, min_validity, **chosen_on), names, notes,
                            min_validity, groups, families)
    report = write_text_atomic(text, out_dir / "report.md")
    return {"report": report, "plots": [plot_dir / name for name, _ in names], "best": best,
            "best_groups": best_groups(rows, min_validity, **chosen_on), "select_on": families, "groups": groups}


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


def _report_markdown(title, rows, runs, findings, plots, notes, min_validity, groups=(), families=None) -> str:
    multi_seed = any(g["n_seeds"] > 1 for g in groups)
    headline = headline_rows(runs)
    families = families or alias_families(rows)
    parts = [f"# {title}\n", "## Headline\n", headline_table_markdown(headline), headline_legend(headline),
             seeds_note(list(groups)),
             "## What the sweep shows\n", *[f"- {f}" for f in findings], "", rule_text(families, min_validity,
                                                                                      multi_seed)]
    if any(r.get("method") not in (None, "base", "power_flow") for r in runs):
        parts += ["## Methods side by side\n", methods_table_markdown(runs),
                  "Every method uses the same base model, prompts, evaluation and training budget. Inference "
                  "tokens count every token a method generated per answer (MCMC's rejected proposals included); "
                  "greedy accuracy of an inference-time method is the base model's.\n",
                  *[f"- {f}" for f in method_findings(runs, families["reasoning"])], ""]
    parts += [creative_table_markdown(runs), exact_distance_table_markdown(runs), own_target_table_markdown(runs),
              family_tables_markdown(runs),
              diagnostics_table_markdown(runs)]
    if plots:
        parts += ["## Plots\n", *[f"![{caption}](plots/{name})\n" for name, caption in plots]]
    parts += ["## Runs\n", _runs_markdown(rows, runs)]
    if notes:
        parts += ["## Notes\n", *[f"- {n}" for n in notes], ""]
    return "\n".join(parts).rstrip() + "\n"


# What the headline's columns mean, per kind of family that ran (`family_kind`).
_LEGEND = {
    ANSWER_KEYED: ("Answer-keyed families ({families}): acc greedy is the accuracy of greedy decoding; avg@n the mean "
                   "over prompts of the fraction of n samples that are correct, ± its standard error over prompts; "
                   "pass@k the chance that one of k samples is correct; no answer the share of answers the grader "
                   "could not read."),
    OPEN_ENDED: ("Open-ended families ({families}): coverage is the fraction of each prompt's valid answers that "
                 "appear among its samples, averaged over prompts; validity the fraction of samples that are valid "
                 "answers; diversity the semantic diversity of the samples (distinct-2 without an embedder); "
                 "quality the score against the answer key, ± se over prompts; judged quality the judge's score "
                 "in [0, 1] (evaluate.judge), ± se over answers, and judge = key "
                 "the share of answers where the judge's verdict (score ≥ ½) agrees with the answer key; KL to "
                 "uniform KL(empirical valid answers ‖ uniform over the valid set), nats."),
    CREATIVE: ("Creative families ({families}): diversity is the semantic diversity of the samples (distinct-2 "
               "without an embedder); quality the judge's rubric score in [0, 1], ± se over prompts."),
}


def headline_legend(rows: list[dict]) -> str:
    """What the headline table's columns mean: a sentence per kind of family among `rows`, the exact
    p_base^α rows when there are some, and tokens per answer."""
    families = families_in(rows)
    kinds = {kind: [f for f in families if family_kind(rows, f) == kind] for kind in _LEGEND}
    parts = [_LEGEND[kind].format(families=", ".join(names)) for kind, names in kinds.items() if names]
    if any(r.get("exact") for r in rows):
        parts.append("A p_base^α (exact) row is the target itself on the embedded world (powerflow.world.oracle): "
                     "what a policy that samples p_base^α exactly would score. Below α = 1 it is p_base^α "
                     "renormalised on the world's support S, and the true target (normalised over every "
                     "sequence) puts mass outside S as well, since p^α with α < 1 lifts the base's thin tail: "
                     "the row's name bounds how much of it S holds and its accuracy (validity).")
    parts.append("Tokens/answer: mean sampled completion length (EOS included), over every family.")
    return " ".join(parts) + "\n"


def rule_text(families: dict[str, str | None], min_validity: float, multi_seed: bool = False) -> str:
    """The best-run rule as the report states it, naming the family each alias is chosen on
    (`alias_families`), or saying why an alias has no run."""
    reasoning, diversity = families["reasoning"], families["diversity"]
    parts = [f"best reasoning = highest {reasoning} avg@n among trained runs" if reasoning else
             "best reasoning: none, no answer-keyed family ran (report.select_on names one)",
             f"best diversity = highest {diversity} coverage among trained runs with {diversity} validity "
             f"≥ {min_validity:g}" if diversity else
             "best diversity: none, no open-ended family ran (report.select_diversity_on names one)"]
    seeds = (" With several seeds the rule compares the (α, objective) seed means, and the run chosen is "
             "that group's median-seed run by the same metric (the lower median for an even count)."
             if multi_seed else "")
    return f"Rule: {'; '.join(parts)}.{seeds} Differences are given in units of √(se_run² + se_base²).\n"


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
