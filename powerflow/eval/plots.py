"""One evaluation's plots: the pass@k curve of a family (outputs/eval/<run>/plots/<family>_pass_at_k.png).

matplotlib is imported on first use and draws on the Agg canvas (no display, no pyplot state). The
report's plots (powerflow.report.plots) draw with the same `figure`, `pass_at_k_axes` and `save_figure`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from powerflow.eval.families import pass_at_ks


def plot_run_pass_at_k(metrics: dict, path: str | Path, family: str = "reasoning") -> Path:
    """pass@k of one family of one run's `metrics` against k (log₂ axis), the curve labelled `family`.
    Raises ValueError if `metrics` has no finite `<family>/pass@k`."""
    ks = sorted(pass_at_ks(metrics, family))
    if not ks:
        raise ValueError(f"no run has {family}/pass@k metrics")
    fig, ax = figure()
    ax.plot(ks, [metrics[f"{family}/pass@{k}"] for k in ks], "-", marker="o", label=family)
    pass_at_k_axes(ax, ks, family)
    return save_figure(fig, path)


def pass_at_k_axes(ax, ks: list[int], family: str) -> None:
    """Axes of a pass@k plot: k on a log₂ axis with a tick at each k drawn, labels, title, legend."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k")
    ax.set_ylabel(f"{family} pass@k")
    ax.set_title(f"{family}: pass@k")
    ax.legend(fontsize="small")


def figure():
    """A figure on the Agg canvas (no pyplot: no global state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(alpha=0.3)
    return fig, ax


def save_figure(fig, path: str | Path) -> Path:
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
