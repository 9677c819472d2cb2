"""Where runs are tracked: the `tracking:` config, the tracking URI, and connecting to it.

The default store is a SQLite file in the project directory, `sqlite:////abs/project/mlflow.db`
(MLflow 3.17 refuses the old `./mlruns` file store), with artifacts under
`/abs/project/mlartifacts`. Both are absolute because DVC may run a stage from a temporary copy of
the repository: a relative path would put the runs into that copy and lose them.

`MLFLOW_TRACKING_URI` in the environment overrides `tracking.uri`, so the same params.yaml works
against a shared server (`MLFLOW_TRACKING_URI=http://mlflow:5000 dvc repro`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from powerflow.errors import ConfigError, UserError

logger = logging.getLogger(__name__)

DB_FILENAME = "mlflow.db"
ARTIFACTS_DIRNAME = "mlartifacts"
REMOTE_SCHEMES = ("http", "https")


class TrackingUnavailableError(UserError):
    """The tracking store cannot be reached or opened; the message names the URI and the fix."""


@dataclass(frozen=True)
class TrackingConfig:
    """Where and under which names MLflow records runs and models. Section `tracking:` of params.yaml."""

    uri: str | None = field(
        default=None,
        metadata={
            "help": "Tracking URI (sqlite:////abs/path/mlflow.db, http://host:5000, postgresql://...). "
            "null: sqlite:///<project root>/mlflow.db. The environment variable MLFLOW_TRACKING_URI "
            "overrides it; a relative sqlite path is taken relative to the project root."
        },
    )
    experiment: str = field(default="powerflow", metadata={"help": "MLflow experiment name of the sweeps."})
    artifact_root: str | None = field(
        default=None,
        metadata={
            "help": "Artifact location of the experiment, set when the experiment is created: a local "
            "path (made absolute against the project root) or a URI (s3://..., mlflow-artifacts:/...). "
            "null: <project root>/mlartifacts for a local store; the server's default for an http(s) server."
        },
    )
    registered_model: str | None = field(
        default=None,
        metadata={
            "help": "Model Registry name of the checkpoints. null: 'powerflow-' + a slug of the base model "
            "name (one registered model per base model)."
        },
    )
    timeout_s: float = field(
        default=5.0,
        metadata={"help": "Seconds to wait for a tracking server to answer its /health probe before failing."},
    )
    outage_wait_s: float = field(
        default=120.0,
        metadata={
            "help": "Seconds the end of a training run waits for an unreachable tracking server before failing "
            "with where its results are kept (training itself never waits: its step metrics are kept on disk "
            "and sent when the server answers again). 0: fail at once."
        },
    )

    def __post_init__(self):
        section = "tracking"
        if self.uri is not None:
            scheme = urlparse(self.uri).scheme
            if scheme in ("", "file") or re.fullmatch(r"[A-Za-z]", scheme):  # a bare path or C:\...
                raise ConfigError(
                    f"{section}.uri={self.uri!r} is a file store, which MLflow 3.17 refuses: use "
                    f"sqlite:///{DB_FILENAME} (a file in the project) or an http(s):// server, or null for the default."
                )
        if not self.experiment.strip():
            raise ConfigError(f"{section}.experiment is empty: name the MLflow experiment, e.g. powerflow.")
        if self.registered_model is not None and (
            not self.registered_model.strip() or any(c in self.registered_model for c in "/:")
        ):
            raise ConfigError(
                f"{section}.registered_model={self.registered_model!r}: a registered model name must be "
                "non-empty without '/' or ':', e.g. powerflow-qwen2.5-math-7b (or null for the default)."
            )
        if not self.timeout_s > 0:
            raise ConfigError(f"{section}.timeout_s={self.timeout_s}: must be > 0 seconds, e.g. 5.")
        if not self.outage_wait_s >= 0:
            raise ConfigError(f"{section}.outage_wait_s={self.outage_wait_s}: must be >= 0 seconds, e.g. 120.")


def resolve_tracking_uri(cfg: TrackingConfig, project_root: str | Path) -> str:
    """The tracking URI to use: env MLFLOW_TRACKING_URI > tracking.uri > sqlite:///<root>/mlflow.db.

    A relative SQLite path in tracking.uri (sqlite:///mlflow.db) is made absolute against the
    project root; the environment variable is used verbatim.
    """
    from_env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if from_env:
        return from_env
    root = Path(project_root).resolve()
    if cfg.uri is None:
        return f"sqlite:///{root / DB_FILENAME}"
    return absolute_sqlite_uri(cfg.uri, root)


def absolute_sqlite_uri(uri: str, root: Path) -> str:
    """sqlite:///rel/path.db -> sqlite:////<root>/rel/path.db; other URIs (and :memory:) unchanged."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return uri
    path = uri[len(prefix) :]
    if not path or path.startswith("/") or path == ":memory:":
        return uri
    return f"{prefix}{root / path}"


def resolve_artifact_location(cfg: TrackingConfig, tracking_uri: str, project_root: str | Path) -> str | None:
    """Artifact location for a new experiment: an absolute local path or a URI; None = the server decides."""
    if cfg.artifact_root is None:
        if urlparse(tracking_uri).scheme in REMOTE_SCHEMES:
            return None  # the server's --artifacts-destination (proxied mlflow-artifacts:/)
        return str(Path(project_root).resolve() / ARTIFACTS_DIRNAME)
    if urlparse(cfg.artifact_root).scheme not in ("", "file"):
        return cfg.artifact_root
    path = Path(cfg.artifact_root.removeprefix("file://")).expanduser()
    return str(path if path.is_absolute() else (Path(project_root).resolve() / path))


def probe_server(uri: str, timeout_s: float) -> None:
    """Fail fast when an http(s) tracking server does not answer GET <uri>/health within timeout_s.

    MLflow's own client retries a refused connection for minutes (7 retries, exponential backoff);
    this probe makes an unreachable server one clear error in seconds.
    """
    import requests

    health = uri.rstrip("/") + "/health"
    # The same TLS settings as MLflow's client: a custom CA bundle, or no verification if asked.
    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true"
    verify = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or not insecure
    try:
        response = requests.get(health, timeout=timeout_s, verify=verify)
    except requests.RequestException as err:
        raise TrackingUnavailableError(
            f"MLflow tracking server {uri} is unreachable ({type(err).__name__} within {timeout_s:g} s): start it "
            f"(e.g. `mlflow server --backend-store-uri sqlite:///mlflow.db --port {urlparse(uri).port or 5000}`), "
            "or point MLFLOW_TRACKING_URI / tracking.uri at a running server, or unset both to use the local "
            "sqlite store."
        ) from err
    if response.status_code >= 500:
        raise TrackingUnavailableError(
            f"MLflow tracking server {uri} answered {health} with HTTP {response.status_code}: check the "
            "server's logs and restart it, or point MLFLOW_TRACKING_URI / tracking.uri at a healthy server."
        )


def connect(cfg: TrackingConfig, project_root: str | Path) -> str:
    """Point MLflow at the tracking store, check it answers, and get or create the experiment.

    Sets the process-wide tracking URI (mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI, so
    child processes inherit it); every other function of powerflow.tracking uses that store.
    A new experiment gets the absolute artifact location of `resolve_artifact_location`; an
    existing one keeps its own (a warning says so when it differs). Returns the experiment id.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = resolve_tracking_uri(cfg, project_root)
    scheme = urlparse(uri).scheme
    if scheme in REMOTE_SCHEMES:
        probe_server(uri, cfg.timeout_s)
    elif scheme == "sqlite":
        db_path = uri[len("sqlite:///") :]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    artifact_location = resolve_artifact_location(cfg, uri, project_root)
    try:
        return get_or_create_experiment(cfg.experiment, artifact_location)
    except MlflowException as err:
        raise TrackingUnavailableError(
            f"MLflow tracking store {uri} could not be opened ({err.message.splitlines()[0]}): check that the "
            "path or server is right and writable, or set MLFLOW_TRACKING_URI / tracking.uri to another store."
        ) from err
    except Exception as err:  # sqlite/sqlalchemy errors surface unwrapped (locked, read-only, corrupt)
        if isinstance(err, UserError):
            raise
        raise TrackingUnavailableError(
            f"MLflow tracking store {uri} could not be opened ({type(err).__name__}: {str(err).splitlines()[0]}): "
            "check that the path is right and writable, or set MLFLOW_TRACKING_URI / tracking.uri to another store."
        ) from err


def get_or_create_experiment(name: str, artifact_location: str | None) -> str:
    """The id of the active experiment `name`, created with `artifact_location` if missing.

    Two processes creating it at once is fine: the loser of the race reads the winner's experiment.
    A deleted experiment of that name is a UserError (MLflow keeps its name reserved).
    """
    from mlflow import MlflowClient
    from mlflow.entities import LifecycleStage
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    for attempt in range(2):
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            break
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS" or attempt:
                raise
            time.sleep(0.1)  # another process created it between our lookup and create: read it
    if experiment.lifecycle_stage == LifecycleStage.DELETED:
        raise UserError(
            f"MLflow experiment {name!r} (id {experiment.experiment_id}) is deleted: restore it with "
            f"`mlflow experiments restore --experiment-id {experiment.experiment_id}` or set tracking.experiment "
            "to another name."
        )
    if artifact_location is not None and not same_location(experiment.artifact_location, artifact_location):
        logger.warning(
            "MLflow experiment %r keeps its artifact location %s (tracking.artifact_root resolves to %s, which "
            "applies only to new experiments).",
            name,
            experiment.artifact_location,
            artifact_location,
        )
    return experiment.experiment_id


def same_location(a: str, b: str) -> bool:
    """Whether two artifact locations name the same place (file:// URI vs plain path)."""
    return a.removeprefix("file://").rstrip("/") == b.removeprefix("file://").rstrip("/")
