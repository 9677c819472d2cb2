"""What every part of the report reads: metric names, families, formatting, run order and labels."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from powerflow.eval.families import pass_at_ks


# A family's kind, read off the metrics it has (`family_kind`): answer-keyed (an accuracy against a gold
# answer: MATH500, GPQA, MMLU-Pro, the world's reasoning), open-ended (coverage of a set of valid answers:
# CoverageQA, the world's open-ended), creative (diversity and a judge's quality only).
ANSWER_KEYED, OPEN_ENDED, CREATIVE = "answer_keyed", "open_ended", "creative"
DEFAULT_MIN_VALIDITY = 0.8  # below it a run's open-ended answers are too often invalid to call diverse


def method_label(run: dict) -> str:
    """What a run is, for the methods table: base model, Power-Flow α=2 (la_tb), MCMC α=4, GRPO, ..."""
    method = run.get("method") or ("base" if run.get("alpha") is None else "power_flow")
    alpha = run.get("alpha") if run.get("alpha") is not None else run.get("method_alpha")
    names = {"base": "base model", "power_flow": "Power-Flow", "low_temperature": "low temperature",
             "mcmc": "MCMC power sampling", "smc": "Power-SMC", "verbalized": "verbalized sampling",
             "high_temperature": "high temperature",
             "grpo": "GRPO (gold answers)", "empo": "EMPO (semantic entropy)"}
    label = names.get(method, method)
    if alpha is not None:
        label += f" α={alpha:g}"
    temperature = (run.get("metrics") or {}).get("sampler/temperature")
    if method == "high_temperature" and temperature is not None:
        label += f" T={temperature:g}"
    if method == "power_flow" and run.get("objective"):
        label += f" ({run['objective']})"
    return label


def family_value(run: dict, family: str, suffix: str) -> float:
    """A family's metric for a table cell: pass@max / maj@max pick the largest k; no_answer falls back
    on extraction_failures (the same share, under its older name); a derived cost ratio."""
    m = run.get("metrics") or {}
    if suffix == "no_answer" and f"{family}/no_answer" not in m:
        return metric_value(m, f"{family}/extraction_failures")
    if suffix in ("pass@max", "maj@max"):
        ks = pass_at_ks(m, family)
        return metric_value(m, f"{family}/{suffix[:-4]}@{max(ks)}") if ks else math.nan
    if suffix == "acc_per_100_tokens":
        acc, tokens = metric_value(m, f"{family}/accuracy_mean"), metric_value(m, f"{family}/tokens_per_answer")
        return acc / tokens * 100 if tokens > 0 else math.nan
    return metric_value(m, f"{family}/{suffix}")


def check_runs(runs: list[dict]) -> None:
    if not runs:
        raise ValueError("the report needs at least one run")
    for i, run in enumerate(runs):
        if "name" not in run or not isinstance(run.get("metrics", {}), dict):
            raise ValueError(f"run {i} needs a 'name' and a 'metrics' dict, got keys {sorted(run)}")
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {names}")


def row_order(row: dict) -> tuple:
    """Base model (α None) first, then α ascending, then objective, seed (a group's seed mean after
    its seeds) and name."""
    alpha = row.get("alpha")
    seed = row.get("seed")
    return (alpha is not None, alpha if alpha is not None else 0.0, row.get("objective") or "",
            bool(row.get("seed_mean")), seed if isinstance(seed, int) else 0, row["name"])


def candidates(rows: list[dict]) -> list[dict]:
    trained = [r for r in rows if r["alpha"] is not None]
    return trained or rows


def family_kind(records: Iterable[dict], family: str) -> str:
    """What kind of family `family` is, read off the metrics some record (a metrics dict or a table row)
    has: ANSWER_KEYED with `<family>/accuracy_mean`, OPEN_ENDED with `<family>/coverage`, else CREATIVE."""
    keys = {key for record in records for key, value in record.items() if finite(value)}
    if f"{family}/accuracy_mean" in keys:
        return ANSWER_KEYED
    return OPEN_ENDED if f"{family}/coverage" in keys else CREATIVE


def metric_value(metrics: dict, key: str) -> float:
    value = metrics.get(key)
    return float(value) if finite(value) else math.nan


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def nan_to_zero(value: Any) -> float:
    return float(value) if finite(value) else 0.0


def is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if finite(value) else "–"


def fmt_se(value: Any, se: Any) -> str:
    return f"{fmt(value)} ± {fmt(se)}" if finite(value) and finite(se) else fmt(value)


def alpha_cell(run: dict) -> str:
    """The α column of a run or table row: a Power-Flow run's α, an inference-time baseline's own α
    (MCMC and low temperature sample p_base^α too), and "–" for the base model and the other baselines."""
    alpha = run.get("alpha") if run.get("alpha") is not None else run.get("method_alpha")
    return "–" if alpha is None else f"{alpha:g}"


def not_applicable_reason(run: dict) -> str | None:
    """Why a run has no numbers (eval/applicable = 0), or None when it has them."""
    if (run.get("metrics") or {}).get("eval/applicable") != 0:
        return None
    return run.get("not_applicable") or "the evaluation recorded no reason (see its settings.json)"


def reference_label(run: dict) -> str:
    """Legend text of a run drawn as a reference line: the base model, or a baseline method."""
    if run.get("method") not in (None, "base"):
        return method_label(run)
    return base_label(run["name"])


def base_label(name: str) -> str:
    return "base model" if name == "base" else f"base model ({name})"


def slug(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric.replace("@", "_at_")).strip("_")
