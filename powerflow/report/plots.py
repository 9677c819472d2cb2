"""The report's PNG plots: metrics against α, pass@k, diversity against quality, training curves."""

from __future__ import annotations

import math
from pathlib import Path

from powerflow.eval.families import pass_at_ks
from powerflow.eval.plots import figure, pass_at_k_axes, save_figure
from powerflow.report.values import (
    base_label, check_runs, finite, method_label, metric_value, nan_to_zero, reference_label, row_order,
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


def plot_metric_vs_alpha(runs: list[dict], metric: str, path: str | Path, *, ylabel: str | None = None) -> Path:
    """`metric` against α (log₂ axis), one line per objective, ± se bars when `<metric>_se` exists.

    The base model (α None) is a dashed horizontal line. Raises ValueError if no run has `metric`.
    """
    check_runs(runs)
    have = [r for r in runs if finite((r.get("metrics") or {}).get(metric))]
    if not have:
        raise ValueError(f"no run has metric {metric!r}")
    fig, ax = figure()
    trained = sorted((r for r in have if r.get("alpha") is not None), key=lambda r: r["alpha"])
    for objective in sorted({r.get("objective") or "" for r in trained}):
        group = [r for r in trained if (r.get("objective") or "") == objective]
        ys = [r["metrics"][metric] for r in group]
        errs = [metric_value(r["metrics"], f"{metric}_se") for r in group]
        errs = [0.0 if math.isnan(e) else e for e in errs] if any(finite(e) for e in errs) else None
        ax.errorbar([r["alpha"] for r in group], ys, yerr=errs, marker="o", capsize=3, label=objective or "policy")
    for i, ref in enumerate(r for r in have if r.get("alpha") is None):  # base model and baselines
        ax.axhline(ref["metrics"][metric], linestyle="--" if i < 4 else ":", color=f"C{(7 + i) % 10}",
                   label=reference_label(ref))
    if trained:
        ax.set_xscale("log", base=2)
        alphas = sorted({r["alpha"] for r in trained})
        ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
    ax.set_xlabel("α")
    ax.set_ylabel(ylabel or metric)
    ax.set_title(metric)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_pass_at_k(runs: list[dict], path: str | Path, family: str = "reasoning") -> Path:
    """pass@k of one family against k (log₂ axis), one curve per run; the base model dashed."""
    check_runs(runs)
    curves = [(r, sorted(pass_at_ks(r.get("metrics") or {}, family))) for r in runs]
    curves = [(r, ks) for r, ks in curves if ks]
    if not curves:
        raise ValueError(f"no run has {family}/pass@k metrics")
    fig, ax = figure()
    for run, ks in sorted(curves, key=lambda c: row_order(c[0])):
        ys = [run["metrics"][f"{family}/pass@{k}"] for k in ks]
        if run.get("alpha") is None and run["name"] == "base":
            ax.plot(ks, ys, "--", marker="o", color="C7", label=base_label(run["name"]))
        elif run.get("alpha") is None and run.get("method"):
            ax.plot(ks, ys, ":", marker="s", label=method_label(run))
        elif run.get("alpha") is not None:
            ax.plot(ks, ys, "-", marker="o", label=f"{run['name']} (α={run['alpha']:g})")
        else:
            ax.plot(ks, ys, "-", marker="o", label=run["name"])
    pass_at_k_axes(ax, sorted({k for _, ks in curves for k in ks}), family)
    return save_figure(fig, path)


def plot_diversity_vs_quality(
    runs: list[dict], path: str | Path, family: str, diversity: str = "semantic_diversity", quality: str = "quality"
) -> Path:
    """One point per run: <family>/<quality> (x) against <family>/<diversity> (y), labelled by α and
    method (the objective, or the run name for the base model and baselines), ± se bars."""
    check_runs(runs)
    xk, yk = f"{family}/{quality}", f"{family}/{diversity}"
    have = [r for r in runs if finite((r.get("metrics") or {}).get(xk)) and finite(r["metrics"].get(yk))]
    if not have:
        raise ValueError(f"no run has both {xk} and {yk}")
    fig, ax = figure()
    for i, run in enumerate(sorted(have, key=row_order)):
        m = run["metrics"]
        label = (f"α={run['alpha']:g} {run.get('objective') or ''}".strip() if run.get("alpha") is not None
                 else reference_label(run))
        ax.errorbar(m[xk], m[yk], xerr=nan_to_zero(m.get(f"{xk}_se")), yerr=nan_to_zero(m.get(f"{yk}_se")),
                    marker="s" if run.get("alpha") is None else "o", capsize=3, color=f"C{i % 10}", label=label)
    ax.set_xlabel(f"{family} {quality}")
    ax.set_ylabel(f"{family} {diversity}")
    ax.set_title(f"{family}: diversity against quality")
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_training_curves(histories: dict[str, list[dict]], metric: str, path: str | Path) -> Path:
    """`metric` against training step, one curve per run (entries without the metric are skipped)."""
    fig, ax = figure()
    drawn = 0
    for name, history in histories.items():
        points = [(h["step"], h[metric]) for h in history if "step" in h and finite(h.get(metric))]
        if points:
            ax.plot(*zip(*points), label=name)
            drawn += 1
    if not drawn:
        raise ValueError(f"no training history has metric {metric!r}")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(metric)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def history_metrics(histories: dict[str, list[dict]]) -> list[str]:
    keys = {k for hist in histories.values() for h in hist for k, v in h.items() if k != "step" and finite(v)}
    return sorted(keys)
