"""The sweep report: one Markdown summary and PNG plots comparing the runs across α.

A run is a dict {"name", "alpha" (None for the base model), "objective", "metrics" (the names of
`powerflow.eval.evaluate`), "train" (the training summary), "registered" (dict or None)}.
Everything here reads those dicts only, so the report can be rebuilt from stored metrics files.

Best runs, the rule the report states: among trained runs (the base model only when there are
none), best reasoning = highest reasoning/accuracy_mean (avg@n); best diversity = highest
open_ended/coverage among runs whose open_ended/validity ≥ min_validity (0.8 by default),
so a run that buys coverage with invalid answers does not win. Ties go to the run listed first
(lower α). matplotlib is imported lazily and draws on the Agg canvas (no display, no pyplot state).
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
_PASS_AT = re.compile(r"^reasoning/pass@(\d+)$")

# Metrics plotted against α when some run has them: (metric, y label).
ALPHA_PLOTS = (
    ("reasoning/accuracy_mean", "reasoning accuracy (avg@n)"),
    ("reasoning/accuracy_greedy", "reasoning accuracy (greedy)"),
    ("open_ended/coverage", "open-ended coverage of the valid set"),
    ("open_ended/validity", "open-ended validity"),
    ("open_ended/kl_uniform", "KL(answers ‖ uniform over valid), nats"),
    ("open_ended/distinct_1", "open-ended distinct-1"),
    ("cost/tokens_per_answer", "tokens per answer"),
)


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


def best_runs(rows: list[dict], min_validity: float = DEFAULT_MIN_VALIDITY) -> dict[str, str | None]:
    """Names of the best reasoning and best diversity runs by the rule in the module docstring."""
    best_reasoning = _argmax(_candidates(rows), "accuracy_mean")
    diverse = [r for r in _candidates(rows) if r["validity"] >= min_validity]  # NaN never passes
    best_diversity = _argmax(diverse, "coverage")
    return {"reasoning": best_reasoning["name"] if best_reasoning else None,
            "diversity": best_diversity["name"] if best_diversity else None}


def sweep_findings(rows: list[dict], min_validity: float = DEFAULT_MIN_VALIDITY) -> list[str]:
    """Sentences for "what the sweep shows": the best runs against the base model, in se units.

    A difference d = x_run − x_base is reported in units of its standard error
    se_d = √(se_run² + se_base²) (the two evaluations are independent samples).
    """
    base = next((r for r in rows if r["alpha"] is None), None)
    best = best_runs(rows, min_validity)
    by_name = {r["name"]: r for r in rows}
    out = []
    run = by_name.get(best["reasoning"])
    if run is None:
        out.append("No run has a reasoning accuracy (reasoning/accuracy_mean).")
    else:
        text = (f"Best reasoning: {_describe(run)} with avg@n accuracy "
                f"{_fmt_se(run['accuracy_mean'], run['accuracy_mean_se'])}")
        if base is not None and run is not base:
            text += (f" vs base {_fmt_se(base['accuracy_mean'], base['accuracy_mean_se'])}: "
                     + _difference(run, base, "accuracy_mean"))
            text += f"; greedy {_fmt(run['accuracy_greedy'])} vs base {_fmt(base['accuracy_greedy'])}"
        out.append(text + ".")
    run = by_name.get(best["diversity"])
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
        out.append(text + f", kept (≥ {min_validity:g}).")
    return out


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
    for i, base in enumerate(r for r in have if r.get("alpha") is None):
        ax.axhline(base["metrics"][metric], linestyle="--", color=f"C{7 + i}", label=_base_label(base["name"]))
    if trained:
        ax.set_xscale("log", base=2)
        alphas = sorted({r["alpha"] for r in trained})
        ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
    ax.set_xlabel("α")
    ax.set_ylabel(ylabel or metric)
    ax.set_title(metric)
    ax.legend(fontsize="small")
    return _save_figure(fig, path)


def plot_pass_at_k(runs: list[dict], path: str | Path) -> Path:
    """pass@k against k (log₂ axis), one curve per run; the base model dashed."""
    _check_runs(runs)
    curves = [(r, sorted(_pass_at_ks(r.get("metrics") or {}))) for r in runs]
    curves = [(r, ks) for r, ks in curves if ks]
    if not curves:
        raise ValueError("no run has reasoning/pass@k metrics")
    fig, ax = _figure()
    for run, ks in sorted(curves, key=lambda c: _row_order(c[0])):
        ys = [run["metrics"][f"reasoning/pass@{k}"] for k in ks]
        if run.get("alpha") is None:
            ax.plot(ks, ys, "--", marker="o", color="C7", label=_base_label(run["name"]))
        else:
            ax.plot(ks, ys, "-", marker="o", label=f"{run['name']} (α={run['alpha']:g})")
    all_ks = sorted({k for _, ks in curves for k in ks})
    ax.set_xscale("log", base=2)
    ax.set_xticks(all_ks, [str(k) for k in all_ks])
    ax.set_xlabel("k")
    ax.set_ylabel("reasoning pass@k")
    ax.set_title("pass@k")
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
    but "step"). Returns {"report": Path, "plots": [Path], "best": {"reasoning", "diversity"}}.
    """
    out_dir = Path(out_dir)
    rows = runs_table(runs)
    plot_dir = out_dir / "plots"
    names: list[tuple[str, str]] = []  # (file name, caption)
    with atomic_directory(plot_dir) as tmp:
        for metric, ylabel in ALPHA_PLOTS:
            if any(_finite((r.get("metrics") or {}).get(metric)) for r in runs):
                name = f"{_slug(metric)}_vs_alpha.png"
                plot_metric_vs_alpha(runs, metric, tmp / name, ylabel=ylabel)
                names.append((name, f"{ylabel} vs α"))
        if any(_pass_at_ks(r.get("metrics") or {}) for r in runs):
            plot_pass_at_k(runs, tmp / "reasoning_pass_at_k.png")
            names.append(("reasoning_pass_at_k.png", "reasoning pass@k"))
        for metric in training_metrics if training_metrics is not None else _history_metrics(histories):
            if any(_finite(h.get(metric)) for hist in histories.values() for h in hist):
                name = f"training_{_slug(metric)}.png"
                plot_training_curves(histories, metric, tmp / name)
                names.append((name, f"training: {metric}"))
    best = best_runs(rows, min_validity)
    text = _report_markdown(title, rows, runs, sweep_findings(rows, min_validity), names, notes,
                            min_validity)
    report = write_text_atomic(text, out_dir / "report.md")
    return {"report": report, "plots": [plot_dir / name for name, _ in names], "best": best}


def _report_markdown(title, rows, runs, findings, plots, notes, min_validity) -> str:
    parts = [f"# {title}\n", "## Headline\n", headline_table_markdown(rows),
             ("Reasoning accuracy: greedy decoding, and avg@n (mean over prompts of the fraction of n samples that "
              "are correct) ± its standard error over prompts. Coverage: fraction of each open-ended prompt's valid "
              "answers that appear among its samples, averaged over prompts. Validity: fraction of open-ended "
              "samples that are valid answers. KL to uniform: KL(empirical valid answers ‖ uniform over the valid "
              "set), nats. Tokens/answer: mean sampled completion length (EOS included).\n"),
             "## What the sweep shows\n", *[f"- {f}" for f in findings], "",
             (f"Rule: best reasoning = highest avg@n among trained runs; best diversity = highest coverage among "
              f"trained runs with open-ended validity ≥ {min_validity:g}. Differences are given in units of "
              "√(se_run² + se_base²).\n")]
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
    """Base model (α None) first, then α ascending, then objective and name."""
    alpha = row.get("alpha")
    return (alpha is not None, alpha if alpha is not None else 0.0, row.get("objective") or "", row["name"])


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
    return f"{alpha}{objective} (run {row['name']})"


def _pass_at_ks(metrics: dict) -> list[int]:
    return [int(m.group(1)) for key in metrics if (m := _PASS_AT.match(key)) and _finite(metrics[key])]


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
