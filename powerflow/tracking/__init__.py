"""MLflow tracking for powerflow: where runs go, what they log, and the registry of checkpoints.

    cfg = section_from_dict(TrackingConfig, params.get("tracking"), "tracking")
    experiment_id = connect(cfg, project_root)                     # store.py
    parent = sweep_parent_run(experiment_id, "sweep-2025-01")      # runs.py
    run_id = start_child_run(experiment_id, parent, "alpha=4/la_tb", params, tags)
    trainer.add_callback(MlflowStepLogger(run_id))                 # callback.py (imports transformers)
    log_metrics(run_id, {"eval/reasoning/accuracy": 0.42})
    version = register_checkpoint(run_id, ckpt_dir, registered_model_name(cfg, base), tags)  # registry.py
    set_alias(version.name, "best-reasoning", version.version)
    load_policy(f"models:/{version.name}@best-reasoning").predict(["2+2="])

Importing this package imports neither mlflow nor transformers; each function imports what it
uses. `MlflowStepLogger` (a transformers TrainerCallback) is not re-exported here: import it from
powerflow.tracking.callback.
"""

from __future__ import annotations

from powerflow.tracking.registry import (
    CHECKPOINT_SHA_TAG,
    VERSION_TAG_KEYS,
    ModelVersionNotFoundError,
    RegisteredVersion,
    download_checkpoint,
    load_policy,
    register_checkpoint,
    registered_model_name,
    resolve_version,
    set_alias,
    set_version_tags,
    sweep_alias,
    version_tags,
)
from powerflow.tracking.pending import PENDING_FILE, PendingMetrics, bounded_requests, is_unreachable
from powerflow.tracking.runs import (
    ROLE_TAG,
    SWEEP_TAG,
    flatten_params,
    log_artifacts,
    log_metrics,
    logged_steps,
    metric_key,
    run_is_active,
    start_child_run,
    sweep_parent_run,
)
from powerflow.tracking.store import (
    TrackingConfig,
    TrackingUnavailableError,
    connect,
    resolve_tracking_uri,
)

__all__ = [
    "CHECKPOINT_SHA_TAG",
    "PENDING_FILE",
    "ROLE_TAG",
    "SWEEP_TAG",
    "VERSION_TAG_KEYS",
    "ModelVersionNotFoundError",
    "PendingMetrics",
    "RegisteredVersion",
    "TrackingConfig",
    "TrackingUnavailableError",
    "bounded_requests",
    "connect",
    "download_checkpoint",
    "flatten_params",
    "is_unreachable",
    "load_policy",
    "log_artifacts",
    "log_metrics",
    "logged_steps",
    "metric_key",
    "register_checkpoint",
    "registered_model_name",
    "resolve_tracking_uri",
    "resolve_version",
    "run_is_active",
    "set_alias",
    "set_version_tags",
    "start_child_run",
    "sweep_alias",
    "sweep_parent_run",
    "version_tags",
]

