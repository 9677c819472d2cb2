"""Named parameter presets: the seed's models and settings, as overlays on params.yaml.

A preset is a YAML file in powerflow/presets/ (package data) with the same sections as
params.yaml, naming only the keys it sets. `apply_preset(name, params_path)` merges it over the
project's params.yaml (mappings merged key by key, any other value replaced), validates the result
with `load_pipeline_config` from a temporary file beside params.yaml (so relative paths resolve
as they will), and only then renames it into place: a preset that does not validate leaves
params.yaml as it was. The merge is done on ruamel.yaml's round-trip tree (DVC's own YAML
library), so params.yaml keeps its comments and layout.

    powerflow preset list
    powerflow preset show qwen2.5-math-7b-alpha4
    powerflow preset apply qwen2.5-math-7b-alpha4 --params params.yaml

The CPU check: the same preset, run end to end on a CPU before renting a GPU. `--model DIR` turns
it on (`apply_cpu_check`): params.yaml ⊕ preset ⊕ the CPU overrides below, so `dvc repro report`
runs the preset's whole configuration (objective, log Z mode, LoRA rank, prompt format, column
mapping, benchmarks, baselines, report) on a small local model in minutes, and fails on any
config error a GPU run would hit.

    powerflow preset apply llama-3.1-8b-instruct-alpha2-reasoning --model path/to/tiny-model \
        --data math_prompts.jsonl --source math500=math500.jsonl --source gpqa_diamond=gpqa.csv
    dvc repro report

The preset merged over params.yaml is validated first as it is (the GPU run's params: an
error there is the preset's and is reported as such), then with the overrides:

    model.name_or_path           DIR (a local model directory with config.json; stored absolute)
    train.use_vllm, train.bf16   false (no CUDA), train.accelerate_config / num_processes null
    train.steps, save_steps      2 (one checkpoint is still written and read back)
    train.prompts_per_step       2, train.num_generations 2 (whole groups, as TRL and EMPO need)
    train.gradient_accumulation_steps
                                 1 if the preset's is 1, else 2: it divides the 4 completions of
                                 a step and keeps the preset's accumulation path (micro-batch 2)
    train.max_completion_length, evaluate.max_new_tokens, baselines.mcmc_max_new_tokens   16
    evaluate.backend             transformers; evaluate.n_samples 2; max_prompts_per_family 2
    evaluate.diagnostics_*       at most 2 prompts (0 stays 0: off as the preset says) and 2 samples
    baselines.mcmc_blocks/steps  at most 2
    data.source                  FILE with --data (a .jsonl/.csv/.parquet file); data.columns stays
                                 the preset's, so a file without the preset's columns fails in
                                 `prepare` as the hub dataset would
    evaluate.sources.<benchmark> FILE for each --source BENCHMARK=FILE (a benchmark the preset lists)

Everything else is the preset's. Paths of --data and --source resolve from the working directory
and are stored relative to the project (params.yaml's folder) when inside it, absolute otherwise.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from powerflow.errors import ConfigError, UserError
from powerflow.config import load_params, load_pipeline_config
from powerflow.io import write_text_atomic

PRESET_SUFFIX = ".yaml"


class UnknownPresetError(UserError):
    """A preset name that is not shipped; the message lists the ones that are."""


@dataclass(frozen=True)
class Preset:
    """One shipped preset: its name, the first line of its header comment, and its YAML text."""

    name: str
    description: str
    text: str


def _preset_files() -> dict[str, Any]:
    """name -> resource file of every preset shipped in powerflow/presets/."""
    folder = resources.files("powerflow") / "presets"
    return {f.name[: -len(PRESET_SUFFIX)]: f for f in folder.iterdir() if f.name.endswith(PRESET_SUFFIX)}


def preset_names() -> list[str]:
    """The shipped presets' names, sorted."""
    return sorted(_preset_files())


def _description(text: str) -> str:
    """The first comment line of a preset file (its one-line summary)."""
    for line in text.splitlines():
        if line.startswith("#") and line.strip("# "):
            return line.lstrip("#").strip()
    return ""


def get_preset(name: str) -> Preset:
    """The preset called `name`; UnknownPresetError listing the available ones otherwise."""
    files = _preset_files()
    if name not in files:
        raise UnknownPresetError(
            f"no preset named {name!r}: use one of {', '.join(sorted(files))} (`powerflow preset list`)."
        )
    text = files[name].read_text(encoding="utf-8")
    return Preset(name=name, description=_description(text), text=text)


def _round_trip_yaml():
    from ruamel.yaml import YAML
    from ruamel.yaml.representer import RoundTripRepresenter

    class _Representer(RoundTripRepresenter):
        """Writes null as `null` (params.yaml's spelling), not as an empty value; a subclass, so
        ruamel's shared representer (DVC's too) is left as it is."""

    _Representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    yaml = YAML(typ="rt")
    yaml.Representer = _Representer
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line of the user's file
    return yaml


def merge_overlay(base: Any, overlay: Any) -> Any:
    """`overlay` merged into `base` in place and returned: mappings key by key (recursively), any
    other value (scalars, lists) replaced by the overlay's.

    A replaced value loses its end-of-line comment in a round-trip tree (it described the old
    value); comment lines below it (e.g. the next section's header) stay.
    """
    if isinstance(base, dict) and isinstance(overlay, dict):
        for key, value in overlay.items():
            if key in base and base[key] != value and not (isinstance(base[key], dict) and isinstance(value, dict)):
                _drop_end_of_line_comment(base, key)
            base[key] = merge_overlay(base[key], value) if key in base else value
        return base
    return overlay


def _without_comments(node: Any) -> Any:
    """A round-trip tree with its comments removed (in place): a preset's comments describe the
    preset file, and ruamel would attach them to whichever value precedes them in params.yaml."""
    if hasattr(node, "ca"):
        node.ca.items.clear()
        node.ca.comment = None
        node.ca.end = None
    for child in node.values() if isinstance(node, dict) else node if isinstance(node, list) else ():
        _without_comments(child)
    return node


def _drop_end_of_line_comment(mapping: Any, key: Any) -> None:
    """Remove the comment on `key`'s line of a ruamel CommentedMap, keeping the lines after it."""
    items = getattr(getattr(mapping, "ca", None), "items", {})
    token = items.get(key, [None, None, None])[2]
    if token is not None and token.value.lstrip(" ").startswith("#"):
        token.value = "\n" + token.value.partition("\n")[2]


def merged_params_text(name: str, params_path: str | Path) -> str:
    """params.yaml with preset `name` merged over it, as YAML text (comments of params.yaml kept)."""
    preset = get_preset(name)
    load_params(params_path)  # a missing or malformed params file is a ConfigError naming it
    yaml = _round_trip_yaml()
    base = yaml.load(Path(params_path).read_text(encoding="utf-8"))
    merged = merge_overlay(base, _without_comments(yaml.load(preset.text)))
    out = io.StringIO()
    yaml.dump(merged, out)
    return out.getvalue()


def apply_preset(name: str, params_path: str | Path) -> Path:
    """Write preset `name` merged over `params_path`, validated first; the file is replaced whole or not at all.

    Raises UnknownPresetError for an unknown name, ConfigError when the merged params do not
    validate (params.yaml untouched). Returns the path written.
    """
    path = Path(params_path)
    text = merged_params_text(name, path)

    def validate(candidate: Path) -> None:
        try:
            load_pipeline_config(candidate)
        except ConfigError as err:
            message = str(err).replace(str(candidate.resolve()), str(path))
            raise ConfigError(f"preset {name!r} over {path} does not validate, {path} is unchanged: {message}") from err

    return write_text_atomic(text, path, check=validate)
