"""MlflowStepLogger: a transformers TrainerCallback that logs training metrics to an existing run.

Kept apart from the rest of powerflow.tracking because it subclasses a transformers class:
`from powerflow.tracking import MlflowStepLogger` imports transformers only when asked for.
Unlike transformers' own MLflowCallback it starts no run and reads no environment: it logs to the
child run the pipeline created (by id), so training in any process lands in the right run.
"""

from __future__ import annotations

import numbers

from transformers import TrainerCallback


class MlflowStepLogger(TrainerCallback):
    """On every Trainer log event, log each numeric value to `run_id` at step = state.global_step.

    Names: `prefix` + key (`loss` -> `train/loss`, `powerflow/log_z` -> `train/powerflow/log_z`);
    a key that already starts with `prefix` is kept as is. Non-numeric values (strings, lists) are
    skipped. Only the main process logs (state.is_world_process_zero), once per event, in one batch.
    """

    def __init__(self, run_id: str, prefix: str = "train/"):
        self.run_id = run_id
        self.prefix = prefix

    def metric_name(self, key: str) -> str:
        """`prefix` + key, unless key already carries the prefix."""
        return key if key.startswith(self.prefix) else self.prefix + key

    def on_log(self, args, state, control, logs=None, **kwargs):
        from powerflow.tracking.runs import log_metrics

        if not logs or not state.is_world_process_zero:
            return
        numeric = {
            self.metric_name(key): float(value)
            for key, value in logs.items()
            if isinstance(value, numbers.Real) and not isinstance(value, bool)
        }
        if numeric:
            log_metrics(self.run_id, numeric, step=state.global_step)
