"""The `report` stage: the sweep's comparison report, per-α tables, curves and registry aliases."""

from __future__ import annotations

import json
import math
from pathlib import Path

from powerflow.config import PipelineConfig
from powerflow.io import atomic_directory, write_json_atomic, write_text_atomic
from powerflow.pipeline.layout import (
    BASE_RUN, Step, as_is, baseline_runs, layout_of, read_history_csv, require_input,
)
from powerflow.pipeline.runs import sweep_parent, tracking_experiment


def collect_runs(cfg: PipelineConfig) -> tuple[list[dict], dict[str, list[dict]]]:
    """Evaluation metrics, training summaries and registrations of the base and every sweep member."""
    lay = layout_of(cfg)
    runs = [{"name": BASE_RUN, "alpha": None, "objective": None, "method": "base",
             "metrics": evaluation_metrics(lay.evaluation(BASE_RUN)),
             "train": {}, "registered": None}]
    histories = {}
    for member in cfg.sweep.members:
        name = member.name
        runs.append({
            "name": name, "alpha": member.alpha, "objective": member.objective, "method": "power_flow",
            "seed": member.seed, "group": member.group,
            "metrics": evaluation_metrics(lay.evaluation(name)),
            "train": json.loads(require_input(lay.train_outputs(name) / "metrics.json", "train").read_text()),
            "registered": json.loads(require_input(lay.registration(name), "register").read_text()),
        })
        histories[name] = read_history_csv(lay.train_outputs(name) / "history.csv")
    for b in baseline_runs(cfg):  # alpha None: the report draws them as references, never as α points
        name = b["name"]
        runs.append({
            "name": name, "alpha": None, "objective": None, "method": b["method"], "method_alpha": b["alpha"],
            "metrics": evaluation_metrics(lay.evaluation(name)),
            "train": json.loads(require_input(lay.train_outputs(name) / "metrics.json", "train").read_text())
            if b["trained"] else {},
            "registered": json.loads(require_input(lay.registration(name), "register").read_text())
            if b["trained"] else None,
            "not_applicable": _recorded_not_applicable(lay.evaluation(name)),
        })
        if b["trained"]:
            histories[name] = read_history_csv(lay.train_outputs(name) / "history.csv")
    return runs, histories


def evaluation_metrics(out_dir: Path) -> dict:
    """An evaluation's metrics.json, its families in the order they were evaluated (settings.json
    "families": the order of evaluate.benchmarks), so the report's column blocks and its default
    select_on follow that order rather than metrics.json's sorted keys."""
    metrics = json.loads(require_input(out_dir / "metrics.json", "evaluate").read_text())
    try:
        order = [f["family"] for f in json.loads((out_dir / "settings.json").read_text()).get("families", [])]
    except (OSError, ValueError, TypeError, KeyError):
        order = []
    rank = {family: i for i, family in enumerate(order)}
    return dict(sorted(metrics.items(), key=lambda kv: rank.get(kv[0].split("/", 1)[0], len(rank))))


def _recorded_not_applicable(out_dir: Path) -> str | None:
    """The reason an evaluation folder records for a method that does not apply (settings.json), if any."""
    try:
        return json.loads((out_dir / "settings.json").read_text()).get("not_applicable")
    except (OSError, ValueError):
        return None


def write_sweep_report(cfg: PipelineConfig, orchestration: list[str] = ()) -> dict:
    """Markdown summary, PNG plots, summary.json (DVC metrics), alpha_metrics.csv (one row per run)
    and alpha_means.csv (one row per (α, objective): the seed means), the last two DVC plots.

    summary.json: "best" (the runs the aliases point at), "best_groups" (the (α, objective) they were
    chosen from by seed mean), "select_on" (the eval family each was chosen on: report.select_on /
    select_diversity_on, or the first that ran), "groups" (per (α, objective): seeds, runs, and per
    metric the mean over seeds and its se, across seeds with ≥ 2 seeds, per prompt with one), "runs"
    (every run). The title is report.title, or when null built from sweep.name and model.name_or_path.
    """
    from powerflow.report.document import sweep_title, write_report

    runs, histories = collect_runs(cfg)
    lay = layout_of(cfg)
    title = cfg.report.title or sweep_title(cfg.sweep.name, cfg.model.name_or_path)
    with atomic_directory(lay.report) as tmp:
        result = write_report(runs, histories, tmp, title=title, notes=list(orchestration),
                              min_validity=cfg.report.min_validity, select_on=cfg.report.select_on,
                              select_diversity_on=cfg.report.select_diversity_on)
        summary = {r["name"]: {k: v for k, v in r["metrics"].items() if isinstance(v, (int, float))} for r in runs}
        write_json_atomic({"best": result["best"], "best_groups": result["best_groups"],
                           "select_on": result["select_on"], "groups": groups_summary(result["groups"]),
                           "runs": summary}, tmp / "summary.json")
        write_alpha_metrics_csv(runs, tmp / "alpha_metrics.csv")
        write_alpha_means_csv(result["groups"], tmp / "alpha_means.csv")
    return {"best": result["best"], "report": str(lay.report / "report.md")}


def groups_summary(groups: list[dict]) -> dict[str, dict]:
    """The report's seed groups for summary.json: no NaN (null instead), seeds and runs as text
    ("0,1,2") so `dvc metrics show` lists numbers only."""
    def number(x):
        return x if isinstance(x, (int, float)) and math.isfinite(x) else None

    return {g["group"]: {"alpha": g["alpha"], "objective": g["objective"], "n_seeds": g["n_seeds"],
                         "seeds": ",".join(str(s) for s in g["seeds"]), "runs": ",".join(g["members"]),
                         "se_over": g["se_over"], "mean": {k: number(v) for k, v in g["mean"].items()},
                         "se": {k: number(v) for k, v in g["se"].items()}} for g in groups}


ALPHA_PLOT_COLUMNS = ("reasoning/accuracy_greedy", "reasoning/accuracy_mean",
                      "open_ended/coverage", "open_ended/validity", "open_ended/kl_uniform",
                      "open_ended/semantic_diversity", "diag/residual_var", "diag/length_ratio",
                      "cost/tokens_per_answer")


def write_alpha_metrics_csv(runs: list[dict], path: Path) -> Path:
    """One row per sweep member (α, objective, seed, headline metrics), for `dvc plots show`."""
    header = ["alpha", "objective", "seed"] + [c.replace("/", "_") for c in ALPHA_PLOT_COLUMNS]
    lines = [",".join(header)]
    for r in runs:
        if r["alpha"] is None:
            continue
        values = [f"{r['metrics'].get(c, float('nan')):.6g}" for c in ALPHA_PLOT_COLUMNS]
        lines.append(",".join([f"{r['alpha']:g}", r["objective"], str(r.get("seed", ""))] + values))
    return write_text_atomic("\n".join(lines) + "\n", path)


def write_alpha_means_csv(groups: list[dict], path: Path) -> Path:
    """One row per (α, objective): n_seeds, the seed mean of each headline metric and its se
    (`<column>_se`: across seeds, or per prompt with one seed; empty when unknown), for `dvc plots show`."""
    columns = [c.replace("/", "_") for c in ALPHA_PLOT_COLUMNS]
    header = ["alpha", "objective", "n_seeds"] + columns + [f"{c}_se" for c in columns]
    lines = [",".join(header)]
    for g in groups:
        means = [f"{g['mean'].get(c, float('nan')):.6g}" for c in ALPHA_PLOT_COLUMNS]
        ses = [f"{se:.6g}" if (se := g["se"].get(c)) is not None and math.isfinite(se) else ""
               for c in ALPHA_PLOT_COLUMNS]
        lines.append(",".join([f"{g['alpha']:g}", g["objective"], str(g["n_seeds"])] + means + ses))
    return write_text_atomic("\n".join(lines) + "\n", path)


def set_registry_aliases(cfg: PipelineConfig) -> dict[str, str]:
    """Point the registry aliases at the report's choices: best-<role> (the latest report of any sweep
    on this base model) and <sweep>-best-<role> (this sweep's, untouched by other sweeps).

    With several seeds a choice is the median-seed run of the (α, objective) with the best seed mean
    (`powerflow.report.findings.best_choices`): the alias names one registered version, a typical seed."""
    from powerflow import tracking

    lay = layout_of(cfg)
    best = json.loads(require_input(lay.report / "summary.json", "report").read_text())["best"]
    tracking_experiment(cfg)
    model_name = tracking.registered_model_name(cfg.tracking, cfg.model.name_or_path)
    aliases = {}
    for role, name in best.items():
        if not name or name == BASE_RUN:
            continue
        record = json.loads(require_input(lay.registration(name), "register").read_text())
        for alias in (f"best-{role}", tracking.sweep_alias(cfg.sweep.name, f"best-{role}")):
            tracking.set_alias(model_name, alias, record["version"])
            aliases[alias] = f"{name} (version {record['version']})"
    return aliases


def record_report(cfg: PipelineConfig) -> None:
    """Log the report folder to the sweep's parent run."""
    from powerflow import tracking

    experiment_id = tracking_experiment(cfg)
    tracking.log_artifacts(sweep_parent(cfg, experiment_id), layout_of(cfg).report, "report")


def report_sweep(cfg: PipelineConfig, orchestration: list[str] = (), step: Step = as_is) -> dict:
    """The whole `report` stage: write the report, set the aliases, log it to the parent run."""
    result = step(write_sweep_report)(cfg, list(orchestration))
    result["aliases"] = step(set_registry_aliases)(cfg)
    step(record_report)(cfg)
    return result
