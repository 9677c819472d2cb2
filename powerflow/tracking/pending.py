"""Metrics the tracking server did not take: kept on disk, sent when it answers again.

Training never waits for the tracking server. `MlflowStepLogger` appends each step's metrics to a
JSON-lines file (outputs/train/<name>/mlflow_pending.jsonl), sends the file and removes it; while
the server is down the lines stay and training goes on. Closing the run sends what is left
(`powerflow.pipeline.train.close_member_run`), waiting up to `tracking.outage_wait_s` for the server.

    pending = PendingMetrics(out / PENDING_FILE)
    pending.append(run_id, {"train/loss": 0.3}, step=7)
    with bounded_requests(timeout_s=5):
        pending.send()          # raises while the server is unreachable; the file is kept

Each line is one log event: {"run_id", "step", "timestamp" (ms), "metrics": {name: value}}. Sending
keeps the original timestamps, and a (run, metric, step) written twice (a step trained again
after a resume) is sent once, with its last value.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from powerflow.tracking.store import TrackingUnavailableError

PENDING_FILE = "mlflow_pending.jsonl"
# MLflow's HTTP client reads these on every request (mlflow.environment_variables); its defaults
# retry a refused connection 7 times with exponential backoff, for minutes.
RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
TIMEOUT_ENV = "MLFLOW_HTTP_REQUEST_TIMEOUT"


@contextlib.contextmanager
def bounded_requests(timeout_s: float | None = None, retries: int = 0) -> Iterator[None]:
    """MLflow HTTP requests made inside fail after `retries` retries of at most `timeout_s` each.

    The caller retries on its own schedule instead (a step logger at the next step, closing a run
    until tracking.outage_wait_s). Sets the two environment variables MLflow reads per request and
    restores them on exit (process-wide while inside: use it around a few tracking calls only).
    """
    values = {RETRIES_ENV: str(retries)}
    if timeout_s is not None:
        values[TIMEOUT_ENV] = str(max(1, round(timeout_s)))
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def is_unreachable(err: BaseException) -> bool:
    """Whether a tracking call failed because the store did not answer (worth retrying later),
    rather than because it refused the request (a bug or bad input, which retrying repeats)."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(err, (TrackingUnavailableError, requests.ConnectionError, requests.Timeout, ConnectionError,
                        TimeoutError)):
        return True
    if isinstance(err, MlflowException):
        # the REST client wraps a refused/reset connection or a timeout as "API request to <url> failed ..."
        return str(err.message).startswith("API request to") or err.get_http_status_code() >= 500
    return False


class PendingMetrics:
    """A JSON-lines file of metric log events not yet on the tracking server (see the module doc)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, run_id: str, metrics: Mapping[str, float], step: int, timestamp_ms: int | None = None) -> None:
        """Add one log event (flushed to the OS at once: it survives the process being killed)."""
        event = {"run_id": run_id, "step": int(step), "timestamp": timestamp_ms or int(time.time() * 1000),
                 "metrics": {k: float(v) for k, v in metrics.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(event) + "\n")

    def events(self) -> list[dict]:
        """Every complete line of the file, oldest first (a line cut off by a kill is skipped)."""
        if not self.path.is_file():
            return []
        events = []
        for line in self.path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def __len__(self) -> int:
        return sum(len(e["metrics"]) for e in self.events())

    def send(self) -> int:
        """Log every pending metric to its run, then remove the file; returns how many were sent.

        Raises what the tracking client raises (the file is kept). Sending again after a partial
        failure is harmless: MLflow stores a metric with the same key, step, timestamp and value once.
        """
        from powerflow.tracking.runs import log_metric_events

        latest: dict[tuple[str, str, int], tuple[int, float]] = {}
        for event in self.events():
            for name, value in event["metrics"].items():
                latest[(event["run_id"], name, event["step"])] = (event["timestamp"], value)
        by_run: dict[str, list[tuple[str, float, int, int]]] = {}
        for (run_id, name, step), (timestamp, value) in latest.items():
            by_run.setdefault(run_id, []).append((name, value, step, timestamp))
        for run_id, items in by_run.items():
            log_metric_events(run_id, items)
        self.path.unlink(missing_ok=True)
        return len(latest)
