"""The DVC stages, one table: dvc.yaml is generated from it, and its code deps from the imports.

    python -m powerflow.pipeline.stages --check    exit 1 when dvc.yaml is not what the table renders
    python -m powerflow.pipeline.stages --write    (re)write dvc.yaml

Each `Stage` names its CLI command, the module that command runs (`entry`), its data deps, params
and outputs. Its code deps are not written by hand: they are the import closure of `entry`, read
from the source (`import_graph`, `closure`), as DVC paths (`code_deps`):

- every module the entry module can import at runtime, at top level or inside a function, and the
  packages above each (Python runs a package's __init__.py before its modules); `if TYPE_CHECKING:`
  blocks are not imports; a "powerflow.x.y:Name" text (a registry entry that `importlib` loads on
  use, as powerflow/eval/grading.py keeps) is an import of powerflow.x.y;
- a module of a subpackage of powerflow/ is declared as the subpackage's folder (powerflow/eval,
  powerflow/report, ...), except the modules of `SPLIT_PACKAGES` (powerflow/pipeline), and the
  top-level modules (powerflow/trainer.py, powerflow/__init__.py), which are declared one file each.

A stage whose closure holds the registries (powerflow.registry) also depends on the project's
`plugins/` folder, where params.yaml's `plugins:` modules live: they can add the objective or the
baseline the stage runs.

So a stage reruns when code it can run changes, and a refactor of a module it cannot import (the
report's helpers, for an evaluation) leaves its cache valid. This module imports only the standard
library, yaml and powerflow.registry (no torch, mlflow or prefect), and no stage imports it.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from powerflow.registry import PLUGIN_DIR

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.parent
DVC_YAML = ROOT / "dvc.yaml"

# Packages whose modules are declared one file each (the others by folder).
SPLIT_PACKAGES = ("powerflow.pipeline",)

# A "module:attribute" text that code hands to importlib (the answer-kind registry).
_IMPORT_TEXT = re.compile(r"(powerflow(?:\.\w+)+):\w+")


# --- the import graph -------------------------------------------------------------------------------


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of `package` (powerflow/)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imported_names(module: str, path: Path, tree: ast.AST | None = None, texts: bool = True) -> list[str]:
    """The dotted names module `module` (file `path`) imports at runtime: `import a.b` -> a.b,
    `from a import b` -> a and a.b (a submodule or a name of a), relative imports resolved, plus
    (texts=True) the modules of "powerflow.x:Name" texts, which a registry imports on use."""
    tree = tree if tree is not None else ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    names = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            names += [base] + [f"{base}.{a.name}" for a in node.names]
        elif texts and isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _IMPORT_TEXT.fullmatch(node.value)
            if match:
                names.append(match.group(1))
    return names


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (each name resolved to the deepest existing module);
    `files`: `module_files()`."""

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in files:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    return {module: {r for r in map(resolve, imported_names(module, path)) if r and r != module}
            for module, path in files.items()}


def parents(module: str) -> list[str]:
    """The packages above `module` (powerflow.pipeline.train -> powerflow, powerflow.pipeline)."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(entry: str, graph: dict[str, set[str]]) -> set[str]:
    """Every module that importing `entry` and running any of its functions can load."""
    if entry not in graph:
        raise KeyError(f"{entry} is not a module of the package: fix the stage's entry")
    seen, todo = set(), [entry]
    while todo:
        name = todo.pop()
        if name in seen or name not in graph:
            continue
        seen.add(name)
        todo += [*graph[name], *parents(name)]
    return seen


def dep_path(module: str, files: dict[str, Path], split: Iterable[str] = SPLIT_PACKAGES) -> str:
    """The DVC dep that covers `module`: its subpackage's folder (powerflow/eval), or its file for a
    module of a split package or a top-level module (a package's file is its __init__.py)."""
    parts = files[module].relative_to(files["powerflow"].parents[1]).parts
    if len(parts) > 2 and f"powerflow.{parts[1]}" not in tuple(split):
        return "/".join(parts[:2])
    return "/".join(parts)


REGISTRY = "powerflow.registry"


def code_deps(entry: str, graph: dict[str, set[str]], files: dict[str, Path]) -> list[str]:
    """The code deps of a stage whose command runs `entry`: its import closure as DVC paths, sorted,
    then the plugins folder when the closure holds the registries (a plugin can change what it runs)."""
    modules = closure(entry, graph)
    return sorted({dep_path(m, files) for m in modules}) + ([PLUGIN_DIR] if REGISTRY in modules else [])


def covers(dep: str, path: str) -> bool:
    """Whether DVC dep `dep` (a file or a folder) covers file `path`."""
    return path == dep or path.startswith(dep.rstrip("/") + "/")


def _file(module: str, files: dict[str, Path]) -> str:
    return files[module].relative_to(files["powerflow"].parents[1]).as_posix()


def uncovered(modules: Iterable[str], deps: Iterable[str], files: dict[str, Path]) -> list[str]:
    """The modules (of a closure) whose file no dep covers, sorted."""
    deps = list(deps)
    return sorted(m for m in modules if not any(covers(d, _file(m, files)) for d in deps))


def not_imported(modules: Iterable[str], deps: Iterable[str], files: dict[str, Path]) -> list[str]:
    """The code deps (under powerflow/) that cover no module of the closure, sorted."""
    paths = [_file(m, files) for m in modules]
    return sorted(d for d in deps if d.startswith("powerflow/") and not any(covers(d, p) for p in paths))


# --- the table --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Out:
    """One entry of a stage's outs, plots or metrics."""

    path: str
    cache: bool = True
    x: str | None = None
    y: str | None = None

    def entry(self) -> str | dict:
        options = {key: value for key, value in (("x", self.x), ("y", self.y)) if value is not None}
        options = {**({} if self.cache else {"cache": False}), **options}
        return {self.path: options} if options else self.path


def uncached(path: str, **plot: str) -> Out:
    return Out(path, cache=False, **plot)


@dataclass(frozen=True)
class Stage:
    """A dvc.yaml stage. `entry`: the module its command runs; `deps`: its data deps (code deps are
    `code_deps(entry)`); `comment`: lines written above it."""

    name: str
    cmd: str
    entry: str
    deps: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    outs: tuple[Out, ...] = ()
    plots: tuple[Out, ...] = ()
    metrics: tuple[Out, ...] = ()
    matrix: tuple[tuple[str, str], ...] = ()
    comment: tuple[str, ...] = ()
    in_sweep: bool = True  # part of the α sweep (`dvc repro report`, the Prefect sweep flow)

    def as_dict(self, graph: dict[str, set[str]], files: dict[str, Path]) -> dict:
        body: dict = {}
        if self.matrix:
            body["matrix"] = dict(self.matrix)
        body["cmd"] = self.cmd
        body["deps"] = [*self.deps, *code_deps(self.entry, graph, files)]
        if self.params:
            body["params"] = list(self.params)
        for key in ("outs", "plots", "metrics"):
            if getattr(self, key):
                body[key] = [out.entry() for out in getattr(self, key)]
        return body


MEMBER = "alpha-${item.alpha}-${item.objective}-s${item.seed}"
MEMBER_MATRIX = (("alpha", "${sweep.alphas}"), ("objective", "${sweep.objectives}"), ("seed", "${sweep.seeds}"))
MEMBER_ARGS = "--alpha ${item.alpha} --objective ${item.objective} --seed ${item.seed}"
BASELINE_MATRIX = (("method", "${baselines.train}"),)


def evaluation_outs(run: str) -> dict:
    """outs, plots and metrics of `powerflow evaluate --run <run>`."""
    return {"outs": (uncached(f"outputs/eval/{run}/samples.jsonl"), uncached(f"outputs/eval/{run}/settings.json")),
            "plots": (uncached(f"outputs/eval/{run}/plots"),),
            "metrics": (uncached(f"outputs/eval/{run}/metrics.json"),)}


def registration_deps(run: str) -> tuple[str, ...]:
    return (f"models/policies/{run}", f"outputs/train/{run}/run.json", f"outputs/eval/{run}/metrics.json",
            f"outputs/eval/{run}/settings.json")


BASE_DATA = ("data/prepared", "models/base")
EVALUATE = "powerflow.pipeline.evaluate"
TRAIN = "powerflow.pipeline.train"
REGISTER = "powerflow.pipeline.register"

STAGES: tuple[Stage, ...] = (
    Stage("prepare", "powerflow prepare --params params.yaml", "powerflow.pipeline.prepare",
          params=("model", "data", "world"), outs=(Out("data/prepared"),)),
    Stage("base", "powerflow pretrain --params params.yaml", "powerflow.pipeline.base",
          params=("model", "world", "base"), outs=(Out("models/base"),)),
    Stage("train", f"powerflow train --params params.yaml {MEMBER_ARGS}", TRAIN, matrix=MEMBER_MATRIX,
          deps=BASE_DATA, params=("model", "train"),
          outs=(Out(f"models/policies/{MEMBER}"), uncached(f"outputs/train/{MEMBER}/run.json")),
          plots=(uncached(f"outputs/train/{MEMBER}/history.csv", x="step", y="loss"),),
          metrics=(uncached(f"outputs/train/{MEMBER}/metrics.json"),)),
    Stage("evaluate_base", "powerflow evaluate --params params.yaml --run base", EVALUATE,
          deps=BASE_DATA, params=("evaluate",), **evaluation_outs("base")),
    Stage("evaluate", f"powerflow evaluate --params params.yaml --run {MEMBER}", EVALUATE, matrix=MEMBER_MATRIX,
          deps=(*BASE_DATA, f"models/policies/{MEMBER}", f"outputs/train/{MEMBER}/run.json"),
          params=("evaluate",), **evaluation_outs(MEMBER)),
    Stage("register", f"powerflow register --params params.yaml {MEMBER_ARGS}", REGISTER, matrix=MEMBER_MATRIX,
          deps=registration_deps(MEMBER), params=("tracking",),
          outs=(uncached(f"outputs/register/{MEMBER}.json"),)),
    Stage("train_baseline", "powerflow train --params params.yaml --method ${item.method}", TRAIN,
          matrix=BASELINE_MATRIX, deps=BASE_DATA, params=("model", "train", "baselines"),
          outs=(Out("models/policies/${item.method}"), uncached("outputs/train/${item.method}/run.json"),
                uncached("outputs/train/${item.method}/recipe.json")),
          plots=(uncached("outputs/train/${item.method}/history.csv", x="step", y="reward"),),
          metrics=(uncached("outputs/train/${item.method}/metrics.json"),),
          comment=("Baselines (params.yaml `baselines:`): the same model, prompts, evaluation and training budget.",)),
    Stage("evaluate_baseline", "powerflow evaluate --params params.yaml --run ${item.method}", EVALUATE,
          matrix=BASELINE_MATRIX,
          deps=(*BASE_DATA, "models/policies/${item.method}", "outputs/train/${item.method}/run.json"),
          params=("evaluate",), **evaluation_outs("${item.method}")),
    Stage("register_baseline", "powerflow register --params params.yaml --method ${item.method}", REGISTER,
          matrix=BASELINE_MATRIX, deps=registration_deps("${item.method}"), params=("tracking",),
          outs=(uncached("outputs/register/${item.method}.json"),)),
    Stage("evaluate_method", "powerflow evaluate --params params.yaml --run ${item.method}-${item.alpha}", EVALUATE,
          matrix=(("method", "${baselines.inference}"), ("alpha", "${baselines.alphas}")),
          deps=BASE_DATA, params=("evaluate", "baselines"), **evaluation_outs("${item.method}-${item.alpha}")),
    Stage("evaluate_verbalized", "powerflow evaluate --params params.yaml --run verbalized", EVALUATE,
          deps=BASE_DATA, params=("evaluate", "baselines"), **evaluation_outs("verbalized")),
    Stage("evaluate_high_temperature", "powerflow evaluate --params params.yaml --run high_temperature", EVALUATE,
          deps=BASE_DATA, params=("evaluate", "baselines"), **evaluation_outs("high_temperature")),
    Stage("report", "powerflow report --params params.yaml", "powerflow.pipeline.report",
          deps=("outputs/eval", "outputs/train", "outputs/register"),
          params=("sweep", "report", "baselines", "model.name_or_path"),
          outs=(uncached("outputs/report/report.md"), uncached("outputs/report/plots")),
          plots=(uncached("outputs/report/alpha_metrics.csv", x="alpha", y="reasoning_accuracy_mean"),
                 uncached("outputs/report/alpha_means.csv", x="alpha", y="reasoning_accuracy_mean")),
          metrics=(uncached("outputs/report/summary.json"),)),
    Stage("verify_exact", "powerflow verify-exact --params params.yaml --out outputs/exact/metrics.json",
          "powerflow.verify", params=("exact",), metrics=(uncached("outputs/exact/metrics.json"),), in_sweep=False),
)


def sweep_stages(stages: tuple[Stage, ...] = STAGES) -> tuple[Stage, ...]:
    """The stages of the α sweep, in the table's order (an order DVC's graph allows)."""
    return tuple(stage for stage in stages if stage.in_sweep)


def matrix_items(stage: Stage, lists: dict[str, list]) -> list[dict]:
    """The runs of `stage`: one {key: value} per point of its matrix, in DVC's order (the last key
    varies fastest), with `lists` giving each ${section.key} the matrix names; [{}] without a matrix."""
    items: list[dict] = [{}]
    for key, reference in stage.matrix:
        values = lists[reference.removeprefix("${").removesuffix("}")]
        items = [{**item, key: value} for item in items for value in values]
    return items

HEADER = """\
# Generated by powerflow/pipeline/stages.py (the stage table; code deps are each stage's import
# closure): edit the table there, then `python -m powerflow.pipeline.stages --write`.
#
# The α sweep: prepare -> base -> train (matrix over sweep.alphas x sweep.objectives x sweep.seeds) -> evaluate
# -> register -> report. A checkpoint is registered only after its evaluation succeeded (register
# depends on the evaluation), so a crash in evaluation registers nothing and the report's aliases
# point at evaluated versions only. Every stage calls the `powerflow` CLI, which runs the stage's
# Prefect flow when a Prefect server answers at PREFECT_API_URL and the library step directly otherwise.
#
#   dvc repro                                          the default sweep (plus verify_exact)
#   dvc repro report                                   the sweep only (what `scripts/dev.sh main` runs)
#   dvc exp run -S 'sweep.alphas=[0.5,1.0,2.0,4.0,3.0]'   one more α; the others stay cached
#   dvc exp run -S 'sweep.seeds=[0,1,2]' report          three training seeds per α; seed 0 stays cached
#   dvc metrics show / dvc plots show                  accuracy, diversity, training curves per α
#
# Paths use ${item.alpha} as DVC renders it (str() of the YAML value: 4.0 -> "4.0"; params.yaml writes
# every α as a float, so the CLI's member, powerflow.member.Member, names the same folder): the run
# alpha-4.0-tb-s0 (α, objective, training seed; the seed suffix is there for seed 0 too, so every
# member's paths follow one pattern).
"""

PLOTS_COMMENT = """\
# `dvc plots show`: the training curves of every α and seed (stage plots above) and these views, one
# point per (α, objective): the mean over sweep.seeds (alpha_means.csv; alpha_metrics.csv has every seed).
"""

_ALPHA_MEANS = "outputs/report/alpha_means.csv"
PLOTS: list = [
    {"accuracy and diversity against alpha": {"x": "alpha", "y": {_ALPHA_MEANS: [
        "reasoning_accuracy_greedy", "reasoning_accuracy_mean", "open_ended_coverage", "open_ended_validity",
        "open_ended_semantic_diversity"]}}},
    {"policy diagnostics against alpha": {"x": "alpha", "y": {_ALPHA_MEANS: ["diag_residual_var",
                                                                            "diag_length_ratio"]}}},
]


# --- rendering --------------------------------------------------------------------------------------


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return text if yaml.safe_load(f"k: {text}") == {"k": value} else json.dumps(text)


def _emit(value, indent: int) -> list[str]:
    """Block-style YAML lines of a dict/list tree (lists indented under their key, as dvc.yaml has)."""
    pad, lines = " " * indent, []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                lines += [f"{pad}{_scalar(key)}:", *_emit(item, indent + 2)]
            else:
                lines.append(f"{pad}{_scalar(key)}: {_scalar(item)}")
    else:
        for item in value:
            if isinstance(item, (dict, list)):
                inner = _emit(item, indent + 2)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines += inner[1:]
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines


def stage_dicts(stages: Iterable[Stage] = STAGES, package: Path = PACKAGE) -> dict[str, dict]:
    """Stage name -> its dvc.yaml entry, code deps read from the modules under `package`."""
    files = module_files(package)
    graph = import_graph(files)
    return {stage.name: stage.as_dict(graph, files) for stage in stages}


def render(stages: tuple[Stage, ...] = STAGES, package: Path = PACKAGE) -> str:
    """The text of dvc.yaml (code deps read from the modules under `package`)."""
    entries = stage_dicts(stages, package)
    blocks = []
    for stage in stages:
        comment = [f"  # {line}" for line in stage.comment]
        blocks.append("\n".join([*comment, *_emit({stage.name: entries[stage.name]}, 2)]))
    text = (HEADER + "stages:\n" + "\n\n".join(blocks) + "\n\n" + PLOTS_COMMENT
            + "\n".join(_emit({"plots": PLOTS}, 0)) + "\n")
    # The emitter is small: never write what does not read back as the table.
    if yaml.safe_load(text) != {"stages": entries, "plots": PLOTS}:
        raise AssertionError("dvc.yaml text does not parse back to the stage table")
    return text


def main(argv: list[str] | None = None, path: Path = DVC_YAML) -> int:
    parser = argparse.ArgumentParser(prog="python -m powerflow.pipeline.stages", description=__doc__.split("\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml differs from the table")
    action.add_argument("--write", action="store_true", help="write dvc.yaml from the table")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
        return 0
    if not path.is_file() or path.read_text() != text:
        print(f"{path} is not what powerflow/pipeline/stages.py renders (a stage's imports or the table "
              "changed): run `python -m powerflow.pipeline.stages --write` and commit dvc.yaml.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
