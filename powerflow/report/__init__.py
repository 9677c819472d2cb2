"""The sweep report: one Markdown summary and PNG plots comparing the runs across α.

A run is a dict {"name", "alpha" (None for the base model), "objective", "metrics" (the names of
`powerflow.eval.evaluate`), "train" (the training summary), "registered" (dict or None)}; a
Power-Flow run may add "seed" (its training seed) and "group" (the name its seeds share,
alpha-4.0-la_tb). Everything here reads those dicts only, so the report can be rebuilt from
stored metrics files.

Seeds: the runs of one (α, objective) with different training seeds form a group. Every run keeps
its own row; with ≥ 2 seeds the headline table adds the group's row "mean over N seeds": per
metric the mean over seeds x̄ and its standard error across seeds s/√N (s: std with ddof=1), which
is the spread a rerun with new seeds would show (`seed_mean_se`, `aggregate_seeds`). A single
seed has no across-seed spread: its row keeps the per-prompt standard error of its evaluation.

Families: a metric's prefix before '/' is its eval family (reasoning, open_ended on the embedded
world; math500, mmlu_pro, coverageqa, creative_writing_v3 ... on benchmarks), and a family's kind is
read off its metrics (`family_kind`): answer-keyed with `<family>/accuracy_mean`, open-ended with
`<family>/coverage`, creative otherwise. The headline and methods tables give a block of columns per
family that ran, by its kind (`KIND_COLUMNS`).

Best runs, the rule the report states: among trained runs (the base model only when there are
none), best reasoning = highest `<select_on>/accuracy_mean` (avg@n; report.select_on, by default
the first answer-keyed family that ran); best diversity = highest `<family>/coverage` on the first
open-ended family (report.select_diversity_on) among runs whose `<family>/validity` ≥ min_validity
(0.8 by default), so a run that buys coverage with invalid answers does not win; no family of the
kind, no best run of that role. With several seeds the rule is applied to the groups' seed means,
and the run chosen (the one the registry alias points at) is the group's median-seed run by that
metric (the lower median for an even count; for diversity among its seeds that keep the validity,
when any does): a typical policy of the best setting, not its luckiest seed. Ties go to the run
listed first (lower α). matplotlib is imported lazily and draws on the Agg canvas (no display, no
pyplot state).

Modules, one job each: `values` (metric names, formatting, labels), `seeds` (mean ± se across
seeds), `tables` (the Markdown tables), `findings` (sentences and the best-run rule), `plots`
(PNGs), `document` (report.md). This package imports nothing: import each name from the module
that defines it (`from powerflow.report.document import write_report`).
"""
