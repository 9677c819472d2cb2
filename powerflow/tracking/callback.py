"""MlflowStepLogger: a transformers TrainerCallback that logs training metrics to an existing run.

Kept apart from the rest of powerflow.tracking because it subclasses a transformers class:
`from powerflow.tracking.callback import MlflowStepLogger` imports transformers (the package alone does not).
Unlike transformers' own MLflowCallback it starts no run and reads no environment: it logs to the
child run the pipeline created (by id), so training in any process lands in the right run.
"""

from __future__ import annotations

import logging
import numbers
import time
from pathlib import Path

from transformers import TrainerCallback

from powerflow.tracking.pending import PendingMetrics, bounded_requests

logger = logging.getLogger(__name__)


class MlflowStepLogger(TrainerCallback):
    """On every Trainer log event, log each numeric value to `run_id` at step = state.global_step.

    Names: `prefix` + key (`loss` -> `train/loss`, `powerflow/log_z` -> `train/powerflow/log_z`);
    a key that already starts with `prefix` is kept as is. Non-numeric values (strings, lists) are
    skipped. Only the main process logs (state.is_world_process_zero), once per event, in one batch.

    With a `spool` file, training never fails or waits because of the tracking server: each event
    is appended to the file (`PendingMetrics`) and the file sent with no retries and a `timeout_s`
    bound per request. While the server does not answer the events stay in the file, and sending
    is tried again at the next event `retry_interval_s` later; `close_member_run` sends the rest.
    A step whose loss the run already has (logged before the trainer was killed and resumed) is
    not logged twice. Without a spool, each event is logged directly and a failure raises.
    """

    def __init__(self, run_id: str, prefix: str = "train/", spool: str | Path | None = None,
                 timeout_s: float = 5.0, retry_interval_s: float = 10.0):
        self.run_id = run_id
        self.prefix = prefix
        self.pending = PendingMetrics(spool) if spool is not None else None
        self.timeout_s = timeout_s
        self.retry_interval_s = retry_interval_s
        self.already_logged: set[int] = set()
        self.unreachable_since: float | None = None
        self._next_attempt = 0.0

    def metric_name(self, key: str) -> str:
        """`prefix` + key, unless key already carries the prefix."""
        return key if key.startswith(self.prefix) else self.prefix + key

    def on_train_begin(self, args, state, control, **kwargs):
        """Note the steps this run already has a loss for (a resumed run logged them before)."""
        from powerflow.tracking.runs import logged_steps

        if self.pending is None or not state.is_world_process_zero:
            return
        try:
            with bounded_requests(self.timeout_s):
                self.already_logged = logged_steps(self.run_id, self.metric_name("loss"))
        except Exception as err:  # noqa: BLE001 - an unreachable server must not stop training
            self._unreachable(err)

    def on_log(self, args, state, control, logs=None, **kwargs):
        from powerflow.tracking.runs import log_metrics

        if not logs or not state.is_world_process_zero:
            return
        numeric = {
            self.metric_name(key): float(value)
            for key, value in logs.items()
            if isinstance(value, numbers.Real) and not isinstance(value, bool)
        }
        if not numeric:
            return
        if self.pending is None:
            log_metrics(self.run_id, numeric, step=state.global_step)
            return
        if "loss" in logs and state.global_step in self.already_logged:
            return
        self.pending.append(self.run_id, numeric, state.global_step)
        self.send_pending()

    def on_train_end(self, args, state, control, **kwargs):
        if self.pending is not None and state.is_world_process_zero:
            self.send_pending(force=True)

    def send_pending(self, force: bool = False) -> None:
        """Send the spool file unless the server failed less than retry_interval_s ago (or `force`)."""
        if not force and time.monotonic() < self._next_attempt:
            return
        try:
            with bounded_requests(self.timeout_s):
                self.pending.send()
        except Exception as err:  # noqa: BLE001 - kept on disk; closing the run sends it or fails loudly
            self._unreachable(err)
            return
        if self.unreachable_since is not None:
            logger.warning("MLflow tracking answers again: the step metrics kept in %s were logged to run %s.",
                           self.pending.path, self.run_id)
            self.unreachable_since = None

    def _unreachable(self, err: Exception) -> None:
        self._next_attempt = time.monotonic() + self.retry_interval_s
        if self.unreachable_since is None:
            self.unreachable_since = time.monotonic()
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            logger.warning("MLflow tracking did not take the step metrics of run %s (%s): training goes on; they are "
                           "kept in %s and sent when the server answers.", self.run_id, first,
                           self.pending.path if self.pending is not None else "memory")
