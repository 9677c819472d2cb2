"""The accelerate config that `train.accelerate_config` names, checked when params.yaml is loaded."""

from __future__ import annotations

from pathlib import Path

from powerflow.errors import ConfigError


def load_accelerate_config(path: str | Path, key: str = "train.accelerate_config"):
    """The accelerate config at `path`, parsed by accelerate's own loader (a ClusterConfig).

    A missing file, bad YAML, an unknown key or a value accelerate refuses is a ConfigError naming
    `key` and the fix. Only single-site configs (compute_environment: LOCAL_MACHINE) are accepted.
    """
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import ComputeEnvironment

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}: {path} does not exist: name a config relative to the project root, e.g. "
                          "infra/accelerate/ddp.yaml (or fsdp.yaml, zero3.yaml), or write null for one process.")
    try:
        cluster = load_config_from_file(str(path))
    except Exception as err:  # accelerate raises TypeError/ValueError/YAMLError for a bad file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"{key}: {path} is not a valid accelerate config ({type(err).__name__}: {first}): "
                          f"write it with `accelerate config --config_file {path}` or start from "
                          "infra/accelerate/ddp.yaml.") from err
    if cluster.compute_environment != ComputeEnvironment.LOCAL_MACHINE:
        raise ConfigError(f"{key}: {path} has compute_environment {cluster.compute_environment.value}: powerflow "
                          "launches on this machine only; use compute_environment: LOCAL_MACHINE.")
    return cluster
