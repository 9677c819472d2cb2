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
    train.steps, save_steps      2 (the last step still writes a checkpoint)
    train.prompts_per_step       2, train.num_generations 2 (whole groups, as TRL and EMPO need)
    train.gradient_accumulation_steps
                                 1 if the preset's is 1, else 2: it divides the 4 completions of
                                 a step and keeps the preset's accumulation path (micro-batch 2)
    train.max_completion_length, evaluate.max_new_tokens, baselines.mcmc_max_new_tokens   16
    evaluate.backend             transformers; evaluate.n_samples 2; max_prompts_per_family 2
    evaluate.diagnostics_*       at most 2 prompts (0 stays 0: off as the preset says) and 2 samples
    baselines.mcmc_blocks/steps  at most 2; baselines.smc_particles at most 2
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
from powerflow.config import load_pipeline_config
from powerflow.config.parse import load_params
from powerflow.data.config import FILE_EXTENSIONS
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


def runs_on_the_world(name: str) -> bool:
    """True for a preset that keeps the embedded world as its model (it names no model, or `world`):
    it runs as it is on a CPU, so it has no CPU check and reads nothing from a hub."""
    import yaml

    from powerflow.config.sections import WORLD_MODEL

    overlay = yaml.safe_load(get_preset(name).text) or {}
    return (overlay.get("model") or {}).get("name_or_path", WORLD_MODEL) == WORLD_MODEL


def hub_preset_names() -> list[str]:
    """The presets of a hub model (the GPU presets), sorted: the ones with a CPU check."""
    return [name for name in preset_names() if not runs_on_the_world(name)]


def preset_lora_parametrisation(name: str) -> dict:
    """What preset `name` trains beside its LoRA adapter, as keyword arguments of
    `powerflow.verify.train_and_measure`: {lora_modules_to_save: (...), lr_multipliers: {...}}."""
    import yaml

    train = (yaml.safe_load(get_preset(name).text) or {}).get("train") or {}
    return {"lora_modules_to_save": tuple(train.get("lora_modules_to_save") or ()),
            "lr_multipliers": dict(train.get("lr_multipliers") or {})}


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
    value); comment lines below it (e.g. the next section's header) stay. A key new to a mapping
    goes after its last key, and the comment lines that followed that key move below the new one,
    so a section's header stays above its section.
    """
    if isinstance(base, dict) and isinstance(overlay, dict):
        for key, value in overlay.items():
            if key not in base:
                _append_key(base, key, value)
                continue
            if base[key] != value and not (isinstance(base[key], dict) and isinstance(value, dict)):
                _drop_end_of_line_comment(base, key)
            base[key] = merge_overlay(base[key], value)
        return base
    return overlay


def _append_key(mapping: Any, key: Any, value: Any) -> None:
    """mapping[key] = value as its last key; in a round-trip tree the comment lines that followed
    the old last key (ruamel keeps them on it) move below the new one."""
    if not hasattr(mapping, "ca"):
        mapping[key] = value
        return
    from ruamel.yaml.comments import CommentedMap

    lines = _take_trailing_lines(mapping) if mapping else ""
    mapping[key] = _commented(value, CommentedMap)
    if lines:
        _put_trailing_lines(mapping, lines)


def _commented(value: Any, mapping_type: type) -> Any:
    """Plain dicts in `value` as round-trip mappings (which can carry comment lines)."""
    if isinstance(value, dict) and not hasattr(value, "ca"):
        converted = mapping_type()
        for k, v in value.items():
            converted[k] = _commented(v, mapping_type)
        return converted
    return value


def _trailing_owner(mapping: Any) -> tuple[Any, Any]:
    """(mapping, key) whose comment slot holds the lines after `mapping`'s last line: its last key, or
    that of the block mapping its last key holds (ruamel keeps them on the deepest last key)."""
    key = list(mapping)[-1]
    value = mapping[key]
    if isinstance(value, dict) and value and hasattr(value, "ca") and not value.fa.flow_style():
        return _trailing_owner(value)
    return mapping, key


def _take_trailing_lines(mapping: Any) -> str:
    """Remove and return the comment lines after `mapping`'s last line ("" when there are none)."""
    owner, key = _trailing_owner(mapping)
    token = owner.ca.items.get(key, [None, None, None, None])[2]
    if token is None:
        return ""
    head, newline, lines = token.value.partition("\n")
    if not lines:
        return ""
    token.value = head + newline
    return lines


def _put_trailing_lines(mapping: Any, lines: str) -> None:
    """Put comment `lines` after `mapping`'s last line."""
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    owner, key = _trailing_owner(mapping)
    slot = owner.ca.items.setdefault(key, [None, None, None, None])
    if slot[2] is None:
        slot[2] = CommentToken("\n" + lines, CommentMark(0), None)
    else:
        slot[2].value = (slot[2].value if slot[2].value.endswith("\n") else slot[2].value + "\n") + lines


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


def _merged_tree(name: str, params_path: str | Path):
    """(the round-trip YAML instance, params.yaml's tree with preset `name` merged over it)."""
    preset = get_preset(name)
    load_params(params_path)  # a missing or malformed params file is a ConfigError naming it
    yaml = _round_trip_yaml()
    base = yaml.load(Path(params_path).read_text(encoding="utf-8"))
    return yaml, merge_overlay(base, _without_comments(yaml.load(preset.text)))


def _dumped(yaml, tree: Any) -> str:
    out = io.StringIO()
    yaml.dump(tree, out)
    return out.getvalue()


def merged_params_text(name: str, params_path: str | Path) -> str:
    """params.yaml with preset `name` merged over it, as YAML text (comments of params.yaml kept)."""
    return _dumped(*_merged_tree(name, params_path))


def _params_check(path: Path, what: str):
    """A `check` for write_text_atomic: load_pipeline_config on the candidate file, its config
    returned; a ConfigError says that `what` does not validate and that `path` is unchanged."""

    def validate(candidate: Path):
        try:
            return load_pipeline_config(candidate)
        except ConfigError as err:
            message = str(err).replace(str(candidate.resolve()), str(path))
            raise ConfigError(f"{what} does not validate, {path} is unchanged: {message}") from err

    return validate


def _validated_config(text: str, path: Path, what: str):
    """The PipelineConfig of params `text` as if it were `path` (validated from a temporary file beside
    it, so relative paths resolve as they will; nothing is written in its place)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".check")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return _params_check(path, what)(Path(tmp))
    finally:
        Path(tmp).unlink(missing_ok=True)


def apply_preset(name: str, params_path: str | Path) -> Path:
    """Write preset `name` merged over `params_path`, validated first; the file is replaced whole or not at all.

    Raises UnknownPresetError for an unknown name, ConfigError when the merged params do not
    validate (params.yaml untouched). Returns the path written.
    """
    path = Path(params_path)
    text = merged_params_text(name, path)
    return write_text_atomic(text, path, check=_params_check(path, f"preset {name!r} over {path}"))


# ------------------------------------------------------------------------------ the CPU check
CPU_STEPS = 2               # optimizer steps (and save_steps: one checkpoint is written)
CPU_PROMPTS_PER_STEP = 2
CPU_NUM_GENERATIONS = 2     # the smallest group: logz group's leave-one-out and EMPO still work
CPU_ACCUMULATION = 2        # divides prompts_per_step × CPU_NUM_GENERATIONS (even) for any prompts_per_step
CPU_MAX_TOKENS = 16         # completion lengths: train, evaluate, MCMC
CPU_EVAL_SAMPLES = 2
CPU_PROMPTS_PER_FAMILY = 2
CPU_DIAGNOSTICS = 2         # diagnostics prompts per family (when on) and samples
CPU_MCMC = 2                # MCMC blocks and Metropolis-Hastings steps
CPU_SMC_PARTICLES = 2       # Power-SMC particles per answer (2 still resample)


@dataclass(frozen=True)
class Override:
    """One value the CPU check changed: its dotted key, the preset's value, the CPU check's."""

    key: str
    before: Any
    after: Any


@dataclass(frozen=True)
class CpuCheck:
    """What `apply_cpu_check` wrote: the params file, the values it changed, notes on what stays remote."""

    path: Path
    overrides: tuple[Override, ...]
    notes: tuple[str, ...] = field(default=())


def parse_source_options(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """--source BENCHMARK=FILE options as {benchmark: file}; a malformed or repeated one is a UserError."""
    sources: dict[str, str] = {}
    for item in items:
        benchmark, sep, file = (part.strip() for part in item.partition("="))
        if not sep or not benchmark or not file:
            raise UserError(f"--source {item!r}: write BENCHMARK=FILE, e.g. --source math500=data/math500.jsonl.")
        if benchmark in sources:
            raise UserError(f"--source {benchmark}= is given twice ({sources[benchmark]} and {file}): pass one file "
                            "per benchmark.")
        sources[benchmark] = file
    return sources


def check_model_dir(model: str | Path) -> Path:
    """`model` as an absolute path to a local model directory (with config.json); UserError otherwise."""
    path = Path(model).expanduser()
    written_by = "a directory written by save_pretrained (config.json, tokenizer files, safetensors weights)"
    if not path.is_dir():
        raise UserError(f"--model {model}: no such directory; the CPU check needs a local model: pass {written_by}.")
    if not (path / "config.json").is_file():
        raise UserError(f"--model {model}: {path} has no config.json, so it is not a model directory: pass {written_by}.")
    return path.resolve()


def _check_input_file(option: str, file: str, extensions: tuple[str, ...], what: str) -> Path:
    """An existing `file` with one of `extensions`, given as `option` (e.g. "--data x.jsonl"), as an
    absolute path; a UserError naming the option otherwise."""
    path = Path(file).expanduser()
    if path.suffix.lower() not in extensions:
        raise UserError(f"{option}: use a {', '.join(extensions)} file ({what}).")
    if not path.is_file():
        raise UserError(f"{option}: no such file; write {what} there, or fix the path.")
    return path.resolve()


def project_relative(path: Path, project_root: Path) -> str:
    """`path` as params.yaml stores it: relative to the project root when inside it, else absolute."""
    try:
        return path.relative_to(project_root.resolve()).as_posix()
    except ValueError:
        return str(path)


def cpu_gradient_accumulation(preset_steps: int) -> int:
    """1 when the preset does not accumulate, else CPU_ACCUMULATION: the accumulation path stays in the
    check, and it divides the check's prompts_per_step × num_generations (each a whole group)."""
    return 1 if preset_steps == 1 else CPU_ACCUMULATION


def cpu_train_overrides(t) -> dict[str, Any]:
    """The `train:` values of the CPU check for a preset's TrainConfig `t`: one process, fp32, no vLLM,
    a few short steps in the preset's shape."""
    steps = min(t.steps, CPU_STEPS)
    return {
        "use_vllm": False, "bf16": False, "accelerate_config": None, "num_processes": None,
        "steps": steps, "save_steps": min(t.save_steps, steps),
        "prompts_per_step": min(t.prompts_per_step, CPU_PROMPTS_PER_STEP),
        "num_generations": min(t.num_generations, CPU_NUM_GENERATIONS),
        "gradient_accumulation_steps": cpu_gradient_accumulation(t.gradient_accumulation_steps),
        "max_completion_length": min(t.max_completion_length, CPU_MAX_TOKENS),
    }


def cpu_evaluate_overrides(e, sources: dict[str, str]) -> dict[str, Any]:
    """The `evaluate:` values of the CPU check for a preset's EvalConfig `e`, with `sources` (benchmark
    -> file as params.yaml stores it) merged into evaluate.sources."""
    values = {
        "backend": "transformers", "n_samples": min(e.n_samples, CPU_EVAL_SAMPLES),
        "max_new_tokens": min(e.max_new_tokens, CPU_MAX_TOKENS),
        "max_prompts_per_family": min(e.max_prompts_per_family or CPU_PROMPTS_PER_FAMILY, CPU_PROMPTS_PER_FAMILY),
        "diagnostics_prompts": min(e.diagnostics_prompts, CPU_DIAGNOSTICS),
        "diagnostics_samples": min(e.diagnostics_samples, CPU_DIAGNOSTICS),
    }
    if sources:
        values["sources"] = dict(sources)
    return values


def cpu_baselines_overrides(b) -> dict[str, Any]:
    """The `baselines:` values of the CPU check for a preset's BaselinesConfig `b` (MCMC and Power-SMC
    cut short; Power-SMC answers are mcmc_max_new_tokens long too)."""
    max_new_tokens = min(b.mcmc_max_new_tokens, CPU_MAX_TOKENS)
    return {"mcmc_max_new_tokens": max_new_tokens, "mcmc_blocks": min(b.mcmc_blocks, CPU_MCMC, max_new_tokens),
            "mcmc_steps": min(b.mcmc_steps, CPU_MCMC), "smc_particles": min(b.smc_particles, CPU_SMC_PARTICLES)}


def cpu_check_overlay(cfg, model: Path, data: str | None, sources: dict[str, str]) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} the CPU check merges over the preset's validated config `cfg`."""
    overlay: dict[str, dict[str, Any]] = {
        "model": {"name_or_path": str(model)},
        "train": cpu_train_overrides(cfg.train),
        "evaluate": cpu_evaluate_overrides(cfg.evaluate, sources),
        "baselines": cpu_baselines_overrides(cfg.baselines),
    }
    if data is not None:
        overlay["data"] = {"source": data}
    return overlay


def changed_values(cfg, overlay: dict[str, dict[str, Any]]) -> tuple[Override, ...]:
    """The overlay's values that differ from the preset's config `cfg` (evaluate.sources per benchmark)."""
    changed = []
    for section, values in overlay.items():
        for key, after in values.items():
            before = getattr(getattr(cfg, section), key)
            if isinstance(after, dict):
                changed += [Override(f"{section}.{key}.{k}", before.get(k), v) for k, v in after.items()
                            if before.get(k) != v]
            elif before != after:
                changed.append(Override(f"{section}.{key}", before, after))
    return tuple(changed)


def check_source_benchmarks(name: str, cfg, sources: dict[str, str]) -> None:
    """Every --source names a benchmark preset `name` evaluates (cfg: its config); UserError otherwise."""
    from powerflow.eval.config import PREPARED

    listed = [b for b in cfg.evaluate.benchmarks if b != PREPARED]
    for benchmark in sources:
        if benchmark == PREPARED:
            raise UserError(f"--source {PREPARED}=...: the prepared split is read from data.source: pass the file "
                            "as --data FILE instead.")
        if benchmark not in listed:
            raise UserError(f"--source {benchmark}=...: preset {name!r} does not evaluate {benchmark} (its "
                            f"evaluate.benchmarks: {list(cfg.evaluate.benchmarks)}): pass --source for "
                            f"{', '.join(listed) or 'none of them'}, or drop it.")


def remote_inputs_notes(cfg, data: str | None, sources: dict[str, str]) -> tuple[str, ...]:
    """What the check still reads from the Hugging Face cache, or from files that are not there: the
    `prepare` or `evaluate` stage fails on these offline, as the GPU run would without them."""
    from powerflow.eval.benchmarks import LOCAL_EXTENSIONS
    from powerflow.eval.config import PREPARED

    notes = []
    if data is None and cfg.data.hf_dataset is not None:
        notes.append(f"data.source is {cfg.data.source}: read from the Hugging Face cache (offline); pass --data FILE, "
                     f"a file with the preset's columns {dict(cfg.data.columns)}, to check without it.")
    for benchmark in cfg.evaluate.benchmarks:
        if benchmark == PREPARED or benchmark in sources:
            continue
        source = cfg.evaluate.sources.get(benchmark)
        if source is None or Path(source).suffix.lower() not in LOCAL_EXTENSIONS:
            notes.append(f"evaluate.benchmarks: {benchmark} is read from the Hugging Face cache "
                         f"({source or 'its hub release'}); pass --source {benchmark}=FILE to check without it.")
        elif not (cfg.project_root / Path(source).expanduser()).is_file():  # an absolute path stays itself
            notes.append(f"evaluate.sources.{benchmark}={source}: no such file in the project; create it or pass "
                         f"--source {benchmark}=FILE.")
    return tuple(notes)


def apply_cpu_check(name: str, params_path: str | Path, model: str | Path, data: str | None = None,
                    sources: dict[str, str] | None = None) -> CpuCheck:
    """Write params.yaml ⊕ preset `name` ⊕ the CPU-check overrides (module docstring) to `params_path`.

    model: a local model directory; data: a prompt file replacing data.source (the preset's
    column mapping kept); sources: {benchmark: file} merged into evaluate.sources. The preset
    merged over params.yaml is validated first as it is, then with the overrides; the file is
    replaced whole or not at all. Raises UnknownPresetError, UserError for a bad --model, --data
    or --source, ConfigError when either form does not validate (params.yaml untouched).
    """
    from powerflow.eval.benchmarks import LOCAL_EXTENSIONS

    path = Path(params_path)
    get_preset(name)  # an unknown name fails first, listing the shipped ones
    if runs_on_the_world(name):
        raise UserError(f"preset {name!r} runs on the embedded world, which this CPU trains as it is: apply it "
                        f"without --model (`powerflow preset apply {name}`), then `dvc repro` or `powerflow train`.")
    model_dir = check_model_dir(model)
    root = path.resolve().parent
    data_file = None if data is None else project_relative(
        _check_input_file(f"--data {data}", data, FILE_EXTENSIONS, "prompts in the preset's data.columns"), root)
    source_files = {b: project_relative(_check_input_file(f"--source {b}={f}", f, LOCAL_EXTENSIONS,
                                                          f"{b} in its published fields"), root)
                    for b, f in (sources or {}).items()}
    yaml, tree = _merged_tree(name, path)
    cfg = _validated_config(_dumped(yaml, tree), path, f"preset {name!r} over {path}")
    check_source_benchmarks(name, cfg, source_files)
    overlay = cpu_check_overlay(cfg, model_dir, data_file, source_files)
    text = _dumped(yaml, merge_overlay(tree, overlay))
    write_text_atomic(text, path, check=_params_check(path, f"preset {name!r} with the CPU-check overrides over {path}"))
    return CpuCheck(path=path, overrides=changed_values(cfg, overlay),
                    notes=remote_inputs_notes(cfg, data_file, source_files))


def _yaml_value(value: Any) -> str:
    """A value as params.yaml spells it (true, null, 16, a path)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def cpu_check_summary(name: str, check: CpuCheck) -> str:
    """What `powerflow preset apply NAME --model DIR` prints: the file, each override, the notes, what next."""
    lines = [f"wrote {check.path}: preset {name} merged over it with the CPU-check overrides (validated):"]
    width = max((len(o.key) for o in check.overrides), default=0)
    lines += [f"  {o.key:{width}s}  {_yaml_value(o.before)} -> {_yaml_value(o.after)}" for o in check.overrides]
    lines += [f"note: {note}" for note in check.notes]
    lines.append(f"run `dvc repro report` to check the preset's configuration on this CPU; then "
                 f"`powerflow preset apply {name}` (without --model) writes the GPU run's params.")
    return "\n".join(lines)
