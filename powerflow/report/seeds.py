"""Several training seeds per (α, objective): mean ± standard error across seeds, and the mean rows."""

from __future__ import annotations

import math
from collections.abc import Sequence

from powerflow.report.values import candidates, finite, metric_value


def seed_mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean of one metric over seeds and its standard error across seeds.

        x̄ = Σᵢ xᵢ / n,   se = s / √n,   s² = Σᵢ (xᵢ − x̄)² / (n − 1)   (numpy's std with ddof=1)

    Non-finite values (a seed without the metric) are left out. se is NaN with fewer than two
    values (one seed says nothing about the spread across seeds); both are NaN with none.
    """
    xs = [float(v) for v in values if finite(v)]
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
        names = [k for m in metrics for k, v in m.items() if finite(v) and not k.endswith("_se")]
        mean, se = {}, {}
        for name in dict.fromkeys(names):
            mean[name], se[name] = seed_mean_se([m.get(name) for m in metrics])
            if len(group) == 1:
                se[name] = metric_value(metrics[0], f"{name}_se")
        groups.append({"group": key, "alpha": group[0]["alpha"], "objective": group[0].get("objective"),
                       "seeds": [r.get("seed") for r in group], "members": [r["name"] for r in group],
                       "n_seeds": len(group), "mean": mean, "se": se,
                       "se_over": "seeds" if len(group) > 1 else "prompts"})
    return groups


def seed_mean_runs(groups: list[dict]) -> list[dict]:
    """Each group as a run (metrics = its means, `<metric>_se` = its se) for the plots against α."""
    return [{"name": f"{g['group']} (mean over {g['n_seeds']} seeds)", "alpha": g["alpha"], "objective": g["objective"],
             "method": "power_flow", "seed_mean": True, "group": g["group"], "train": {}, "registered": None,
             "metrics": g["mean"] | {f"{k}_se": v for k, v in g["se"].items() if finite(v)}} for g in groups]


def several_seeds(runs: list[dict]) -> bool:
    """Whether some (α, objective) has ≥ 2 seeds: the report then shows seed means."""
    return any(g["n_seeds"] > 1 for g in aggregate_seeds(runs))


def seed_mean_rows(rows: list[dict]) -> list[dict]:
    """One row per group of `rows` (runs_table rows of trained runs), in first-seen order.

    Every number of the rows, the fields named like metrics ("<family>/<suffix>", cost/..., train/...),
    is the mean over the group's runs; a `<field>_se` beside its `<field>` (accuracy_mean_se, coverage_se,
    quality_se of every family) is the se across seeds (`seed_mean_se`), or the run's own per-prompt se
    when the group has one run; a family's max_k is kept when its runs agree on it, else None.
    """
    groups: dict[str, list[dict]] = {}
    for row in candidates(rows):
        groups.setdefault(group_key(row), []).append(row)
    out = []
    for key, members in groups.items():
        n = len(members)
        row = {"name": f"{key} (mean over {n} seeds)" if n > 1 else key, "alpha": members[0]["alpha"],
               "objective": members[0]["objective"], "group": key, "seed_mean": True, "n_seeds": n,
               "members": [m["name"] for m in members], "registered": None, "seed": None,
               "n_samples": members[0].get("n_samples")}
        for field in (f for f in members[0] if "/" in f):
            values = [m.get(field) for m in members]
            if field.endswith("/max_k"):
                row[field] = values[0] if len(set(values)) == 1 else None
            elif field.endswith("_se") and field[:-3] in members[0]:
                row[field] = seed_mean_se([m[field[:-3]] for m in members])[1] if n > 1 else values[0]
            else:
                row[field] = seed_mean_se(values)[0]
        out.append(row)
    return out
