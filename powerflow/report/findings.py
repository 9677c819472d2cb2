"""The report's findings in words, and the choice of the best run per criterion (registry aliases)."""

from __future__ import annotations

import math

from powerflow.report.seeds import group_key, seed_mean_rows
from powerflow.report.values import DEFAULT_MIN_VALIDITY, candidates, finite, fmt, fmt_se, method_label, nan_to_zero


def method_findings(runs: list[dict], family: str = "reasoning") -> list[str]:
    """Plain statements: did Power-Flow match MCMC power sampling's accuracy at a fraction of its
    inference tokens; where does it stand against GRPO; which methods did not apply.

    "Matched" means avg@n within 2 standard errors (√(se₁² + se₂²)) of the other method's, "beat" more
    than 2 above it, "did not match" more than 2 below. With several seeds the Power-Flow side is the
    median seed of the best (α, objective) seed mean, the run the registry alias points at, not its
    luckiest seed.
    """
    out = []
    policies = [r for r in runs if r.get("method") == "power_flow"]
    acc, se, inf = f"{family}/accuracy_mean", f"{family}/accuracy_mean_se", f"{family}/inference_tokens_per_answer"
    for mcmc in (r for r in runs if r.get("method") == "mcmc" and finite((r.get("metrics") or {}).get(acc))):
        same = [p for p in policies if p.get("alpha") == mcmc.get("method_alpha")
                and finite((p.get("metrics") or {}).get(acc))]
        if not same:
            out.append(f"{method_label(mcmc)}: no Power-Flow run at the same α to compare with.")
            continue
        pf = _typical_policy(same, acc)
        gap, sd = _gap(pf["metrics"], mcmc["metrics"], acc, se)
        ratio = pf["metrics"].get(inf, math.nan) / mcmc["metrics"].get(inf, math.nan)
        verdict = "beat" if gap > 2 * sd else "matched" if gap >= -2 * sd else "did not match"
        out.append(f"Power-Flow{_seed_note(pf, same)} {verdict} MCMC power sampling at "
                   f"α={mcmc['method_alpha']:g}: avg@n "
                   f"{fmt(pf['metrics'][acc])} vs {fmt(mcmc['metrics'][acc])} ({gap:+.3f}, {_units(gap, sd)}), "
                   f"with {fmt(ratio, 2)}× its inference tokens per answer "
                   f"({fmt(pf['metrics'].get(inf), 1)} vs {fmt(mcmc['metrics'].get(inf), 1)}).")
    measured = [p for p in policies if finite((p.get("metrics") or {}).get(acc))]
    best = _typical_policy(measured, acc) if measured else None
    for other in (r for r in runs if r.get("method") in ("grpo", "empo", "low_temperature")
                  and finite((r.get("metrics") or {}).get(acc))):
        if best is None:
            break
        gap, sd = _gap(best["metrics"], other["metrics"], acc, se)
        out.append(f"Best Power-Flow run ({method_label(best)}{_seed_note(best, measured)}) vs "
                   f"{method_label(other)}: avg@n "
                   f"{fmt(best['metrics'][acc])} vs {fmt(other['metrics'][acc])} ({gap:+.3f}, {_units(gap, sd)}).")
    for run in runs:
        if (run.get("metrics") or {}).get("eval/applicable") == 0:
            out.append(f"{method_label(run)} was not run here: it needs an instruction-following chat model "
                       "(see outputs/eval/" + run["name"] + "/settings.json).")
    return out


def _typical_policy(policies: list[dict], key: str) -> dict:
    """The Power-Flow run a comparison speaks for: the (α, objective) group with the highest seed mean
    of `key`, then that group's median seed by the aliases' rule (`_median_member`). One seed per
    group: the best run."""
    groups: dict[str, list[dict]] = {}
    for run in policies:
        groups.setdefault(group_key(run), []).append(run)
    members = max(groups.values(), key=lambda ms: math.fsum(m["metrics"][key] for m in ms) / len(ms))
    scores = [{"name": r["name"], "seed": r.get("seed"), key: r["metrics"][key]} for r in members]
    chosen = _median_member(scores, key)["name"]
    return next(r for r in members if r["name"] == chosen)


def _seed_note(run: dict, policies: list[dict]) -> str:
    """", median of N seeds (name)" when `run` speaks for a group of several seeds, else ""."""
    n = sum(1 for p in policies if group_key(p) == group_key(run))
    return f", median of {n} seeds ({run['name']})" if n > 1 else ""


def _gap(a: dict, b: dict, key: str, se_key: str) -> tuple[float, float]:
    """a − b and its standard error √(se_a² + se_b²) (independent evaluations)."""
    return a[key] - b[key], math.sqrt(nan_to_zero(a.get(se_key)) ** 2 + nan_to_zero(b.get(se_key)) ** 2)


def _units(gap: float, sd: float) -> str:
    return f"{gap / sd:+.1f} se" if sd > 0 else "se unknown"


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
    ordered = sorted(members, key=lambda r: (not finite(r[key]), r[key] if finite(r[key]) else 0.0,
                                             r.get("seed") or 0, r["name"]))
    measured = [r for r in ordered if finite(r[key])]
    return measured[(len(measured) - 1) // 2] if measured else ordered[0]


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
                f"{fmt_se(run['accuracy_mean'], run['accuracy_mean_se'])}")
        if base is not None and run is not base:
            text += (f" vs base {fmt_se(base['accuracy_mean'], base['accuracy_mean_se'])}: "
                     + _difference(run, base, "accuracy_mean"))
            text += f"; greedy {fmt(run['accuracy_greedy'])} vs base {fmt(base['accuracy_greedy'])}"
        out.append(text + _chosen_member(run, member, "accuracy_mean") + ".")
    run, member = choices["diversity"]
    if run is None:
        covered = [r for r in candidates(rows) if not math.isnan(r["coverage"])]
        if not covered:
            out.append("No run has an open-ended coverage (open_ended/coverage).")
        else:
            widest = _argmax(covered, "coverage")
            out.append(f"No run keeps open-ended validity ≥ {min_validity:g}: the highest coverage, "
                       f"{fmt(widest['coverage'])} at {_describe(widest)}, comes with validity "
                       f"{fmt(widest['validity'])} (not kept).")
    else:
        text = f"Best diversity (validity ≥ {min_validity:g}): {_describe(run)} with coverage " + fmt_se(
            run["coverage"], run["coverage_se"])
        if base is not None and run is not base:
            text += f" vs base {fmt_se(base['coverage'], base['coverage_se'])}: " + _difference(run, base, "coverage")
            text += f"; KL to uniform {fmt(run['kl_uniform'])} vs base {fmt(base['kl_uniform'])}"
        text += f"; validity {fmt(run['validity'])}"
        if base is not None and run is not base:
            text += f" vs base {fmt(base['validity'])}"
        out.append(text + f", kept (≥ {min_validity:g})" + _chosen_member(run, member, "coverage") + ".")
    return out


def _chosen_member(group: dict, member: dict, key: str) -> str:
    """", the alias points at <run> (median seed, <value>)" for a group of several seeds; "" otherwise."""
    if (group.get("n_seeds") or 1) < 2:
        return ""
    return (f"; the registry alias points at {member['name']}, its median seed by {key} "
            f"({fmt(member[key])})")


def _argmax(rows: list[dict], key: str) -> dict | None:
    best = None
    for r in rows:
        if finite(r[key]) and (best is None or r[key] > best[key]):
            best = r
    return best


def _difference(run: dict, base: dict, key: str) -> str:
    diff = run[key] - base[key]
    se = math.sqrt(nan_to_zero(run.get(f"{key}_se")) ** 2 + nan_to_zero(base.get(f"{key}_se")) ** 2)
    units = f"{diff / se:+.1f} se" if se > 0 else "se unknown"
    return f"{diff:+.3f} ({units})"


def _describe(row: dict) -> str:
    alpha = "base model" if row["alpha"] is None else f"α={row['alpha']:g}"
    objective = f" {row['objective']}" if row["objective"] else ""
    if (row.get("n_seeds") or 1) > 1:
        return f"{alpha}{objective} ({row['group']}, mean over {row['n_seeds']} seeds, ± se across seeds)"
    return f"{alpha}{objective} (run {row.get('members', [row['name']])[0]})"
