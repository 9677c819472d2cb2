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

Each DVC stage depends only on the modules it runs (dvc.yaml). This package imports nothing:
import each name from the module that defines it (`from powerflow.pipeline.train import
train_member`, `from powerflow.pipeline.layout import run_name`), so loading the train stage loads
nothing of the report, and `import powerflow.pipeline` loads neither torch nor mlflow.
"""
