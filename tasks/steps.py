"""One Prefect task per pipeline step in powerflow.pipeline.

Compute steps (prepare, pretrain, train, evaluate, report) run once: a failure there is a bug or
bad input, and repeating it only burns time. Steps that talk to the tracking server retry, since
a server restart or a locked SQLite file is transient; a user error (bad params, missing input)
is never retried. Every task records its wall time (powerflow.timing) so the CLI can report how
much of a command was orchestration.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from powerflow.errors import UserError
from powerflow.pipeline import base, evaluate, prepare, register, report, train
from powerflow.timing import measured


def retry_unless_user_error(task_, task_run, state) -> bool:
    """Retry condition: anything but a UserError (whose message already says how to fix it)."""
    try:
        state.result()
    except UserError:
        return False
    except Exception:  # noqa: BLE001 - any other failure of a tracking call may be transient
        return True
    return False


_TASK_OF: dict = {}  # library step function -> its task


def _compute(fn, name: str):
    _TASK_OF[fn] = task(name=name, cache_policy=NO_CACHE, persist_result=False)(measured(fn))
    return _TASK_OF[fn]


def _tracking(fn, name: str):
    _TASK_OF[fn] = task(name=name, cache_policy=NO_CACHE, persist_result=False, retries=3,
                        retry_delay_seconds=[2, 5, 10], retry_condition_fn=retry_unless_user_error)(measured(fn))
    return _TASK_OF[fn]


def as_task(fn):
    """The Prefect task of a pipeline step (a `powerflow.pipeline.layout.Step`, for the stage chains)."""
    return _TASK_OF[fn]


prepare_prompts = _compute(prepare.prepare_prompts, "prepare-prompts")
pretrain_base = _compute(base.pretrain_base, "pretrain-base")
train_policy = _compute(train.train_policy, "train-policy")
train_baseline = _compute(train.train_baseline, "train-baseline")
evaluate_target = _compute(evaluate.evaluate_target, "evaluate")
evaluate_registered = _compute(evaluate.evaluate_registered, "evaluate-registered")
write_sweep_report = _compute(report.write_sweep_report, "write-report")

open_training_run = _tracking(train.open_training_run, "open-training-run")
close_training_run = _tracking(train.close_training_run, "close-training-run")
register_policy = _tracking(register.register_policy, "register-policy")
register_baseline = _tracking(register.register_baseline, "register-baseline")
open_member_run = _tracking(train.open_member_run, "open-member-run")
close_member_run = _tracking(train.close_member_run, "close-member-run")
record_evaluation = _tracking(evaluate.record_evaluation, "record-evaluation")
set_registry_aliases = _tracking(report.set_registry_aliases, "set-registry-aliases")
record_report = _tracking(report.record_report, "record-report")
