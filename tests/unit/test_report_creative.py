"""The creative comparison on hand-made runs: which family, which runs, and what the sentences say."""

import pytest

from powerflow.report.creative import collapsed_family, creative_findings, creative_rows, creative_table_markdown


def open_metrics(family, coverage, se=0.02, quality=0.9, agreement=0.98):
    return {f"{family}/coverage": coverage, f"{family}/coverage_se": se, f"{family}/validity": 0.95,
            f"{family}/validity_se": 0.01, f"{family}/distinct_2": 0.5, f"{family}/judged_quality": quality,
            f"{family}/judged_quality_se": 0.01, f"{family}/judge_agreement": agreement}


def run(name, alpha=None, method=None, method_alpha=None, wide=0.5, narrow=0.2, quality=0.9):
    metrics = {"reasoning/accuracy_mean": 0.5, **open_metrics("wide", wide), **open_metrics("narrow", narrow,
                                                                                             quality=quality)}
    if alpha is not None:
        metrics["exact/target/narrow/coverage"] = 0.55
    return {"name": name, "alpha": alpha, "objective": "tb" if alpha else None, "method": method,
            "method_alpha": method_alpha, "seed": 0 if alpha else None, "metrics": metrics}


def sweep():
    return [run("alpha-0.5", 0.5, "power_flow", narrow=0.50), run("base", method="base", narrow=0.20),
            run("alpha-4.0", 4.0, "power_flow", narrow=0.05), run("verbalized", method="verbalized", narrow=0.40),
            run("high_temperature", method="high_temperature", narrow=0.60, quality=0.6),
            run("mcmc-4.0", method="mcmc", method_alpha=4.0, narrow=0.1),
            run("low_temperature-4.0", method="low_temperature", method_alpha=4.0, narrow=0.1)]


def test_the_collapsed_family_is_the_open_ended_one_with_the_lowest_base_coverage():
    assert collapsed_family(sweep()) == "narrow"
    swapped = [run(r["name"], r["alpha"], r["method"], r["method_alpha"], wide=0.1, narrow=0.3) for r in sweep()]
    assert collapsed_family(swapped) == "wide"
    assert collapsed_family([r for r in sweep() if r["name"] != "base"]) is None


def test_the_comparison_holds_the_base_flattening_policies_and_methods_only():
    names = [r["name"] for r in creative_rows(sweep(), "narrow")]
    assert names[0] == "base"
    assert set(names) == {"base", "alpha-0.5", "verbalized", "high_temperature"}  # no α ≥ 1, no MCMC


def test_the_section_and_its_findings_give_the_gaps_in_standard_errors():
    text = creative_table_markdown(sweep())
    assert text.startswith("## Creative comparison on narrow")
    assert "| Power-Flow α=0.5 (tb) | alpha-0.5 | 0.5 | 0.500 ± 0.020 | 0.550 |" in text
    assert "| base model | base | – | 0.200 ± 0.020 | – |" in text
    findings = creative_findings(sweep())
    assert findings[0].startswith("The base model covers 0.200 of narrow's valid answers")
    sentence = findings[1]
    # 0.50 − 0.40 = +0.100 over √(0.02² + 0.02²) = 0.0283: +3.5 se; against T = 2: −0.100, −3.5 se
    assert "vs verbalized sampling 0.400 ± 0.020 (+0.100, +3.5 se; judged quality 0.900)" in sentence
    assert "vs high temperature 0.600 ± 0.020 (-0.100, -3.5 se; judged quality 0.600)" in sentence


def test_no_section_without_an_open_ended_family():
    runs = [{"name": "base", "alpha": None, "method": "base", "metrics": {"reasoning/accuracy_mean": 0.4}},
            {"name": "alpha-0.5", "alpha": 0.5, "method": "power_flow", "metrics": {"reasoning/accuracy_mean": 0.3}}]
    assert creative_table_markdown(runs) == "" and creative_findings(runs) == []


@pytest.mark.parametrize("seeds", [[0.45, 0.50, 0.55]])
def test_several_seeds_speak_through_their_median_run(seeds):
    runs = [run("base", method="base")] + [
        {**run(f"alpha-0.5-s{i}", 0.5, "power_flow", narrow=c), "seed": i, "group": "alpha-0.5-tb"}
        for i, c in enumerate(seeds)]
    assert "median of 3 seeds: coverage 0.500" in creative_findings(runs)[1]
