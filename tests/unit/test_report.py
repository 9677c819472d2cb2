"""The sweep report on hand-made runs: table values, plots, and the documented best-run rule."""

import math
from pathlib import Path

import pytest

from powerflow.eval.families import families_of
from powerflow.report.document import headline_legend, write_report
from powerflow.report.findings import best_runs
from powerflow.report.plots import plot_diversity_vs_quality, plot_metric_vs_alpha, plot_pass_at_k, plot_training_curves
from powerflow.report.tables import (diagnostics_table_markdown, family_tables_markdown, headline_table_markdown,
                                     runs_table)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def metrics(acc, acc_se, cov, cov_se, validity, kl, tokens, greedy=0.5):
    return {
        "reasoning/accuracy_greedy": greedy, "reasoning/accuracy_mean": acc, "reasoning/accuracy_mean_se": acc_se,
        "reasoning/pass@1": acc, "reasoning/pass@2": min(1.0, acc + 0.1), "reasoning/pass@4": min(1.0, acc + 0.15),
        "reasoning/validity": 0.99, "open_ended/validity": validity, "open_ended/validity_se": 0.01,
        "open_ended/coverage": cov, "open_ended/coverage_se": cov_se, "open_ended/kl_uniform": kl,
        "open_ended/distinct_1": 0.4, "cost/tokens_per_answer": tokens, "eval/n_samples": 4,
    }


def hand_runs():
    # Listed out of order on purpose. alpha-0.25 has the most coverage but invalid answers (0.6 < 0.8):
    # the rule must pick alpha-0.5 for diversity. alpha-4 has the best avg@n.
    return [
        {"name": "alpha-4", "alpha": 4.0, "objective": "la_tb", "metrics": metrics(0.612, 0.031, 0.30, 0.02, 0.97, 1.10, 14.2),
         "train": {"final_loss": 0.0123, "steps": 200}, "registered": {"model": "powerflow", "version": 3}},
        {"name": "base", "alpha": None, "objective": None, "metrics": metrics(0.450, 0.030, 0.40, 0.02, 0.95, 0.80, 15.0),
         "train": {}, "registered": None},
        {"name": "alpha-0.25", "alpha": 0.25, "objective": "la_tb",
         "metrics": metrics(0.200, 0.030, 0.90, 0.02, 0.60, 0.10, 17.0), "train": {}, "registered": None},
        {"name": "alpha-0.5", "alpha": 0.5, "objective": "la_tb",
         "metrics": metrics(0.300, 0.030, 0.70, 0.03, 0.91, 0.35, 16.1), "train": {}, "registered": None},
        {"name": "alpha-2", "alpha": 2.0, "objective": "la_tb",
         "metrics": metrics(0.580, 0.030, 0.35, 0.02, 0.96, 0.95, 14.8), "train": {}, "registered": None},
    ]


def histories():
    return {"alpha-4": [{"step": s, "train/loss": 1.0 / (s + 1), "train/logz": 0.1 * s} for s in range(5)],
            "alpha-0.5": [{"step": s, "train/loss": 2.0 / (s + 1)} for s in range(5)]}


def test_runs_table_puts_base_first_then_alpha_ascending():
    rows = runs_table(hand_runs())
    assert [r["name"] for r in rows] == ["base", "alpha-0.25", "alpha-0.5", "alpha-2", "alpha-4"]
    top = rows[-1]
    assert (top["reasoning/accuracy_mean"], top["reasoning/accuracy_mean_se"], top["reasoning/max_k"],
            top["reasoning/pass@max"]) == (0.612, 0.031, 4, pytest.approx(0.762))
    assert top["cost/tokens_per_answer"] == 14.2
    assert (top["open_ended/coverage"], top["open_ended/validity"], top["open_ended/kl_uniform"]) == (0.30, 0.97, 1.10)
    # a family one run lacks: NaN in its row
    sparse = runs_table([{"name": "x", "alpha": 1.0, "metrics": {}},
                         {"name": "y", "alpha": 2.0, "metrics": {"open_ended/coverage": 0.5}}])
    assert math.isnan(sparse[0]["open_ended/coverage"]) and sparse[1]["open_ended/coverage"] == 0.5


def test_best_runs_follow_the_validity_rule():
    rows = runs_table(hand_runs())
    assert best_runs(rows) == {"reasoning": "alpha-4", "diversity": "alpha-0.5"}
    # a lower threshold lets the high-coverage, low-validity run win
    assert best_runs(rows, min_validity=0.5)["diversity"] == "alpha-0.25"
    # nobody valid enough: no best-diversity run
    assert best_runs(rows, min_validity=0.99)["diversity"] is None


def test_headline_table_holds_the_values():
    table = headline_table_markdown(runs_table(hand_runs()))
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 5
    # one block per family, headers carrying the family; the world's columns, in the old order
    assert lines[0] == ("| run | α | objective | reasoning acc greedy | reasoning avg@4 ± se | reasoning pass@4 | "
                        "open_ended coverage ± se | open_ended validity | open_ended KL to uniform | tokens/answer |")
    base_line = lines[2]
    assert base_line.startswith("| base | – |")
    assert "0.450 ± 0.030" in base_line and "0.400 ± 0.020" in base_line and "15.0" in base_line
    assert "0.612 ± 0.031" in lines[-1] and "0.762" in lines[-1] and "1.100" in lines[-1]
    assert "(k=" not in table  # every run has the same max k: it is in the header only
    mixed = hand_runs()
    del mixed[0]["metrics"]["reasoning/pass@4"]  # alpha-4 now tops out at pass@2
    mixed_table = headline_table_markdown(runs_table(mixed))
    assert "pass@k (max k)" in mixed_table and "0.712 (k=2)" in mixed_table


def test_plots_are_non_empty_pngs(tmp_path):
    runs = hand_runs()
    paths = [
        plot_metric_vs_alpha(runs, "reasoning/accuracy_mean", tmp_path / "acc.png", ylabel="accuracy"),
        plot_metric_vs_alpha(runs, "open_ended/kl_uniform", tmp_path / "kl.png"),  # no _se: no error bars
        plot_pass_at_k(runs, tmp_path / "pass.png"),
        plot_training_curves(histories(), "train/loss", tmp_path / "loss.png"),
    ]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acc.png", "kl.png", "loss.png", "pass.png"]  # no temp files
    with pytest.raises(ValueError, match="no run has metric"):
        plot_metric_vs_alpha(runs, "reasoning/nonexistent", tmp_path / "x.png")


def test_write_report_writes_table_findings_and_plots(tmp_path):
    out = write_report(hand_runs(), histories(), tmp_path / "report", title="Sweep over alpha",
                       notes=["Evaluated on the embedded world."])
    assert out["best"] == {"reasoning": "alpha-4", "diversity": "alpha-0.5"}
    text = out["report"].read_text()
    assert text.startswith("# Sweep over alpha")
    for value in ("0.612 ± 0.031", "0.450 ± 0.030", "0.700 ± 0.030", "0.762", "Evaluated on the embedded world."):
        assert value in text
    findings = text.split("## What the sweep shows")[1].split("##")[0]
    # avg@n: 0.612 - 0.450 = +0.162 with se sqrt(0.031² + 0.030²) = 0.0431 -> +3.8 se
    assert "α=4" in findings and "+0.162 (+3.8 se)" in findings
    # coverage: 0.70 - 0.40 = +0.300 with se sqrt(0.03² + 0.02²) = 0.0361 -> +8.3 se; validity 0.91 kept
    assert "α=0.5" in findings and "+0.300 (+8.3 se)" in findings and "0.910" in findings and "kept" in findings
    assert "version=3" in text  # registered model shown
    names = {p.name for p in out["plots"]}
    assert {"reasoning_accuracy_mean_vs_alpha.png", "open_ended_coverage_vs_alpha.png", "reasoning_pass_at_k.png",
            "training_train_loss.png", "training_train_logz.png"} <= names
    for path in out["plots"]:
        assert path.is_file() and path.read_bytes().startswith(PNG_MAGIC)
        assert f"(plots/{path.name})" in text
    assert {p.name for p in (tmp_path / "report" / "plots").iterdir()} == names


def test_write_report_says_when_no_run_keeps_validity(tmp_path):
    out = write_report(hand_runs(), {}, tmp_path, title="t", min_validity=0.99)
    assert out["best"]["diversity"] is None
    text = out["report"].read_text()
    assert "No run keeps open_ended validity ≥ 0.99" in text and "alpha-0.25" in text


def benchmark_runs():
    """Two runs with a math family (pass@, maj@, subject breakdown), a creative family and diagnostics."""
    def m(acc, tokens, quality, semantic, residual=None):
        out = {"math500/accuracy_mean": acc, "math500/accuracy_mean_se": 0.02, "math500/pass@1": acc,
               "math500/pass@4": acc + 0.2, "math500/maj@1": acc, "math500/maj@4": acc + 0.1,
               "math500/extraction_failures": 0.1, "math500/tokens_per_answer": tokens,
               "math500/seconds_per_answer": 0.0125, "math500/by_subject/algebra/accuracy_mean": acc,
               "creative/quality": quality, "creative/quality_se": 0.05, "creative/semantic_diversity": semantic,
               "creative/semantic_diversity_se": 0.01, "cost/tokens_per_answer": tokens, "eval/n_samples": 4}
        if residual is not None:
            out |= {"diag/residual_var": residual, "diag/residual_var_se": 0.5, "diag/mean_length": 10.0,
                    "diag/mean_length_base": 8.0, "diag/length_ratio": 1.25}
        return out
    return [{"name": "base", "alpha": None, "metrics": m(0.4, 200.0, 0.6, 0.5)},
            {"name": "alpha-2", "alpha": 2.0, "objective": "la_tb", "metrics": m(0.5, 100.0, 0.7, 0.3, residual=2.5)}]


def test_family_tables_show_every_family_with_cost_per_token():
    runs = benchmark_runs()
    assert families_of(runs) == ["math500", "creative"]
    text = family_tables_markdown(runs)
    assert "### math500" in text and "### creative" in text
    math_table = text.split("### math500")[1].split("###")[0]
    # pass@n and maj@n take the largest k; ms/answer = 12.50; acc per 100 tokens = 0.5 / 100 * 100
    assert "| alpha-2 | 2 | 0.500 ± 0.020 | 0.700 | 0.600 | 0.100 | 100.0 | 12.50 | 0.500 |" in math_table
    assert "| base | – | 0.400 ± 0.020 | 0.600 | 0.500 | 0.100 | 200.0 | 12.50 | 0.200 |" in math_table
    creative_table = text.split("### creative")[1]
    assert "acc per 100 tokens" not in creative_table  # no accuracy: no cost ratio
    assert "0.700 ± 0.050" in creative_table


def test_diagnostics_table_lists_trained_runs_only():
    text = diagnostics_table_markdown(benchmark_runs())
    assert "| alpha-2 | 2 | 2.500 ± 0.500 | 10.000 | 8.000 | 1.250 |" in text
    assert "\n| base |" not in text
    assert diagnostics_table_markdown([{"name": "base", "alpha": None, "metrics": {}}]) == ""


def test_diversity_vs_quality_plot_and_report_sections(tmp_path):
    runs = benchmark_runs()
    path = plot_diversity_vs_quality(runs, tmp_path / "dq.png", "creative")
    assert path.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="creative/coverage"):
        plot_diversity_vs_quality(runs, tmp_path / "x.png", "creative", diversity="coverage")
    out = write_report([r | {"train": {}, "registered": None} for r in runs], {}, tmp_path / "report", title="t")
    names = {p.name for p in out["plots"]}
    assert {"math500_pass_at_k.png", "math500_accuracy_mean_vs_alpha.png",
            "creative_semantic_diversity_vs_quality.png"} <= names
    text = out["report"].read_text()
    assert "## Distribution diagnostics" in text and "### math500" in text


def method_runs():
    """Base, two Power-Flow runs, MCMC at α=4, GRPO, low temperature and a not-applicable verbalized run."""
    def m(acc, se, tokens, inference, semantic=0.4):
        return {"reasoning/accuracy_greedy": 0.0, "reasoning/accuracy_mean": acc, "reasoning/accuracy_mean_se": se,
                "reasoning/pass@1": acc, "reasoning/pass@16": 1.0, "reasoning/tokens_per_answer": tokens,
                "reasoning/inference_tokens_per_answer": inference, "open_ended/semantic_diversity": semantic,
                "open_ended/validity": 0.9, "open_ended/coverage": 0.3, "cost/tokens_per_answer": tokens,
                "cost/inference_tokens_per_answer": inference, "eval/n_samples": 16}
    return [
        {"name": "base", "alpha": None, "method": "base", "metrics": m(0.375, 0.017, 9.0, 9.0)},
        {"name": "alpha-2.0-la_tb-s0", "alpha": 2.0, "objective": "la_tb", "method": "power_flow",
         "metrics": m(0.51, 0.02, 11.0, 11.0), "train": {"train/seconds": 50.0}},
        {"name": "alpha-4.0-la_tb-s0", "alpha": 4.0, "objective": "la_tb", "method": "power_flow",
         "metrics": m(0.47, 0.02, 11.0, 11.0), "train": {"train/seconds": 52.0}},
        {"name": "mcmc-4.0", "alpha": None, "method": "mcmc", "method_alpha": 4.0, "metrics": m(0.50, 0.02, 10.0, 220.0)},
        {"name": "low_temperature-4.0", "alpha": None, "method": "low_temperature", "method_alpha": 4.0,
         "metrics": m(0.10, 0.02, 9.0, 9.0)},
        {"name": "grpo", "alpha": None, "method": "grpo", "metrics": m(0.60, 0.02, 10.0, 10.0),
         "train": {"train/seconds": 60.0}},
        {"name": "verbalized", "alpha": None, "method": "verbalized", "metrics": {"eval/applicable": 0.0},
         "not_applicable": "verbalized sampling needs an instruction-following chat model"},
    ]


def test_methods_table_lists_every_method_with_inference_tokens_and_training_time():
    from powerflow.report.tables import methods_table_markdown

    text = methods_table_markdown(method_runs())
    lines = text.splitlines()
    assert lines[0] == ("| method | run | reasoning acc greedy | reasoning avg@16 ± se | reasoning pass@16 | "
                        "open_ended coverage ± se | open_ended validity | open_ended semantic diversity | "
                        "tokens/answer | inference tokens/answer | training s |")
    assert lines[2].startswith("| base model | base |")
    assert "| MCMC power sampling α=4 | mcmc-4.0 | 0.000 | 0.500 ± 0.020 | 1.000 | 0.300 | 0.900 | 0.400 | 10.0 | 220.0 " \
           "| – |" in text
    assert "| GRPO (gold answers) | grpo |" in text and "| 60 |" in text
    assert "| verbalized sampling | verbalized | not applicable: verbalized sampling needs an instruction-following " \
           "chat model |" in text
    no_reason = [dict(r, not_applicable=None) if r["name"] == "verbalized" else r for r in method_runs()]
    assert "not applicable: the evaluation recorded no reason" in methods_table_markdown(no_reason)
    order = [line.split("|")[2].strip() for line in lines[2:]]
    assert order == ["base", "alpha-2.0-la_tb-s0", "alpha-4.0-la_tb-s0", "low_temperature-4.0", "mcmc-4.0", "verbalized",
                     "grpo"]


def test_headline_alpha_column_names_each_baselines_own_alpha_and_never_says_base():
    rows = {r["name"]: r for r in runs_table(method_runs())}
    lines = {line.split("|")[1].strip(): line for line in headline_table_markdown(list(rows.values())).splitlines()[2:]}
    alpha = {name: line.split("|")[2].strip() for name, line in lines.items()}
    assert alpha == {"base": "–", "alpha-2.0-la_tb-s0": "2", "alpha-4.0-la_tb-s0": "4", "mcmc-4.0": "4",
                     "low_temperature-4.0": "4", "grpo": "–", "verbalized": "–"}
    assert "| verbalized | – | – | not applicable: verbalized sampling needs an instruction-following chat model |" \
        in lines["verbalized"]


def test_method_findings_state_the_mcmc_and_grpo_comparisons():
    from powerflow.report.findings import method_findings

    findings = method_findings(method_runs())
    mcmc = next(f for f in findings if "MCMC" in f)
    # 0.47 vs 0.50: gap -0.03, se sqrt(0.02² + 0.02²) = 0.0283 -> -1.1 se: within 2 se, "matched";
    # inference tokens 11 / 220 = 0.05x
    assert mcmc.startswith("Power-Flow matched MCMC power sampling at α=4") and "-1.1 se" in mcmc and "0.05×" in mcmc
    grpo = next(f for f in findings if "GRPO" in f)
    assert "0.510 vs 0.600" in grpo and "-3.2 se" in grpo
    assert any("verbalized sampling was not run here" in f for f in findings)
    worse = [dict(r, metrics=dict(r["metrics"], **{"reasoning/accuracy_mean": 0.70})) if r["name"] == "mcmc-4.0" else r
             for r in method_runs()]
    assert next(f for f in method_findings(worse) if "MCMC" in f).startswith("Power-Flow did not match")
    better = [dict(r, metrics=dict(r["metrics"], **{"reasoning/accuracy_mean": 0.30})) if r["name"] == "mcmc-4.0" else r
              for r in method_runs()]
    assert next(f for f in method_findings(better) if "MCMC" in f).startswith("Power-Flow beat MCMC power sampling")


def test_method_findings_speak_for_the_median_seed_not_the_luckiest():
    from powerflow.report.findings import method_findings

    runs = method_runs()
    four = next(r for r in runs if r["name"] == "alpha-4.0-la_tb-s0")
    seeds = [dict(four, name=f"alpha-4.0-la_tb-s{i}", seed=i, group="alpha-4.0-la_tb",
                  metrics=dict(four["metrics"], **{"reasoning/accuracy_mean": acc}))
             for i, acc in enumerate((0.47, 0.70, 0.40))]
    runs = [r for r in runs if r is not four] + seeds
    mcmc = next(f for f in method_findings(runs) if "MCMC" in f)
    assert mcmc.startswith("Power-Flow, median of 3 seeds (alpha-4.0-la_tb-s0) matched MCMC"), mcmc
    assert "avg@n 0.470 vs 0.500" in mcmc  # the median seed, not 0.700


# ----------------------------------------------------------------------------- seeds


def test_seed_mean_and_se_are_the_textbook_values():
    from powerflow.report.seeds import seed_mean_se

    # x = 1, 2, 3: mean 2, s² = (1 + 0 + 1) / 2 = 1, se = 1 / √3
    mean, se = seed_mean_se([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0) and se == pytest.approx(1 / math.sqrt(3))
    # x = 0.4, 0.6: mean 0.5, s = √0.02 = 0.1414, se = s / √2 = 0.1
    assert seed_mean_se([0.4, 0.6]) == pytest.approx((0.5, 0.1))
    assert seed_mean_se([0.5, 0.5, 0.5]) == (0.5, 0.0)
    # one seed: its value, and no spread across seeds; a missing value is left out; none at all: NaN
    mean, se = seed_mean_se([0.25])
    assert mean == 0.25 and math.isnan(se)
    assert seed_mean_se([0.4, math.nan, None, 0.6]) == pytest.approx((0.5, 0.1))
    assert all(math.isnan(x) for x in seed_mean_se([]))


def seed_runs(accuracies: dict[float, list[float]], coverage=0.5, validity=0.9):
    """The base model and, per α, one run per seed with the given avg@n (per-prompt se 0.02)."""
    runs = [{"name": "base", "alpha": None, "objective": None, "metrics": metrics(0.30, 0.02, 0.4, 0.02, 0.95, 0.8, 9.0),
             "train": {}, "registered": None}]
    for alpha, values in accuracies.items():
        for seed, acc in enumerate(values):
            runs.append({"name": f"alpha-{alpha}-la_tb-s{seed}", "alpha": alpha, "objective": "la_tb", "seed": seed,
                         "group": f"alpha-{alpha}-la_tb", "method": "power_flow",
                         "metrics": metrics(acc, 0.02, coverage, 0.02, validity, 0.5, 10.0),
                         "train": {}, "registered": None})
    return runs


def test_aggregate_seeds_gives_mean_and_se_per_metric():
    from powerflow.report.seeds import aggregate_seeds

    groups = aggregate_seeds(seed_runs({2.0: [0.4, 0.6], 4.0: [0.5]}))
    assert [g["group"] for g in groups] == ["alpha-2.0-la_tb", "alpha-4.0-la_tb"]  # the base model is no group
    two, one = groups
    assert two["n_seeds"] == 2 and two["seeds"] == [0, 1] and two["se_over"] == "seeds"
    assert two["members"] == ["alpha-2.0-la_tb-s0", "alpha-2.0-la_tb-s1"]
    assert two["mean"]["reasoning/accuracy_mean"] == pytest.approx(0.5)
    assert two["se"]["reasoning/accuracy_mean"] == pytest.approx(0.1)  # across seeds, not the per-prompt 0.02
    assert two["se"]["open_ended/coverage"] == 0.0  # both seeds at 0.5
    assert "reasoning/accuracy_mean_se" not in two["mean"]  # per-prompt ses are not averaged
    # one seed: the run's own numbers, with its per-prompt se
    assert one["n_seeds"] == 1 and one["se_over"] == "prompts"
    assert one["mean"]["reasoning/accuracy_mean"] == 0.5 and one["se"]["reasoning/accuracy_mean"] == 0.02
    assert math.isnan(one["se"]["open_ended/kl_uniform"])  # no per-prompt se for that metric


def test_headline_gains_a_seed_mean_row_per_alpha_after_its_seeds():
    from powerflow.report.tables import headline_rows

    lines = headline_table_markdown(headline_rows(seed_runs({2.0: [0.4, 0.6], 4.0: [0.5, 0.7, 0.6]}))).splitlines()
    names = [line.split("|")[1].strip() for line in lines[2:]]
    assert names == ["base", "alpha-2.0-la_tb-s0", "alpha-2.0-la_tb-s1", "alpha-2.0-la_tb (mean over 2 seeds)",
                     "alpha-4.0-la_tb-s0", "alpha-4.0-la_tb-s1", "alpha-4.0-la_tb-s2",
                     "alpha-4.0-la_tb (mean over 3 seeds)"]
    assert "| 0.400 ± 0.020 |" in lines[3]  # a seed's row keeps its per-prompt se
    assert "| 0.500 ± 0.100 |" in lines[5]  # the mean row: mean ± se across seeds
    # α=4: 0.5, 0.7, 0.6 -> mean 0.6, s = 0.1, se = 0.1/√3 = 0.058
    assert "| 0.600 ± 0.058 |" in lines[9]
    # one seed everywhere: no mean rows (they would repeat the runs' rows)
    assert len(headline_rows(seed_runs({2.0: [0.4], 4.0: [0.5]}))) == 3


def test_best_run_is_the_median_seed_of_the_best_seed_mean():
    # α=2's luckiest seed (0.9) beats every α=4 seed, but α=4 has the better mean (0.6 vs 0.5)
    runs = seed_runs({2.0: [0.2, 0.9, 0.4], 4.0: [0.62, 0.58, 0.6]})
    rows = runs_table(runs)
    assert best_runs(rows)["reasoning"] == "alpha-4.0-la_tb-s2"  # median of 0.58, 0.6, 0.62
    from powerflow.report.findings import best_groups

    assert best_groups(rows)["reasoning"] == "alpha-4.0-la_tb"
    # an even count takes the lower median
    assert best_runs(runs_table(seed_runs({4.0: [0.7, 0.5]})))["reasoning"] == "alpha-4.0-la_tb-s1"
    # diversity: the same, among groups whose mean validity passes
    assert best_runs(rows, min_validity=0.95)["diversity"] is None
    assert best_runs(rows)["diversity"] == "alpha-2.0-la_tb-s1"  # coverages tie: first group, ties ordered by seed


def test_report_with_seeds_states_means_and_the_aliased_run(tmp_path):
    runs = seed_runs({2.0: [0.2, 0.9, 0.4], 4.0: [0.62, 0.58, 0.6]})
    out = write_report(runs, {}, tmp_path / "report", title="seeds")
    assert out["best"]["reasoning"] == "alpha-4.0-la_tb-s2"
    assert out["best_groups"]["reasoning"] == "alpha-4.0-la_tb"
    assert [g["n_seeds"] for g in out["groups"]] == [3, 3]
    text = out["report"].read_text()
    assert "| alpha-4.0-la_tb (mean over 3 seeds) |" in text
    assert "3 training seeds per (α, objective)" in text and "std(ddof=1)/√N" in text
    findings = text.split("## What the sweep shows")[1].split("##")[0]
    assert "mean over 3 seeds" in findings and "alias points at alpha-4.0-la_tb-s2" in findings
    single = write_report(seed_runs({2.0: [0.4]}), {}, tmp_path / "single", title="one seed")["report"].read_text()
    assert "a standard error across seeds needs ≥ 2 seeds" in single and "seeds) |" not in single


def _with_exact(run, target_acc, policy_acc, kl):
    m = dict(run["metrics"])
    m.update({"exact/target/reasoning/accuracy": target_acc, "exact/target/reasoning/pass@4": 0.99,
              "exact/target/open_ended/validity": 1.0, "exact/target/open_ended/coverage": 0.15,
              "exact/target/open_ended/kl_uniform": 2.1, "exact/target/reasoning/support_bound": 0.011,
              "exact/policy/reasoning/accuracy": policy_acc, "exact/policy/reasoning/kl_target": kl,
              "exact/policy/open_ended/validity": 0.98, "exact/policy/open_ended/coverage": 0.3,
              "exact/policy/open_ended/kl_target": 0.1, "exact/accuracy_ratio": m["reasoning/accuracy_mean"] / target_acc})
    return {**run, "metrics": m}


def test_headline_gains_an_exact_target_row_per_alpha_and_a_distance_table():
    from powerflow.report.tables import exact_distance_table_markdown, exact_target_rows, headline_rows

    runs = hand_runs()
    runs = [_with_exact(r, 0.95, 0.9, 0.06) if r["alpha"] == 4.0 else r for r in runs]
    rows = exact_target_rows(runs)
    assert [r["name"] for r in rows] == ["p_base^4 (exact)"]
    assert rows[0]["reasoning/accuracy_mean"] == 0.95 and rows[0]["reasoning/pass@max"] == 0.99
    assert rows[0]["reasoning/max_k"] == 4
    assert (rows[0]["open_ended/coverage"], rows[0]["open_ended/validity"], rows[0]["open_ended/kl_uniform"]) == (
        0.15, 1.0, 2.1)
    names = [r["name"] for r in headline_rows(runs)]
    assert names.index("p_base^4 (exact)") == names.index("alpha-4") - 1  # beside its α's runs
    assert "exact" not in families_of(runs)
    # the world's headline: the oracle's row and the runs' rows with the numbers the headline always showed
    headline = headline_table_markdown(headline_rows(runs))
    assert "| p_base^4 (exact) | 4 | exact | – | 0.950 | 0.990 | 0.150 | 1.000 | 2.100 | – |" in headline
    assert "| alpha-4 | 4 | la_tb | 0.500 | 0.612 ± 0.031 | 0.762 | 0.300 ± 0.020 | 0.970 | 1.100 | 14.2 |" \
        in headline
    assert "| base | – | – | 0.500 | 0.450 ± 0.030 | 0.600 | 0.400 ± 0.020 | 0.950 | 0.800 | 15.0 |" in headline
    table = exact_distance_table_markdown(runs)
    assert "| alpha-4 | 4 | 0.950 | 0.644 | 0.900 | 0.060 |" in table  # 0.612 / 0.95
    # the best-run rule never picks the oracle row: it is not a run
    assert best_runs(runs_table(runs))["reasoning"] == "alpha-4"
    assert exact_distance_table_markdown(hand_runs()) == "" and exact_target_rows(hand_runs()) == []


def test_distance_table_gives_the_mean_over_seeds():
    from powerflow.report.tables import exact_distance_table_markdown

    base = hand_runs()[0]
    seeds = [_with_exact({**base, "name": f"alpha-4-s{s}", "seed": s, "group": "alpha-4"}, 0.95, acc, kl)
             for s, (acc, kl) in enumerate([(0.8, 0.2), (0.9, 0.1)])]
    table = exact_distance_table_markdown(seeds)
    assert "| alpha-4 (mean over 2 seeds) | 4 | 0.950 ± 0.000 | 0.644 ± 0.000 | 0.850 ± 0.050 | 0.150 ± 0.050 |" in table


def test_own_target_table_shows_la_tb_against_its_tilt_and_tb_against_p_alpha():
    from powerflow.report.tables import own_target_table_markdown

    base = hand_runs()[0]
    tb = _with_exact({**base, "name": "alpha-4-tb", "alpha": 4.0, "objective": "tb", "group": "alpha-4-tb"},
                     0.95, 0.9, 0.06)
    la = _with_exact({**base, "name": "alpha-4-la_tb", "alpha": 4.0, "objective": "la_tb", "group": "alpha-4-la_tb"},
                     0.95, 0.97, 0.25)
    la["metrics"] |= {"exact/own_target/reasoning/accuracy": 0.987, "exact/own_target/reasoning/length": 15.5,
                      "exact/own_target/reasoning/lambda": -0.31, "exact/own_policy/reasoning/accuracy": 0.97,
                      "exact/own_policy/reasoning/kl_target": 0.04, "exact/own_policy/open_ended/kl_target": 0.03}
    assert own_target_table_markdown([tb]) == ""  # only tb ran: the table above says it all
    table = own_target_table_markdown([tb, la])
    assert "## Against each objective's own fixed point" in table
    # la_tb: its own target π*_λ, then p^α; tb: its own target is p^α, so both blocks agree
    assert "| alpha-4-la_tb | 4 | 0.987 | 0.970 | 0.040 | 0.030 | 15.500 | -0.310 | 0.950 | 0.250 |" in table
    assert "| alpha-4-tb | 4 | 0.950 | 0.900 | 0.060 | 0.100 | – | – | 0.950 | 0.060 |" in table


# ----------------------------------------------------------------------------- a user's benchmarks


def answer_keyed(family, acc, *, greedy=None, no_answer=0.05, tokens=300.0, inference=None):
    """An answer-keyed family's metrics (MATH500, MMLU-Pro, GPQA): avg@16 ± 0.02, pass@k, maj@k, no answer."""
    return {f"{family}/accuracy_greedy": acc if greedy is None else greedy, f"{family}/accuracy_mean": acc,
            f"{family}/accuracy_mean_se": 0.02, f"{family}/pass@1": acc, f"{family}/pass@16": min(1.0, acc + 0.3),
            f"{family}/maj@16": acc + 0.05, f"{family}/validity": 1 - no_answer, f"{family}/no_answer": no_answer,
            f"{family}/extraction_failures": no_answer, f"{family}/tokens_per_answer": tokens,
            f"{family}/inference_tokens_per_answer": inference or tokens, f"{family}/seconds_per_answer": 0.2}


def open_ended(family, coverage, validity, *, semantic=0.5, quality=0.8):
    """An open-ended family's metrics (CoverageQA): coverage ± se, validity, KL to uniform, quality, diversity."""
    return {f"{family}/coverage": coverage, f"{family}/coverage_se": 0.03, f"{family}/validity": validity,
            f"{family}/validity_se": 0.01, f"{family}/kl_uniform": 1.0 - coverage, f"{family}/quality": quality,
            f"{family}/quality_se": 0.04, f"{family}/semantic_diversity": semantic,
            f"{family}/semantic_diversity_se": 0.01, f"{family}/distinct_2": 0.6, f"{family}/tokens_per_answer": 20.0}


def creative(family, semantic, quality):
    """A creative family's metrics: diversity and the judge's quality, no answer key."""
    return {f"{family}/semantic_diversity": semantic, f"{family}/semantic_diversity_se": 0.01,
            f"{family}/distinct_2": 0.7, f"{family}/quality": quality, f"{family}/quality_se": 0.05,
            f"{family}/judge_failures": 0.0, f"{family}/tokens_per_answer": 400.0}


def bench_run(name, metrics, alpha=None, method="power_flow", tokens=300.0, inference=None, **extra):
    """A run on benchmarks (no world, no exact/ metrics): cost/ and eval/ beside the families' metrics."""
    cost = {"cost/tokens_per_answer": tokens, "cost/inference_tokens_per_answer": inference or tokens,
            "eval/n_samples": 16}
    run = {"name": name, "alpha": alpha, "objective": "la_tb" if alpha is not None else None, "method": method,
           "metrics": metrics | cost, "train": {}, "registered": None} | extra
    if alpha is not None:
        run |= {"seed": 0, "group": name.rsplit("-s", 1)[0]}
    return run


def math500_runs():
    """Every method on MATH500 only: base, Power-Flow at α=2 and 4, MCMC, GRPO, EMPO, low temperature,
    and verbalized sampling that did not apply."""
    return [
        bench_run("base", answer_keyed("math500", 0.40), method="base"),
        bench_run("alpha-2.0-la_tb-s0", answer_keyed("math500", 0.56), alpha=2.0, train={"train/seconds": 50.0}),
        bench_run("alpha-4.0-la_tb-s0", answer_keyed("math500", 0.50, no_answer=0.02), alpha=4.0,
                  train={"train/seconds": 51.0}),
        bench_run("mcmc-4.0", answer_keyed("math500", 0.52, inference=3000.0), method="mcmc", method_alpha=4.0,
                  inference=3000.0),
        bench_run("grpo", answer_keyed("math500", 0.60), method="grpo", train={"train/seconds": 60.0}),
        bench_run("empo", answer_keyed("math500", 0.45), method="empo", train={"train/seconds": 61.0}),
        bench_run("low_temperature-4.0", answer_keyed("math500", 0.47), method="low_temperature", method_alpha=4.0),
        {"name": "verbalized", "alpha": None, "method": "verbalized", "metrics": {"eval/applicable": 0.0},
         "not_applicable": "verbalized sampling needs an instruction-following chat model", "train": {},
         "registered": None},
    ]


def table_cells(table: str) -> dict[str, list[str]]:
    """A Markdown table's body as {first cell: the other cells}; the header under "header"."""
    lines = table.strip().splitlines()
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")[1:]]
             for line in lines[2:]}
    return cells | {"header": [c.strip() for c in lines[0].strip().strip("|").split("|")]}


def test_family_kind_is_read_off_the_metrics():
    from powerflow.eval.families import family_of
    from powerflow.report.values import ANSWER_KEYED, CREATIVE, OPEN_ENDED, family_kind

    records = [answer_keyed("math500", 0.5) | open_ended("coverageqa", 0.4, 0.9)
               | creative("creative_writing_v3", 0.3, 0.6), {"reasoning/accuracy_mean": math.nan}]
    assert family_kind(records, "math500") == ANSWER_KEYED
    assert family_kind(records, "coverageqa") == OPEN_ENDED
    assert family_kind(records, "creative_writing_v3") == CREATIVE
    assert family_kind(records, "reasoning") == CREATIVE  # a NaN accuracy is no accuracy
    assert [family_of(k) for k in ("math500/pass@4", "cost/tokens_per_answer", "exact/target/x", "train/seconds",
                                   "plain")] == ["math500", None, None, None, None]


def test_a_math500_report_has_numbers_in_every_row_and_chooses_on_math500(tmp_path):
    from powerflow.report.document import sweep_title
    from powerflow.report.findings import method_findings
    from powerflow.report.tables import headline_rows, methods_table_markdown

    runs = math500_runs()
    headline = table_cells(headline_table_markdown(headline_rows(runs)))
    assert headline["header"] == ["run", "α", "objective", "math500 acc greedy", "math500 avg@16 ± se",
                                  "math500 pass@16", "math500 no answer", "tokens/answer"]
    assert set(headline) - {"header"} == {r["name"] for r in runs}
    for name, cells in headline.items():
        assert any(c not in ("–", "") for c in cells[2:]), (name, cells)  # no row is all "–"
    assert headline["alpha-4.0-la_tb-s0"][2:] == ["0.500", "0.500 ± 0.020", "0.800", "0.020", "300.0"]
    assert headline["verbalized"][2] == ("not applicable: verbalized sampling needs an instruction-following "
                                         "chat model")

    methods = table_cells(methods_table_markdown(runs))
    assert methods["header"][-3:] == ["tokens/answer", "inference tokens/answer", "training s"]
    for label in ("base model", "Power-Flow α=2 (la_tb)", "MCMC power sampling α=4", "GRPO (gold answers)",
                  "EMPO (semantic entropy)", "low temperature α=4"):
        assert any(c not in ("–", "") for c in methods[label][1:-1]), label
    assert methods["MCMC power sampling α=4"] == ["mcmc-4.0", "0.520", "0.520 ± 0.020", "0.820", "0.050", "300.0",
                                                  "3000.0", "–"]

    title = sweep_title("pilot", "Qwen/Qwen2.5-Math-1.5B")
    out = write_report(runs, {}, tmp_path / "report", title=title)
    assert out["best"] == {"reasoning": "alpha-2.0-la_tb-s0", "diversity": None}  # GRPO is no Power-Flow α
    assert out["select_on"] == {"reasoning": "math500", "diversity": None}
    text = out["report"].read_text()
    assert text.startswith("# powerflow α sweep `pilot` on Qwen/Qwen2.5-Math-1.5B\n")
    findings = text.split("## What the sweep shows")[1].split("##")[0]
    # 0.56 - 0.40 = +0.160 with se √(0.02² + 0.02²) = 0.0283 -> +5.7 se
    assert "Best reasoning on math500: α=2 la_tb" in findings and "+0.160 (+5.7 se)" in findings
    assert "No open-ended family ran (families that ran: math500" in findings
    assert "best reasoning = highest math500 avg@n" in findings and "no open-ended family ran" in findings
    said = method_findings(runs)
    assert next(f for f in said if "MCMC" in f).startswith("Power-Flow matched MCMC power sampling at α=4: math500 "
                                                           "avg@n 0.500 vs 0.520")
    assert any("vs GRPO (gold answers): math500 avg@n 0.560 vs 0.600" in f for f in said)
    assert any("vs EMPO (semantic entropy)" in f for f in said) and any("vs low temperature" in f for f in said)
    for sentence in said:
        assert sentence in text
    assert "world" not in text.lower() and "reasoning accuracy" not in text.lower()
    assert "No run has" not in text and "p_base^" not in text


def three_benchmark_runs():
    """Base and three Power-Flow α on MMLU-Pro, GPQA-Diamond, CoverageQA and a creative benchmark.

    Best on mmlu_pro: α=2; on gpqa_diamond: α=4; on coverageqa α=1 has the most coverage but
    validity 0.70, so best diversity is α=2 (0.45 at validity 0.88).
    """
    def m(mmlu, gpqa, coverage, validity):
        return (answer_keyed("mmlu_pro", mmlu) | answer_keyed("gpqa_diamond", gpqa, no_answer=0.1)
                | open_ended("coverageqa", coverage, validity) | creative("creative_writing_v3", 0.4, 0.6))
    return [bench_run("base", m(0.30, 0.25, 0.30, 0.90), method="base"),
            bench_run("alpha-1.0-la_tb-s0", m(0.35, 0.27, 0.55, 0.70), alpha=1.0),
            bench_run("alpha-2.0-la_tb-s0", m(0.45, 0.28, 0.45, 0.88), alpha=2.0),
            bench_run("alpha-4.0-la_tb-s0", m(0.40, 0.33, 0.35, 0.95), alpha=4.0)]


def test_a_report_on_three_benchmarks_has_a_block_per_family(tmp_path):
    from powerflow.report.tables import headline_rows

    runs = three_benchmark_runs()
    headline = table_cells(headline_table_markdown(headline_rows(runs)))
    blocks = [f"{family} {h}" for family in ("mmlu_pro", "gpqa_diamond")
              for h in ("acc greedy", "avg@16 ± se", "pass@16", "no answer")]
    blocks += [f"coverageqa {h}" for h in ("coverage ± se", "validity", "semantic diversity", "quality ± se",
                                           "KL to uniform")]
    blocks += ["creative_writing_v3 semantic diversity", "creative_writing_v3 quality ± se"]
    assert headline["header"] == ["run", "α", "objective", *blocks, "tokens/answer"]
    assert headline["alpha-2.0-la_tb-s0"][2:] == [
        "0.450", "0.450 ± 0.020", "0.750", "0.050", "0.280", "0.280 ± 0.020", "0.580", "0.100",
        "0.450 ± 0.030", "0.880", "0.500", "0.800 ± 0.040", "0.550", "0.400", "0.600 ± 0.050", "300.0"]
    out = write_report(runs, {}, tmp_path / "report", title="t")
    assert out["best"] == {"reasoning": "alpha-2.0-la_tb-s0", "diversity": "alpha-2.0-la_tb-s0"}
    assert out["select_on"] == {"reasoning": "mmlu_pro", "diversity": "coverageqa"}
    text = out["report"].read_text()
    findings = text.split("## What the sweep shows")[1].split("##")[0]
    assert "Best reasoning on mmlu_pro: α=2" in findings
    # coverage 0.45 - 0.30 = +0.150, se √(0.03² + 0.03²) = 0.0424 -> +3.5 se; α=1 (validity 0.70) not kept
    assert "Best diversity on coverageqa (validity ≥ 0.8): α=2" in findings and "+0.150 (+3.5 se)" in findings
    assert ("best diversity = highest coverageqa coverage among trained runs with coverageqa validity ≥ 0.8"
            in findings)
    assert "world" not in text.lower() and "open-ended coverage" not in text
    for family in ("mmlu_pro", "gpqa_diamond", "coverageqa", "creative_writing_v3"):
        assert f"### {family}" in text


def test_select_on_chooses_best_reasoning_on_the_named_family(tmp_path):
    runs = three_benchmark_runs()
    rows = runs_table(runs)
    assert best_runs(rows)["reasoning"] == "alpha-2.0-la_tb-s0"  # the first answer-keyed family: mmlu_pro
    assert best_runs(rows, select_on="gpqa_diamond")["reasoning"] == "alpha-4.0-la_tb-s0"
    # a lower validity bar on the named open-ended family lets α=1's coverage win
    assert best_runs(rows, 0.6, select_diversity_on="coverageqa")["diversity"] == "alpha-1.0-la_tb-s0"
    out = write_report(runs, {}, tmp_path / "report", title="t", select_on="gpqa_diamond")
    assert out["best"]["reasoning"] == "alpha-4.0-la_tb-s0" and out["select_on"]["reasoning"] == "gpqa_diamond"
    text = out["report"].read_text()
    # 0.33 - 0.25 = +0.080, se 0.0283 -> +2.8 se
    assert "Best reasoning on gpqa_diamond: α=4" in text and "+0.080 (+2.8 se)" in text
    assert "best reasoning = highest gpqa_diamond avg@n" in text


def test_an_unknown_or_wrong_kind_select_on_is_one_clear_error(tmp_path):
    from powerflow.errors import ConfigError

    runs = three_benchmark_runs()
    with pytest.raises(ConfigError) as err:
        write_report(runs, {}, tmp_path / "report", title="t", select_on="math500")
    message = str(err.value)
    assert message.startswith("report.select_on='math500': that family did not run.")
    assert ("Families that ran: mmlu_pro (answer-keyed), gpqa_diamond (answer-keyed), coverageqa (open-ended), "
            "creative_writing_v3 (creative).") in message
    assert not (tmp_path / "report").exists()  # refused before anything is written
    with pytest.raises(ConfigError, match=r"report.select_on='coverageqa': that family is not answer-keyed"):
        best_runs(runs_table(runs), select_on="coverageqa")
    with pytest.raises(ConfigError, match=r"report.select_diversity_on='mmlu_pro': that family is not open-ended"):
        best_runs(runs_table(runs), select_diversity_on="mmlu_pro")


def test_seed_means_work_for_any_family():
    from powerflow.report.tables import headline_rows

    runs = three_benchmark_runs()[:1]
    for seed, (mmlu, coverage) in enumerate([(0.40, 0.40), (0.50, 0.50)]):
        run = three_benchmark_runs()[2]
        metrics = run["metrics"] | {"mmlu_pro/accuracy_mean": mmlu, "coverageqa/coverage": coverage}
        runs.append(run | {"name": f"alpha-2.0-la_tb-s{seed}", "seed": seed, "group": "alpha-2.0-la_tb",
                           "metrics": metrics})
    rows = table_cells(headline_table_markdown(headline_rows(runs)))
    mean = rows["alpha-2.0-la_tb (mean over 2 seeds)"]
    # avg@n 0.45 ± 0.05 across seeds (0.40, 0.50), coverage the same; quality keeps its mean, se 0 across seeds
    assert mean[3] == "0.450 ± 0.050" and mean[10] == "0.450 ± 0.050" and mean[13] == "0.800 ± 0.000"
    assert mean[4] == "0.750"  # pass@16 of both seeds
    assert best_runs(runs_table(runs))["reasoning"] == "alpha-2.0-la_tb-s0"  # lower median of two seeds


def test_no_answer_is_preferred_to_extraction_failures():
    runs = math500_runs()[:2]
    runs[0]["metrics"] = {k: v for k, v in runs[0]["metrics"].items() if k != "math500/no_answer"}
    runs[0]["metrics"]["math500/extraction_failures"] = 0.3  # an older evaluation: only the old name
    runs[1]["metrics"]["math500/extraction_failures"] = 0.9  # both: no_answer wins
    rows = {r["name"]: r for r in runs_table(runs)}
    assert rows["base"]["math500/no_answer"] == 0.3 and rows["alpha-2.0-la_tb-s0"]["math500/no_answer"] == 0.05


def test_the_title_is_built_from_the_sweep_and_the_model_unless_given(tmp_path, monkeypatch):
    import json

    import yaml

    from powerflow.config import load_pipeline_config
    from powerflow.pipeline import report as report_stage
    from powerflow.report.document import sweep_title

    assert sweep_title("default", "world") == "powerflow α sweep `default` on the embedded world"
    assert sweep_title("pilot", "/models/qwen") == "powerflow α sweep `pilot` on /models/qwen"
    params = yaml.safe_load((Path(report_stage.__file__).parents[2] / "params.yaml").read_text())
    assert params["report"].get("title") is None  # params.yaml leaves the title to be built
    params["model"]["name_or_path"], params["sweep"]["name"] = "Qwen/Qwen2.5-Math-1.5B", "pilot"
    params["report"]["select_on"] = "math500"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    cfg = load_pipeline_config(tmp_path / "params.yaml")
    monkeypatch.setattr(report_stage, "collect_runs", lambda cfg: (math500_runs(), {}))
    report_stage.write_sweep_report(cfg)
    folder = tmp_path / "outputs" / "report"
    assert (folder / "report.md").read_text().startswith("# powerflow α sweep `pilot` on Qwen/Qwen2.5-Math-1.5B\n")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["select_on"] == {"reasoning": "math500", "diversity": None}
    assert summary["best"]["reasoning"] == "alpha-2.0-la_tb-s0"
    params["report"]["title"] = "My sweep"  # an explicit title wins
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    report_stage.write_sweep_report(load_pipeline_config(tmp_path / "params.yaml"))
    assert (folder / "report.md").read_text().startswith("# My sweep\n")


def test_report_config_checks_its_keys():
    from powerflow.config.sections import ReportConfig
    from powerflow.errors import ConfigError

    assert ReportConfig().title is None and ReportConfig().select_on is None
    assert ReportConfig(select_on="math500").select_on == "math500"
    with pytest.raises(ConfigError, match="report.select_on='math500/accuracy_mean': name an eval family"):
        ReportConfig(select_on="math500/accuracy_mean")
    with pytest.raises(ConfigError, match="report.title is empty"):
        ReportConfig(title=" ")


def test_below_one_the_exact_row_says_it_is_on_the_support_and_bounds_the_true_target():
    from powerflow.report.tables import exact_target_rows

    base = hand_runs()[0]
    flat = _with_exact({**base, "name": "alpha-0.5", "alpha": 0.5, "group": "alpha-0.5"}, 0.218, 0.2, 0.1)
    flat["metrics"] |= {"exact/target/reasoning/support_share_max": 0.564, "exact/target/reasoning/accuracy_max": 0.123,
                        "exact/target/open_ended/support_share_max": 0.847,
                        "exact/target/open_ended/validity_max": 0.655}
    sharp = _with_exact({**base, "name": "alpha-4", "alpha": 4.0, "group": "alpha-4"}, 0.95, 0.9, 0.06)
    names = [r["name"] for r in exact_target_rows([flat, sharp])]
    assert names == ["p_base^0.5 on S (exact; the true target: ≤ 56% on S, accuracy ≤ 0.123, validity ≤ 0.655)",
                     "p_base^4 (exact)"]
    legend = headline_legend(exact_target_rows([flat]))
    assert "lifts the base's thin tail" in legend
