"""Runs of a sweep: one parent run per sweep, one child run per (α, objective), and what they log.

Run lifecycle. A run is created, its parameters logged, and then it is ended FINISHED at once:
pipeline stages are separate processes (DVC, Prefect), so no stage holds a run open. Later
stages log metrics and artifacts to the run *by id* through MlflowClient, which MLflow allows on
finished runs. Parameters are immutable per run: a stage that runs again with other parameters
creates a new child run instead of editing the old one.

Names. Parameters keep the dotted names of params.yaml (`train.learning_rate`); metrics are grouped
by slash (`train/loss`, `eval/reasoning/accuracy`). MLflow metric names allow only letters,
digits, `_ - . / : space`; `metric_key` spells anything else out (`eval/pass@1` -> `eval/pass_at_1`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SWEEP_TAG = "powerflow.sweep"
ROLE_TAG = "powerflow.role"
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests child runs under it
RUN_NAME_TAG = "mlflow.runName"

# MLflow's limits per log_batch request (mlflow.utils.validation).
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000


def flatten_params(nested: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"train": {"lr": 1}} -> {"train.lr": "1"}: dotted keys as in params.yaml, values as strings.

    Strings stay as they are; other values are written as JSON (1, 0.003, true, null, [0.5, 2.0]),
    which is how they read in params.yaml. An empty mapping leaves no key.
    """
    flat: dict[str, str] = {}
    for key, value in nested.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, name))
        elif isinstance(value, str):
            flat[name] = value
        else:
            flat[name] = json.dumps(list(value) if isinstance(value, tuple) else value, default=str)
    return flat


def metric_key(name: str) -> str:
    """A valid MLflow metric name: '@' -> '_at_', any other character MLflow refuses -> '_'."""
    return re.sub(r"[^\w.\- :/]", "_", name.replace("@", "_at_"))


def sweep_parent_run(experiment_id: str, sweep: str, tags: Mapping[str, str] | None = None) -> str:
    """The id of the sweep's parent run (tags powerflow.sweep=<sweep>, powerflow.role=parent), created once.

    Looks for an active (not deleted) run with those tags; creates it (named after the sweep, ended
    FINISHED) if there is none. `tags` are set on it either way. If two processes create it at the
    same moment, both then keep the oldest one and the other is deleted, so a sweep has one parent.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    tags = {key: str(value) for key, value in (tags or {}).items()}
    found = find_parent_runs(client, experiment_id, sweep)
    if found:
        run_id = found[0]
    else:
        run = client.create_run(experiment_id, run_name=sweep, tags={**tags, SWEEP_TAG: sweep, ROLE_TAG: "parent"})
        client.set_terminated(run.info.run_id, "FINISHED")
        run_id = keep_oldest_parent(client, experiment_id, sweep, run.info.run_id)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    return run_id


def find_parent_runs(client, experiment_id: str, sweep: str) -> list[str]:
    """Ids of the active parent runs of `sweep`, oldest first."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{quote(sweep)}' AND tags.`{ROLE_TAG}` = 'parent'"
    )
    return [run.info.run_id for run in sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))]


def keep_oldest_parent(client, experiment_id: str, sweep: str, created: str) -> str:
    """After creating a parent run, resolve a creation race: keep the oldest, delete ours if it lost."""
    found = find_parent_runs(client, experiment_id, sweep)
    if found and found[0] != created:
        client.delete_run(created)
        return found[0]
    return created


def quote(value: str) -> str:
    """`value` for a quoted literal of an MLflow search filter, which has no escape for a quote."""
    if "'" in value or '"' in value:
        raise ValueError(f"{value!r}: names searched in MLflow (sweeps, checksums) cannot contain quotes")
    return value


def start_child_run(
    experiment_id: str,
    parent_run_id: str,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
) -> str:
    """Create a child run of `parent_run_id`, log its params (flattened), end it FINISHED; return its id.

    The child carries mlflow.parentRunId (the UI nests it), mlflow.runName, powerflow.role=child,
    the parent's powerflow.sweep tag, and `tags`. Params may be nested (a params.yaml section) or
    already flat. Later stages add metrics and artifacts by run id (see the module docstring).
    """
    from mlflow import MlflowClient
    from mlflow.entities import Param

    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    run_tags = {ROLE_TAG: "child", PARENT_RUN_TAG: parent_run_id}
    if SWEEP_TAG in parent.data.tags:
        run_tags[SWEEP_TAG] = parent.data.tags[SWEEP_TAG]
    run_tags.update({key: str(value) for key, value in tags.items()})
    run = client.create_run(experiment_id, run_name=run_name, tags=run_tags)
    run_id = run.info.run_id
    try:
        items = [Param(key, value) for key, value in flatten_params(params).items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log `metrics` to the run in batched requests, all at `step` (0 if None) and one timestamp.

    Names go through `metric_key`; values must be real numbers (NaN and inf are kept: MLflow stores them).
    """
    timestamp = int(time.time() * 1000)
    log_metric_events(run_id, [(name, value, step or 0, timestamp) for name, value in metrics.items()])


def log_metric_events(run_id: str, events: list[tuple[str, Any, int, int]]) -> None:
    """Log (name, value, step, timestamp in ms) tuples to the run in batched requests."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    items = [Metric(metric_key(name), as_number(name, value), int(timestamp), int(step))
             for name, value, step, timestamp in events]
    client = MlflowClient()
    for start in range(0, len(items), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=items[start : start + MAX_METRICS_PER_BATCH])


def logged_steps(run_id: str, name: str) -> set[int]:
    """The steps at which metric `name` of the run already has a value."""
    from mlflow import MlflowClient

    return {m.step for m in MlflowClient().get_metric_history(run_id, metric_key(name))}


def run_is_active(run_id: str, experiment_id: str) -> bool:
    """Whether the store has run `run_id`, not deleted, in experiment `experiment_id`."""
    from mlflow import MlflowClient
    from mlflow.entities import LifecycleStage
    from mlflow.exceptions import MlflowException

    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return run.info.experiment_id == experiment_id and run.info.lifecycle_stage == LifecycleStage.ACTIVE


def as_number(name: str, value: Any) -> float:
    """float(value) for ints, floats, bools, numpy and 0-d torch scalars; a TypeError names the metric."""
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"metric {name!r} must be a number, got {value!r}") from err


def log_artifacts(run_id: str, local_path: str | Path, artifact_path: str | None = None) -> None:
    """Upload a file or a directory's contents to the run, under `artifact_path` (run root if None)."""
    from mlflow import MlflowClient

    path = Path(local_path)
    if not path.exists():
        raise FileNotFoundError(f"cannot log {path} to MLflow run {run_id}: no such file or directory")
    client = MlflowClient()
    if path.is_dir():
        client.log_artifacts(run_id, str(path), artifact_path)
    else:
        client.log_artifact(run_id, str(path), artifact_path)
