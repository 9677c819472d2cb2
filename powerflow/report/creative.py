"""The creative comparison: on the most collapsed open-ended family, the ways to get diversity back.

The seed's question for α < 1: on a family where the base model has collapsed onto a few answers,
does flattening toward p_base^α recover coverage and diversity at high quality, and how does it
stand against the two inference-time ways of doing so, verbalized sampling and high temperature?

    collapsed_family(runs) -> the open-ended family whose base-model coverage is lowest
    creative_rows(runs)    -> base, Power-Flow at α < 1, verbalized sampling, high (and low, at α < 1)
                              temperature: the runs the comparison sets side by side
    creative_table_markdown(runs) / creative_findings(runs): the report's section and its sentences

Coverage, validity and diversity are read against the family's answer key; judged quality is the
judge's (evaluate.judge), shown with its agreement with that key so a reader sees how far to trust it.
Nothing here knows the embedded world: any open-ended family with an answer key takes part.
"""

from __future__ import annotations

import math

from powerflow.eval.families import families_in
from powerflow.report.seeds import group_key
from powerflow.report.values import (
    OPEN_ENDED, alpha_cell, family_kind, finite, fmt, fmt_se, method_label, nan_to_zero, row_order,
)

# (metric, header) of the comparison table, {f} the family; a column shows only where some run has it.
# The exact p_base^α coverage (powerflow.world.oracle, the embedded world only) is what a policy at α aims at.
CREATIVE_COLUMNS = (("{f}/coverage", "coverage ± se"), ("exact/target/{f}/coverage", "p^α coverage (exact)"),
                    ("{f}/validity", "validity ± se"), ("{f}/semantic_diversity", "semantic diversity ± se"),
                    ("{f}/distinct_2", "distinct-2"), ("{f}/judged_quality", "judged quality ± se"),
                    ("{f}/judge_agreement", "judge agrees with key"))
# The inference-time methods that flatten the base: run "method" -> kept when its α (if any) is < 1.
FLATTENING_METHODS = ("verbalized", "high_temperature", "low_temperature")


def _metrics(run: dict) -> dict:
    return run.get("metrics") or {}


def collapsed_family(runs: list[dict]) -> str | None:
    """The open-ended family with the lowest base-model coverage (the most collapsed); None without a
    base run or an open-ended family with coverage."""
    base = next((r for r in runs if r.get("method") in (None, "base") and r.get("alpha") is None), None)
    if base is None:
        return None
    records = [_metrics(r) for r in runs]
    open_ended = [f for f in families_in(records) if family_kind(records, f) == OPEN_ENDED
                  and finite(_metrics(base).get(f"{f}/coverage"))]
    return min(open_ended, key=lambda f: _metrics(base)[f"{f}/coverage"], default=None)


def is_flattening(run: dict) -> bool:
    """A run the comparison holds: the base, Power-Flow at α < 1, or a flattening inference method."""
    method = run.get("method")
    alpha = run.get("alpha") if run.get("alpha") is not None else run.get("method_alpha")
    if method in (None, "base") and alpha is None:
        return True
    if method in (None, "power_flow"):
        return alpha is not None and alpha < 1
    return method in FLATTENING_METHODS and (alpha is None or alpha < 1)


def creative_rows(runs: list[dict], family: str) -> list[dict]:
    """The comparison's runs that have `family`'s coverage, base first, then by α and name."""
    return sorted((r for r in runs if is_flattening(r) and finite(_metrics(r).get(f"{family}/coverage"))),
                  key=row_order)


def creative_table_markdown(runs: list[dict], family: str | None = None) -> str:
    """The report section "Creative comparison on <family>"; "" when no open-ended family ran or no
    run besides the base has it."""
    family = family or collapsed_family(runs)
    rows = creative_rows(runs, family) if family else []
    if len(rows) < 2:
        return ""
    columns = [(k.format(f=family), h) for k, h in CREATIVE_COLUMNS
               if any(finite(_metrics(r).get(k.format(f=family))) for r in rows)]
    header = ["method", "run", "α"] + [h for _, h in columns]
    lines = [f"## Creative comparison on {family}\n",
             f"{family} is the open-ended family where the base model covers the fewest valid answers (the most "
             "collapsed). Coverage, validity and diversity are read against its answer key; judged quality is the "
             "judge's score in [0, 1] (evaluate.judge), next to how often the judge agrees with the key; p^α "
             "coverage (exact) is the expected coverage of the policy's target, where the oracle computes it. "
             "± is the standard error over prompts (coverage, validity) or over answers (judged quality).\n",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in rows:
        m = _metrics(run)
        cells = [method_label(run), run["name"], alpha_cell(run)]
        cells += [fmt_se(m.get(key), m.get(f"{key}_se")) for key, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    findings = creative_findings(runs, family)
    return "\n".join(lines) + "\n\n" + "".join(f"- {f}\n" for f in findings)


def creative_findings(runs: list[dict], family: str | None = None) -> list[str]:
    """Where each Power-Flow α < 1 stands against verbalized sampling and high temperature on `family`.

    Per α < 1 (the seed group's run with the median coverage when there are several seeds): its coverage
    and judged quality, then for each flattening method the coverage gap d = c_PF − c_method with its
    standard error √(se₁² + se₂²), and the method's judged quality.
    """
    family = family or collapsed_family(runs)
    if family is None:
        return []
    rows = creative_rows(runs, family)
    cov, q = f"{family}/coverage", f"{family}/judged_quality"
    base = next((r for r in rows if r.get("method") in (None, "base") and r.get("alpha") is None), None)
    policies = [r for r in rows if r.get("method") in (None, "power_flow") and r.get("alpha") is not None]
    others = [r for r in rows if r.get("method") in FLATTENING_METHODS]
    out = []
    if base is not None:
        out.append(f"The base model covers {fmt(_metrics(base)[cov])} of {family}'s valid answers "
                   f"(judged quality {fmt(_metrics(base).get(q))}).")
    groups: dict[str, list[dict]] = {}
    for run in policies:
        groups.setdefault(group_key(run), []).append(run)
    for members in groups.values():
        run = sorted(members, key=lambda r: _metrics(r)[cov])[(len(members) - 1) // 2]
        m = _metrics(run)
        seeds = f", median of {len(members)} seeds" if len(members) > 1 else ""
        parts = [f"{method_label(run)}{seeds}: coverage {fmt_se(m[cov], m.get(cov + '_se'))}, "
                 f"judged quality {fmt_se(m.get(q), m.get(q + '_se'))}"]
        for other in others:
            o = _metrics(other)
            gap = m[cov] - o[cov]
            sd = math.sqrt(nan_to_zero(m.get(cov + "_se")) ** 2 + nan_to_zero(o.get(cov + "_se")) ** 2)
            units = f"{gap / sd:+.1f} se" if sd > 0 else "se unknown"
            parts.append(f"vs {method_label(other)} {fmt_se(o[cov], o.get(cov + '_se'))} ({gap:+.3f}, {units}; "
                         f"judged quality {fmt(o.get(q))})")
        out.append("; ".join(parts) + ".")
    return out
