"""The `register` stage: put an evaluated checkpoint into the MLflow Model Registry.

Only a checkpoint whose evaluation on disk records its current sha256 is registered, tagged with
where it came from and its headline evaluation numbers.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from powerflow.config import PipelineConfig
from powerflow.errors import UserError
from powerflow.io import sha256_of_path, write_json_atomic
from powerflow.tracking.registry import CHECKPOINT_SHA_TAG
from powerflow.pipeline.layout import (
    check_baseline, layout_of, require_input, training_seed,
)
from powerflow.member import Member
from powerflow.pipeline.runs import run_tags, tracking_experiment, training_run_id


def register_baseline(cfg: PipelineConfig, method: str) -> dict:
    """Register models/policies/<method> like a Power-Flow policy (tag method=<method>)."""
    method = check_baseline(method)
    return register_checkpoint_of(cfg, method, None, None, method)


def register_policy(cfg: PipelineConfig, member: Member) -> dict:
    """Register models/policies/<name> in the Model Registry (idempotent); write outputs/register/<name>.json."""
    return register_checkpoint_of(cfg, member.name, member.alpha, member.objective, seed=member.seed)


def register_checkpoint_of(cfg: PipelineConfig, name: str, alpha: float | None, objective: str | None,
                           method: str | None = None, seed: int | None = None) -> dict:
    """Register one trained member's checkpoint after its evaluation; write outputs/register/<name>.json.

    Only an evaluated checkpoint is registered: outputs/eval/<name>/ must exist and record the
    checkpoint's current sha256 (a crashed or stale evaluation registers nothing). The version is
    tagged with where it came from (`run_tags`) and its headline evaluation numbers (eval/...).
    """
    from powerflow import tracking
    from powerflow.data.prepare import load_prepared

    lay = layout_of(cfg)
    checkpoint = require_input(lay.policy(name), "train")
    checksum, metrics = evaluated_checkpoint(cfg, name, checkpoint)
    _p, _a, manifest = load_prepared(require_input(lay.prepared, "prepare"))
    tracking_experiment(cfg)
    model_name = tracking.registered_model_name(cfg.tracking, cfg.model.name_or_path)
    tags = run_tags(cfg, alpha, objective, manifest.get("prompts_sha256", ""), method, seed) | evaluation_tags(metrics)
    version = tracking.register_checkpoint(training_run_id(cfg, name), checkpoint, model_name, tags,
                                           checksum=checksum)
    if not version.created:  # registered before: its evaluation may have been rerun since
        tracking.set_version_tags(model_name, version.version, evaluation_tags(metrics))
    record = asdict(version) | {"alpha": alpha, "objective": objective, "run": name}
    if training_seed(cfg, method, seed) is not None:
        record["seed"] = training_seed(cfg, method, seed)
    if method is not None:
        record["method"] = method
    created = record.pop("created")  # kept out of the file: registering again must not change it
    write_json_atomic(record, lay.registration(name))
    return record | {"created": created}


class StaleEvaluationError(UserError):
    """The evaluation on disk is of other bytes than the checkpoint about to be registered."""


# Evaluation numbers a registered version carries as tags (eval/<family>/<metric>), for every
# eval family the run has them for (reasoning, open_ended, math500, ...).
EVAL_TAG_METRICS = ("accuracy_greedy", "accuracy_mean", "coverage", "validity", "semantic_diversity")
# Metric prefixes that are not eval families.
_NOT_FAMILIES = ("cost", "eval", "diag", "exact", "sampler", "registered", "train")


def evaluated_checkpoint(cfg: PipelineConfig, name: str, checkpoint: Path) -> tuple[str, dict]:
    """(sha256 of `checkpoint`, its evaluation metrics) once outputs/eval/<name>/ is an evaluation of
    exactly these bytes; a MissingInputError / StaleEvaluationError (nothing registered) otherwise."""
    out = layout_of(cfg).evaluation(name)
    metrics = json.loads(require_input(out / "metrics.json", "evaluate").read_text())
    evaluated = json.loads(require_input(out / "settings.json", "evaluate").read_text()).get(CHECKPOINT_SHA_TAG)
    checksum = sha256_of_path(checkpoint)
    if evaluated != checksum:
        raise StaleEvaluationError(
            f"{out} is not an evaluation of {checkpoint} (checkpoint_sha256 {str(evaluated)[:12]} there, "
            f"{checksum[:12]} now): evaluate it again first (`powerflow evaluate --run {name}` or `dvc repro`).")
    return checksum, metrics


def evaluation_tags(metrics: dict) -> dict[str, str]:
    """Headline evaluation numbers as version tags: {"eval/reasoning/accuracy_mean": "0.4375", ...},
    the EVAL_TAG_METRICS of every family (`<family>/<metric>` keys, breakdowns left out)."""
    tags = {}
    for key, value in metrics.items():
        family, _, metric = key.partition("/")
        if metric in EVAL_TAG_METRICS and family not in _NOT_FAMILIES and isinstance(value, (int, float)):
            tags[f"eval/{key}"] = f"{float(value):.6g}"
    return tags
