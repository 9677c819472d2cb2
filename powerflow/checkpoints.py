"""What powerflow agrees to load as a model: safetensors weights that match their config, no foreign code.

Every model the pipeline loads goes through `powerflow.pipeline.loading.load_causal_lm`, which calls these
checks around `from_pretrained`:

    check_checkpoint_dir(path, trust_remote_code)   # before: weights format, file headers, auto_map
    model, info = AutoModelForCausalLM.from_pretrained(..., use_safetensors=True, output_loading_info=True)
    check_loading_info(path, info)                    # after: no missing, unexpected or resized weight

Refused, each with one `CheckpointError` (a UserError: the CLI prints one line and exits 2):
pickle-only weights (pytorch_model.bin can run code when unpickled), a truncated or corrupt
safetensors file, weights whose names or shapes do not match config.json (transformers would
re-initialise them at random with only a warning), and a config or tokenizer that asks for custom
code (`auto_map`) unless params.yaml sets model.trust_remote_code: true. The log Z head beside a
policy is checked the same way (`powerflow.trainer.load_logz_head`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from powerflow.errors import UserError

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
# Weight files of other formats: pickle (torch), TensorFlow, Flax. powerflow never loads them.
FOREIGN_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
# Files whose `auto_map` asks transformers to import Python code shipped with the model.
CODE_CONFIGS = ("config.json", "tokenizer_config.json")
TRUST_KEY = "model.trust_remote_code"
SHOWN_KEYS = 3  # weight names listed per kind of mismatch in an error


class CheckpointError(UserError):
    """A model directory powerflow refuses to load: not safetensors, corrupt, mismatched, or custom code."""


def convert_command(path: str | Path) -> str:
    """A one-line command that rewrites a pickle checkpoint as safetensors next to it."""
    return (f"python -c \"from transformers import AutoModelForCausalLM as M; "
            f"M.from_pretrained('{path}').save_pretrained('{path}-safetensors')\"")


def safetensors_files(path: Path) -> list[Path]:
    """The safetensors weight files of a model directory: model.safetensors, or the shards its index lists."""
    if (path / SAFETENSORS_FILE).is_file():
        return [path / SAFETENSORS_FILE]
    index = path / SAFETENSORS_INDEX
    if not index.is_file():
        return []
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, AttributeError) as err:
        raise CheckpointError(f"{index} is not a valid safetensors index ({type(err).__name__}: {err}): the checkpoint "
                              "is corrupt; copy it again or save the model again with save_pretrained().") from err
    return [path / shard for shard in shards]


def check_safetensors_file(file: Path) -> None:
    """Refuse a missing, truncated or corrupt safetensors file (its header must parse and cover the file)."""
    from safetensors import SafetensorError, safe_open

    if not file.is_file():
        raise CheckpointError(f"{file} is missing (listed in {SAFETENSORS_INDEX}): the checkpoint is incomplete; "
                              "copy it again.")
    try:
        with safe_open(str(file), framework="pt"):
            pass
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{file} is not a readable safetensors file ({err}): it is truncated or corrupt; copy "
                              "the checkpoint again (or train it again).") from err


def check_checkpoint_dir(path: str | Path, trust_remote_code: bool = False) -> None:
    """Refuse a local model directory before anything is loaded from it.

    Checks: it asks for no custom code unless trusted (`check_remote_code`); its weights are
    safetensors (pickle-only weights are refused with the command that converts them); each
    safetensors file (weights, shards, extras such as the log Z head) is whole. A directory without config.json is left to the loader, whose error
    says it is not a model.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        return
    check_remote_code(path, trust_remote_code)
    files = safetensors_files(path)
    if not files:
        foreign = [name for name in FOREIGN_WEIGHTS if (path / name).is_file()]
        if foreign:
            raise CheckpointError(
                f"{path} holds only {', '.join(foreign)} weights, not safetensors: powerflow loads safetensors only "
                "(a pickle file can run code when loaded). Convert it once, where you trust the file: "
                f"{convert_command(path)}, then point model.name_or_path at {path}-safetensors.")
        raise CheckpointError(f"{path} has a config.json but no {SAFETENSORS_FILE} or {SAFETENSORS_INDEX}: copy the "
                              "weights into it, or point model.name_or_path at the complete model directory.")
    for file in sorted(set(files) | set(path.glob("*.safetensors"))):  # the weights and extras (log Z head)
        check_safetensors_file(file)


def code_references(config: dict[str, Any]) -> list[str]:
    """The custom classes a config's `auto_map` names, e.g. ["AutoModelForCausalLM -> modeling_x.XModel"]."""
    auto_map = config.get("auto_map") or {}
    if not isinstance(auto_map, dict):
        return [str(auto_map)]
    return [f"{cls} -> {ref if isinstance(ref, str) else ', '.join(str(r) for r in ref if r)}"
            for cls, ref in auto_map.items()]


def config_dicts(source: str | Path) -> dict[str, dict]:
    """config.json and tokenizer_config.json of a local directory, or of a model id in the local cache."""
    path = Path(source).expanduser()
    if path.is_dir():
        found = {}
        for name in CODE_CONFIGS:
            try:
                found[name] = json.loads((path / name).read_text())
            except (OSError, ValueError):
                continue
        return found
    from transformers import PretrainedConfig

    try:
        config, _ = PretrainedConfig.get_config_dict(str(source))
    except (OSError, ValueError):
        return {}  # not found: the loader's own error says so
    return {"config.json": config}


def check_remote_code(source: str | Path, trust_remote_code: bool) -> None:
    """Refuse a model whose config or tokenizer names custom code (`auto_map`) unless it is trusted.

    transformers 5 without trust_remote_code silently falls back to its built-in class for a known
    model_type, which may not be the model the author wrote; so the choice is made explicit.
    """
    if trust_remote_code:
        return
    for name, config in config_dicts(source).items():
        refs = code_references(config)
        if refs:
            raise CheckpointError(
                f"{source} asks to run its own Python code ({name} auto_map: {'; '.join(refs)}), and "
                f"{TRUST_KEY} is false: read that code, and if you trust it set `{TRUST_KEY}: true` in params.yaml; "
                "otherwise use a model that needs no custom code.")


def check_loading_info(source: str | Path, info: dict[str, Any]) -> None:
    """Refuse a loaded model whose weights did not all come from the checkpoint, shape for shape.

    `info` is what from_pretrained(..., output_loading_info=True) returns: missing keys were
    initialised at random, unexpected keys were dropped, mismatched keys (loaded with
    ignore_mismatched_sizes=True) were re-initialised.
    """
    missing = sorted(info.get("missing_keys") or ())
    unexpected = sorted(info.get("unexpected_keys") or ())
    mismatched = sorted(info.get("mismatched_keys") or ())
    errors = [str(e) for e in info.get("error_msgs") or ()]
    problems = []
    if mismatched:
        shown = [f"{key} (checkpoint {list(saved)}, config {list(expected)})" for key, saved, expected in
                 mismatched[:SHOWN_KEYS]]
        problems.append(f"{len(mismatched)} weight(s) with the wrong shape: {', '.join(shown)}")
    if missing:
        problems.append(f"{len(missing)} weight(s) missing: {', '.join(missing[:SHOWN_KEYS])}")
    if unexpected:
        problems.append(f"{len(unexpected)} weight(s) the config has no place for: {', '.join(unexpected[:SHOWN_KEYS])}")
    if errors:
        problems.append(f"load errors: {'; '.join(errors[:SHOWN_KEYS])}")
    if problems:
        raise CheckpointError(
            f"the weights in {source} do not match its config.json ({'; '.join(problems)}): refusing to load them, "
            "since transformers would fill the gaps with random weights. Use a directory whose config.json and "
            "weights were saved together (save_pretrained), or fix config.json to describe the weights.")
