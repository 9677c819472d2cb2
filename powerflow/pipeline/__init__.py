"""The pipeline's steps: prepare → base → train → evaluate → register → report.

A trained checkpoint is evaluated from disk (models/policies/<name>/) and registered only after
its evaluation succeeded, with the checksum the evaluation recorded: a crash in evaluation
registers nothing, and the report's aliases only ever point at evaluated versions.

One definition of each step, reached three ways: the `powerflow` CLI (which DVC stages call),
the Prefect tasks in `tasks/` (one task per step function), and tests. Nothing here imports
Prefect. Each step reads params.yaml through `PipelineConfig`, reads its inputs from the
project's directory layout (`Layout`), and writes its outputs atomically, so a failed step
leaves the previous outputs (or none) and never half of one.

Steps that talk to the tracking server (`open_training_run`, `close_training_run`,
`record_evaluation`, `register_policy`, `set_registry_aliases`) are separate from the compute
steps so an orchestrator can retry them alone. The stages that chain several steps
(`train_member`, `evaluate_member`, `report_sweep`) take a `step` wrapper: the CLI passes a timer,
the Prefect flows pass "the task of this step", so each chain is written once.

One module per stage job, plus the two every stage shares:

    layout    directory layout, run names, provenance, history.csv     (shared)
    loading   the base model's source, tokenizer and LM loaders         (shared)
    runs      the experiment, sweep parent run, run tags                (shared by train/register/report)
    prepare   data/prepared            base      models/base (world)
    train     models/policies/<name>   evaluate  outputs/eval/<name>
    register  the Model Registry       report    outputs/report, aliases
    ranks     the entry point of one `accelerate launch` rank

Each DVC stage depends only on the modules it runs (dvc.yaml). Every step is also reachable as
`powerflow.pipeline.<name>`: this package imports a stage module the first time one of its names
is asked for, so `from powerflow.pipeline import train_member` loads the train stage and nothing
of the report.
"""

from __future__ import annotations

from powerflow.lazy import lazy_exports

# Where each public name lives (module of this package).
_HOME: dict[str, str] = {
    "BASE_RUN": "layout", "HISTORY_KEYS": "layout", "TRAINED_BASELINES": "layout", "VERBALIZED_RUN": "layout",
    "alpha_label": "layout", "as_is": "layout", "baseline_runs": "layout", "check_baseline": "layout",
    "check_seed": "layout", "git_commit": "layout", "group_name": "layout", "history_rows": "layout",
    "inference_run": "layout", "Layout": "layout", "layout_of": "layout", "member_objective": "layout",
    "member_seed": "layout", "MissingInputError": "layout", "params_sha256": "layout", "read_history_csv": "layout",
    "require_input": "layout", "run_name": "layout", "run_params": "layout", "Step": "layout",
    "sweep_members": "layout", "train_command": "layout", "training_seed": "layout", "write_history_csv": "layout",
    "base_model_source": "loading", "check_model_source": "loading", "load_causal_lm": "loading",
    "load_tokenizer": "loading",
    "run_tags": "runs", "sweep_parent": "runs", "tracking_experiment": "runs", "training_run_id": "runs",
    "prepare_prompts": "prepare",
    "pretrain_base": "base",
    "WORKDIR_RUN": "train", "WORKDIR_STAMP": "train", "checkpoint_is_complete": "train", "checkpoint_step": "train",
    "close_member_run": "train", "close_training_run": "train", "fit_and_save": "train",
    "log_training_results": "train", "open_member_run": "train", "open_training_run": "train",
    "results_kept_message": "train", "ResultsNotLoggedError": "train", "resumable_checkpoint": "train",
    "rollout_engine_arguments": "train", "save_gathered_policy": "train", "shared_training_arguments": "train",
    "train_baseline": "train", "train_baseline_member": "train", "train_member": "train", "train_on_ranks": "train",
    "train_or_restore": "train", "train_policy": "train", "trainer_arguments": "train", "training_prompts": "train",
    "training_rows": "train", "training_summary": "train", "training_workdir": "train", "unfinished_run": "train",
    "checkpoint_alpha": "evaluate", "evaluate_checkpoint": "evaluate", "evaluate_inference_method": "evaluate",
    "evaluate_member": "evaluate", "evaluate_registered": "evaluate", "evaluate_target": "evaluate",
    "evaluation_rows": "evaluate", "prepared_split": "evaluate", "evaluation_settings": "evaluate", "generation_model": "evaluate",
    "method_sampler": "evaluate", "policy_diagnostics_of": "evaluate", "record_evaluation": "evaluate",
    "trained_checkpoint": "evaluate", "world_exact_metrics": "evaluate", "write_not_applicable": "evaluate",
    "write_run_plots": "evaluate",
    "EVAL_TAG_METRICS": "register", "evaluated_checkpoint": "register", "evaluation_tags": "register",
    "register_baseline": "register", "register_checkpoint_of": "register", "register_policy": "register",
    "StaleEvaluationError": "register",
    "ALPHA_PLOT_COLUMNS": "report", "collect_runs": "report", "evaluation_metrics": "report",
    "groups_summary": "report", "record_report": "report",
    "report_sweep": "report", "set_registry_aliases": "report", "write_alpha_means_csv": "report",
    "write_alpha_metrics_csv": "report", "write_sweep_report": "report",
}
__all__ = sorted(_HOME)
__getattr__, __dir__ = lazy_exports(__name__, _HOME)
