"""The report's findings in words, and the choice of the best run per criterion (registry aliases)."""

from __future__ import annotations

import math

from collections.abc import Iterable

from powerflow.errors import ConfigError
from powerflow.eval.families import families_in
from powerflow.report.seeds import group_key, seed_mean_rows
from powerflow.report.values import (
    ANSWER_KEYED, DEFAULT_MIN_VALIDITY, OPEN_ENDED, candidates, family_kind, finite, fmt, fmt_se, method_label,
    nan_to_zero, not_applicable_reason,
)

# Per alias role: the kind of family it is chosen on, the report key that names one, and what that kind means.
ALIAS_ROLES = {
    "reasoning": (ANSWER_KEYED, "report.select_on", "answer-keyed (has <family>/accuracy_mean)"),
    "diversity": (OPEN_ENDED, "report.select_diversity_on", "open-ended (has <family>/coverage)"),
}

# The inference-time samplers of p_base^α itself: Power-Flow is compared with each at the same α.
POWER_SAMPLERS = ("mcmc", "smc")


def alias_families(records: Iterable[dict], select_on: str | None = None,
                   select_diversity_on: str | None = None) -> dict[str, str | None]:
    """The family each alias is chosen on, {"reasoning": ..., "diversity": ...} (`alias_family`)."""
    records = list(records)
    return {"reasoning": alias_family(records, "reasoning", select_on),
            "diversity": alias_family(records, "diversity", select_diversity_on)}


def alias_family(records: Iterable[dict], role: str, named: str | None = None) -> str | None:
    """The family the `role` alias is chosen on: `named` (report.select_on for reasoning,
    report.select_diversity_on for diversity), or by default the first family of the role's kind
    (ALIAS_ROLES) that ran; None when no family of that kind ran.

    records: metrics dicts or `runs_table` rows (keyed alike). A named family that did not run, or
    that is of another kind, is a ConfigError listing the families that ran and their kinds.
    """
    records = list(records)
    kind, key, meaning = ALIAS_ROLES[role]
    families = families_in(records)
    of_kind = [f for f in families if family_kind(records, f) == kind]
    if named is None:
        return of_kind[0] if of_kind else None
    if named in of_kind:
        return named
    ran = ", ".join(f"{f} ({family_kind(records, f).replace('_', '-')})" for f in families) or "none"
    why = "is not " + meaning if named in families else "did not run"
    raise ConfigError(f"{key}={named!r}: that family {why}. Families that ran: {ran}. Write one that is "
                      f"{meaning.split(' (')[0]}, or null for the first such family.")


def method_findings(runs: list[dict], family: str | None = None) -> list[str]:
    """Plain statements: did Power-Flow match the accuracy of MCMC power sampling and of Power-SMC at a
    fraction of their inference tokens; where does it stand against GRPO, EMPO, low temperature; which
    methods did not apply.

    The accuracies compared are `family`'s (the family best-reasoning is chosen on; by default the
    first answer-keyed family that ran, `alias_family`); with none, only the not-applicable sentences.

    "Matched" means avg@n within 2 standard errors (√(se₁² + se₂²)) of the other method's, "beat" more
    than 2 above it, "did not match" more than 2 below. With several seeds the Power-Flow side is the
    median seed of the best (α, objective) seed mean, the run the registry alias points at, not its
    luckiest seed.
    """
    family = family or alias_family([r.get("metrics") or {} for r in runs], "reasoning")
    out = _method_comparisons(runs, family) if family else []
    for run in runs:
        reason = not_applicable_reason(run)
        if reason is not None:
            out.append(f"{method_label(run)} was not run here: {reason} (outputs/eval/{run['name']}/settings.json).")
    return out


def _method_comparisons(runs: list[dict], family: str) -> list[str]:
    """`method_findings`' comparisons on `family`: Power-Flow against each power sampler (POWER_SAMPLERS:
    MCMC, Power-SMC) at the same α, and the best Power-Flow run against GRPO, EMPO and low temperature."""
    out = []
    policies = [r for r in runs if r.get("method") == "power_flow"]
    acc, se, inf = f"{family}/accuracy_mean", f"{family}/accuracy_mean_se", f"{family}/inference_tokens_per_answer"
    samplers = [r for method in POWER_SAMPLERS for r in runs
                if r.get("method") == method and finite((r.get("metrics") or {}).get(acc))]
    for sampler in samplers:
        same = [p for p in policies if p.get("alpha") == sampler.get("method_alpha")
                and finite((p.get("metrics") or {}).get(acc))]
        if not same:
            out.append(f"{method_label(sampler)}: no Power-Flow run at the same α to compare with.")
            continue
        pf = _typical_policy(same, acc)
        gap, sd = _gap(pf["metrics"], sampler["metrics"], acc, se)
        ratio = pf["metrics"].get(inf, math.nan) / sampler["metrics"].get(inf, math.nan)
        verdict = "beat" if gap > 2 * sd else "matched" if gap >= -2 * sd else "did not match"
        out.append(f"Power-Flow{_seed_note(pf, same)} {verdict} {method_label({'method': sampler['method']})} at "
                   f"α={sampler['method_alpha']:g}: {family} avg@n "
                   f"{fmt(pf['metrics'][acc])} vs {fmt(sampler['metrics'][acc])} ({gap:+.3f}, {_units(gap, sd)}), "
                   f"with {fmt(ratio, 2)}× its inference tokens per answer "
                   f"({fmt(pf['metrics'].get(inf), 1)} vs {fmt(sampler['metrics'].get(inf), 1)}).")
    measured = [p for p in policies if finite((p.get("metrics") or {}).get(acc))]
    best = _typical_policy(measured, acc) if measured else None
    for other in (r for r in runs if r.get("method") in ("grpo", "empo", "low_temperature")
                  and finite((r.get("metrics") or {}).get(acc))):
        if best is None:
            break
        gap, sd = _gap(best["metrics"], other["metrics"], acc, se)
        out.append(f"Best Power-Flow run ({method_label(best)}{_seed_note(best, measured)}) vs "
                   f"{method_label(other)}: {family} avg@n "
                   f"{fmt(best['metrics'][acc])} vs {fmt(other['metrics'][acc])} ({gap:+.3f}, {_units(gap, sd)}).")
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


def best_runs(rows: list[dict], min_validity: float = DEFAULT_MIN_VALIDITY, *, select_on: str | None = None,
              select_diversity_on: str | None = None) -> dict[str, str | None]:
    """Names of the best reasoning and best diversity runs by the rule in the module docstring
    (with several seeds: the median-seed run of the group with the best seed mean)."""
    choices = best_choices(rows, min_validity, select_on=select_on, select_diversity_on=select_diversity_on)
    return {role: run["name"] if run else None for role, (_group, run) in choices.items()}


def best_groups(rows: list[dict], min_validity: float = DEFAULT_MIN_VALIDITY, *, select_on: str | None = None,
                select_diversity_on: str | None = None) -> dict[str, str | None]:
    """The group (alpha-4.0-la_tb; a run's own name when it has no group) each best run is chosen from."""
    choices = best_choices(rows, min_validity, select_on=select_on, select_diversity_on=select_diversity_on)
    return {role: group["group"] if group else None for role, (group, _run) in choices.items()}


def best_choices(rows: list[dict], min_validity: float = DEFAULT_MIN_VALIDITY, *, select_on: str | None = None,
                 select_diversity_on: str | None = None) -> dict[str, tuple]:
    """{role: (group row, run row)} for reasoning and diversity; (None, None) when no run qualifies.

    Reasoning: highest `<family>/accuracy_mean` on the family `alias_family` picks (select_on);
    diversity: highest `<family>/coverage` among groups with `<family>/validity` ≥ min_validity on
    its open-ended family (select_diversity_on). The groups' seed means (`seed_mean_rows`) compete by
    the rule; the run is the group's median-seed member by the role's metric (`_median_member`).
    One seed: the run itself.
    """
    families = alias_families(rows, select_on, select_diversity_on)
    trained = [r for r in rows if r["alpha"] is not None]
    if trained:
        groups = seed_mean_rows(rows)
        members = {g["group"]: [r for r in trained if group_key(r) == g["group"]] for g in groups}
    else:  # no trained run: the base model (one group of its own)
        groups = [r | {"group": r["name"]} for r in rows]
        members = {r["name"]: [r] for r in rows}
    out = {"reasoning": (None, None), "diversity": (None, None)}
    if families["reasoning"]:
        acc = f"{families['reasoning']}/accuracy_mean"
        if reasoning := _argmax(groups, acc):
            out["reasoning"] = (reasoning, _median_member(members[reasoning["group"]], acc))
    if families["diversity"]:
        cov, val = f"{families['diversity']}/coverage", f"{families['diversity']}/validity"
        if diversity := _argmax([g for g in groups if g[val] >= min_validity], cov):  # NaN never passes
            group = members[diversity["group"]]
            valid = [r for r in group if r[val] >= min_validity]
            out["diversity"] = (diversity, _median_member(valid or group, cov))
    return out


def _median_member(members: list[dict], key: str) -> dict:
    """The member at the (lower) median of `key`; ties by seed. Members without the metric last."""
    ordered = sorted(members, key=lambda r: (not finite(r[key]), r[key] if finite(r[key]) else 0.0,
                                             r.get("seed") or 0, r["name"]))
    measured = [r for r in ordered if finite(r[key])]
    return measured[(len(measured) - 1) // 2] if measured else ordered[0]


def sweep_findings(rows: list[dict], min_validity: float = DEFAULT_MIN_VALIDITY, *, select_on: str | None = None,
                   select_diversity_on: str | None = None) -> list[str]:
    """Sentences for "what the sweep shows": the best runs against the base model, in se units, each
    naming the family it was chosen on (`alias_families`), or why there is none.

    A difference d = x_run − x_base is reported in units of its standard error
    se_d = √(se_run² + se_base²) (the two evaluations are independent samples).
    """
    families = alias_families(rows, select_on, select_diversity_on)
    choices = best_choices(rows, min_validity, select_on=select_on, select_diversity_on=select_diversity_on)
    base = next((r for r in rows if r["alpha"] is None), None)
    return [_reasoning_finding(rows, families["reasoning"], *choices["reasoning"], base),
            _diversity_finding(rows, families["diversity"], *choices["diversity"], base, min_validity)]


def _reasoning_finding(rows: list[dict], family: str | None, run: dict | None, member: dict | None,
                       base: dict | None) -> str:
    """The best-reasoning sentence: its avg@n (and greedy accuracy) on `family` against the base model."""
    if family is None:
        return (f"No answer-keyed family ran ({_ran(rows)}; an answer-keyed one has <family>/accuracy_mean): "
                "there is no best-reasoning run.")
    acc, greedy = f"{family}/accuracy_mean", f"{family}/accuracy_greedy"
    if run is None:
        return f"No trained run has a {family} accuracy ({acc}): there is no best-reasoning run."
    text = f"Best reasoning on {family}: {_describe(run)} with avg@n accuracy {fmt_se(run[acc], run[f'{acc}_se'])}"
    if base is not None and run is not base:
        text += f" vs base {fmt_se(base[acc], base[f'{acc}_se'])}: " + _difference(run, base, acc)
        text += f"; greedy {fmt(run[greedy])} vs base {fmt(base[greedy])}"
    return text + _chosen_member(run, member, acc) + "."


def _diversity_finding(rows: list[dict], family: str | None, run: dict | None, member: dict | None,
                       base: dict | None, min_validity: float) -> str:
    """The best-diversity sentence: coverage, KL to uniform and validity on `family` against the base model,
    or the widest run that the validity rule left out."""
    if family is None:
        return (f"No open-ended family ran ({_ran(rows)}; an open-ended one has <family>/coverage): "
                "there is no best-diversity run.")
    cov, val, kl = f"{family}/coverage", f"{family}/validity", f"{family}/kl_uniform"
    if run is None:
        covered = [r for r in candidates(rows) if finite(r[cov])]
        if not covered:
            return f"No trained run has a {family} coverage ({cov}): there is no best-diversity run."
        widest = _argmax(covered, cov)
        return (f"No run keeps {family} validity ≥ {min_validity:g}: the highest coverage, "
                f"{fmt(widest[cov])} at {_describe(widest)}, comes with validity {fmt(widest[val])} (not kept).")
    text = f"Best diversity on {family} (validity ≥ {min_validity:g}): {_describe(run)} with coverage " + fmt_se(
        run[cov], run[f"{cov}_se"])
    if base is not None and run is not base:
        text += f" vs base {fmt_se(base[cov], base[f'{cov}_se'])}: " + _difference(run, base, cov)
        text += f"; KL to uniform {fmt(run[kl])} vs base {fmt(base[kl])}"
    text += f"; validity {fmt(run[val])}"
    if base is not None and run is not base:
        text += f" vs base {fmt(base[val])}"
    return text + f", kept (≥ {min_validity:g})" + _chosen_member(run, member, cov) + "."


def _ran(rows: list[dict]) -> str:
    """Which families ran, for a sentence: "families that ran: math500, creative_writing_v3", or "no family ran"."""
    families = families_in(rows)
    return "families that ran: " + ", ".join(families) if families else "no family ran"


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
