"""Checkpoints in the MLflow Model Registry: register once, alias by role, load back with one call.

One registered model per base model (`registered_model_name`); each trained checkpoint is one
version of it, tagged with where it came from (alpha, objective, base_model, prompts_sha256,
git_commit, params_sha256 from the caller, checkpoint_sha256 added here). The report stage points
an alias per role at the winning version (`set_alias(name, "best-reasoning", "3")`); consumers
load `models:/<name>@best-reasoning`. Aliases and tags only: stages are deprecated in MLflow.

What a version holds: an MLflow pyfunc model whose code is `policy_model.py` (models-from-code, no
pickle) and whose artifact `checkpoint` is the transformers directory as trained (weights, config,
tokenizer, and extras such as logz_head.safetensors). `mlflow.transformers` is not used: it is
tested only up to transformers 5.17. `load_policy(uri).predict(prompts)` generates;
`download_checkpoint(uri, dir)` gives the plain directory for `AutoModelForCausalLM`.

Every function uses the tracking URI set by `powerflow.tracking.connect` (or MLFLOW_TRACKING_URI
in a process that did not call it).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from powerflow.errors import UserError
from powerflow.io import atomic_directory, sha256_of_path
from powerflow.tracking.runs import quote
from powerflow.tracking.store import TrackingConfig

CHECKPOINT_SHA_TAG = "checkpoint_sha256"
# Tags the pipeline puts on every version (the caller supplies them; checkpoint_sha256 is added here).
VERSION_TAG_KEYS = ("alpha", "objective", "method", "base_model", "prompts_sha256", "git_commit", "params_sha256")
LOGGED_MODEL_NAME = "policy"
POLICY_CODE = Path(__file__).with_name("policy_model.py")
CHECKPOINT_ARTIFACT = "checkpoint"  # = policy_model.CHECKPOINT_ARTIFACT (that file imports no powerflow)
# Packages the pyfunc needs at load time, pinned to the versions installed when it is logged. Listed
# explicitly: MLflow's inference of requirements re-imports the model and may reach the network.
RUNTIME_PACKAGES = ("mlflow", "torch", "transformers", "tokenizers", "safetensors")
MODEL_URI_PATTERN = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/@]+))")


class ModelVersionNotFoundError(UserError):
    """A models:/ URI that names no registered version (unknown model, version or alias)."""


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a registered model; `uri` = models:/<name>/<version>."""

    name: str
    version: str
    run_id: str
    created: bool
    uri: str


def slug(text: str) -> str:
    """Lower-case letters, digits, '.', '_' and '-' only; other runs of characters become '-'."""
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")


def registered_model_name(cfg: TrackingConfig, base_model: str) -> str:
    """tracking.registered_model, else "powerflow-" + slug(base model name).

    The base model name is a hub id (Qwen/Qwen2.5-Math-7B -> powerflow-qwen-qwen2.5-math-7b) or, for
    a local directory (a path starting with '/', '.' or '~'), that directory's name, so no machine
    path ends up in the registry.
    """
    if cfg.registered_model is not None:
        return cfg.registered_model
    name = base_model.rstrip("/\\")
    if name.startswith(("/", ".", "~")) or (os.sep in name and Path(name).is_dir()):
        name = Path(name).name
    return "powerflow-" + (slug(name) or "model")


def pip_requirements() -> list[str]:
    """Pinned requirements of the pyfunc (local build suffixes like +cpu dropped: not on PyPI)."""
    return [f"{pkg}=={importlib.metadata.version(pkg).split('+')[0]}" for pkg in RUNTIME_PACKAGES]


def policy_signature():
    """Generation params with their defaults; no input schema, so predict() sees its input as given.

    (A one-column string schema would make MLflow pass the *first* column of any DataFrame, so
    a frame whose "prompt" column is not first would generate from the wrong text.)
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=None,
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema(
            [
                ParamSpec("max_new_tokens", "long", 32),
                ParamSpec("temperature", "double", 1.0),
                ParamSpec("do_sample", "boolean", True),
                ParamSpec("seed", "long", 0),
            ]
        ),
    )


def find_versions_by_checksum(client, model_name: str, checkpoint_sha256: str, run_id: str | None = None) -> list:
    """Versions of `model_name` tagged with this checkpoint checksum (and from run `run_id` when
    given), oldest first."""
    versions = client.search_model_versions(
        f"name = '{quote(model_name)}' AND tags.{CHECKPOINT_SHA_TAG} = '{checkpoint_sha256}'"
    )
    if run_id is not None:
        versions = [v for v in versions if v.run_id == run_id]
    return sorted(versions, key=lambda v: int(v.version))


def as_registered(version, created: bool) -> RegisteredVersion:
    """RegisteredVersion of an MLflow ModelVersion."""
    return RegisteredVersion(
        name=version.name,
        version=str(version.version),
        run_id=version.run_id or "",
        created=created,
        uri=f"models:/{version.name}/{version.version}",
    )


def register_checkpoint(
    run_id: str, checkpoint_dir: str | Path, model_name: str, tags: dict[str, str], checksum: str | None = None
) -> RegisteredVersion:
    """Log `checkpoint_dir` as a pyfunc model of run `run_id` and register it as a version of `model_name`.

    Idempotent by content and run: the version gets the tag checkpoint_sha256 =
    sha256_of_path(checkpoint_dir); if a version of `model_name` from the same run already carries
    that checksum, it is returned (created=False) and nothing is logged. The same bytes from another
    run (two methods that left the base unchanged) are another version, with that run's tags. Two
    processes registering the same checkpoint of one run at once both end up with the older version
    (the newer one is deleted). `tags` (see VERSION_TAG_KEYS) go on the version and
    on the logged model; values are stored as strings. `checksum`: sha256_of_path(checkpoint_dir)
    when the caller has just computed it (a 7B checkpoint takes seconds to hash).
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import Model

    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / "config.json").is_file():
        raise UserError(
            f"{checkpoint_dir} is not a transformers model directory (no config.json): pass the directory "
            "that save_pretrained wrote."
        )
    checksum = checksum or sha256_of_path(checkpoint_dir)
    client = MlflowClient()
    existing = find_versions_by_checksum(client, model_name, checksum, run_id)
    if existing:
        return as_registered(existing[0], created=False)

    version_tags = {**{k: str(v) for k, v in tags.items()}, CHECKPOINT_SHA_TAG: checksum}
    run = client.get_run(run_id)
    logged = client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=LOGGED_MODEL_NAME,
        source_run_id=run_id,
        tags=version_tags,
        params=run.data.params,
        model_type="powerflow-policy",
    )
    Model.log(
        artifact_path=None,  # deprecated in favour of name, but still a required argument
        name=LOGGED_MODEL_NAME,
        flavor=mlflow.pyfunc,
        run_id=run_id,
        model_id=logged.model_id,
        python_model=str(POLICY_CODE),
        artifacts={CHECKPOINT_ARTIFACT: str(checkpoint_dir)},
        signature=policy_signature(),
        pip_requirements=pip_requirements(),
    )
    version = mlflow.register_model(f"models:/{logged.model_id}", model_name, tags=version_tags)
    oldest = find_versions_by_checksum(client, model_name, checksum, run_id)[0]
    if str(oldest.version) != str(version.version):  # lost a registration race: keep one version
        client.delete_model_version(model_name, str(version.version))
        return as_registered(oldest, created=False)
    return as_registered(version, created=True)


def set_version_tags(model_name: str, version: str | int, tags: dict[str, str]) -> None:
    """Set (or overwrite) tags on one registered version; values are stored as strings."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, str(value))


def sweep_alias(sweep: str, alias: str) -> str:
    """The alias of one sweep's pick, "<sweep>-<alias>": every run of characters an alias cannot hold
    (anything but letters, digits, '_' and '-') becomes one '-'. ("sweep 2.1", "best-reasoning") ->
    "sweep-2-1-best-reasoning"."""
    return f"{re.sub(r'[^A-Za-z0-9_-]+', '-', sweep).strip('-') or 'sweep'}-{alias}"


def set_alias(model_name: str, alias: str, version: str | int) -> None:
    """Point `models:/<model_name>@<alias>` at `version` (moving the alias if it pointed elsewhere)."""
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(model_name, alias, str(version))


def resolve_version(model_uri: str) -> RegisteredVersion:
    """The version a `models:/<name>/<version>` or `models:/<name>@<alias>` URI names (created=False)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    match = MODEL_URI_PATTERN.fullmatch(model_uri)
    if match is None:
        raise ModelVersionNotFoundError(
            f"{model_uri!r} is not a registered-model URI: write models:/<name>/<version> or models:/<name>@<alias>."
        )
    client = MlflowClient()
    name, version, alias = match["name"], match["version"], match["alias"]
    try:
        found = client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise
        raise ModelVersionNotFoundError(
            f"{model_uri} names no model version in the registry at {mlflow_tracking_uri()}: check the name and "
            f"version/alias (aliases are set by the report stage), or point MLFLOW_TRACKING_URI at the right store."
        ) from err
    return as_registered(found, created=False)


def version_tags(version: RegisteredVersion) -> dict[str, str]:
    """The tags of a registered version (alpha, objective, base_model, checkpoint_sha256, ...)."""
    from mlflow import MlflowClient

    return dict(MlflowClient().get_model_version(version.name, version.version).tags or {})


def mlflow_tracking_uri() -> str:
    """The tracking URI MLflow is using now."""
    import mlflow

    return mlflow.get_tracking_uri()


def download_checkpoint(model_uri: str, dst_dir: str | Path) -> Path:
    """Download a registered version's transformers directory to `dst_dir` (replaced whole); return it.

    The result loads with AutoModelForCausalLM/AutoTokenizer.from_pretrained(dst_dir); extra files
    logged with the checkpoint (logz_head.safetensors, powerflow_config.json) come along. Written
    atomically: on failure `dst_dir` is left as it was.
    """
    import mlflow
    from mlflow import MlflowClient

    version = resolve_version(model_uri)
    source = MlflowClient().get_model_version_download_uri(version.name, version.version)
    flavor = mlflow.models.get_model_info(version.uri).flavors["python_function"]
    relative = flavor["artifacts"][CHECKPOINT_ARTIFACT]["path"]  # artifacts/<checkpoint dir name>
    dst_dir = Path(dst_dir)
    with atomic_directory(dst_dir) as tmp:
        staging = tmp / ".download"  # MLflow downloads into <dst_path>/<dir name>; move its files up
        downloaded = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{source.rstrip('/')}/{relative}", dst_path=str(staging)
        )
        for child in Path(downloaded).iterdir():
            child.rename(tmp / child.name)
        shutil.rmtree(staging)
    return dst_dir


def load_policy(model_uri: str) -> Any:
    """The registered version as an mlflow.pyfunc.PyFuncModel that generates text.

        policy = load_policy("models:/powerflow-base@best-reasoning")
        policy.predict(["a b", "c"], params={"max_new_tokens": 32, "temperature": 1.0,
                                              "do_sample": True, "seed": 0})  # -> list[str]

    The input may also be a DataFrame with a "prompt" column. Generation stops at the tokenizer's
    EOS; completions exclude the prompt and special tokens. Loads on a GPU when there is one.
    """
    import mlflow.pyfunc

    version = resolve_version(model_uri)
    return mlflow.pyfunc.load_model(version.uri)
