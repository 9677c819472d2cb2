"""With real DVC: a no-behaviour refactor of a report helper reruns the report stage and no other;
an edit of the evaluation's metrics reruns every evaluation.

No stage command runs. Every stage's outputs are stand-in files and `dvc commit -f` records the
lock (dep and out hashes of the tree as it is), which is what a finished `dvc repro` leaves; then
`dvc status --json` says which stages an edit would rerun ("changed deps").
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.pipeline_project import ROOT, make_project, run

EVALUATION = ("evaluate_base", "evaluate", "evaluate_baseline", "evaluate_method", "evaluate_verbalized",
              "evaluate_high_temperature")
UPSTREAM = ("prepare", "base", "train", "train_baseline", "register", "register_baseline", *EVALUATION)


def stage_outs(project: Path) -> list[str]:
    """Every stage's outs (metrics and plots too), matrices expanded, as DVC reads dvc.yaml."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return sorted({out.def_path for stage in repo.index.stages for out in stage.outs})


def dvc(project: Path, *args: str) -> str:
    out = run(["dvc", *args], project, timeout=300)
    assert out.returncode == 0, f"dvc {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def changed_deps(project: Path) -> dict[str, dict[str, str]]:
    """Stage (a matrix member: train@...) -> its changed deps {path: state}, from `dvc status --json`."""
    status = json.loads(dvc(project, "status", "--json") or "{}")
    changed = {}
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, dict) and "changed deps" in entry:
                changed.setdefault(stage, {}).update(entry["changed deps"])
    return changed


def base_name(stage: str) -> str:
    return stage.split("@")[0]


@pytest.fixture
def committed(tmp_path):
    """A project whose dvc.lock matches its tree, every stage's outputs stand-ins, committed to git."""
    project = make_project(tmp_path / "project", alphas=(2.0,))
    shutil.copy(ROOT / ".dvcignore", project / ".dvcignore")  # `dvc init` wrote an empty one
    for out in stage_outs(project):
        path = project / out
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"stand-in for {out}\n")
    dvc(project, "commit", "-f")
    subprocess.run(["git", "add", "-A"], cwd=project, check=True, capture_output=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lock"], cwd=project,
                   check=True, capture_output=True)
    assert json.loads(dvc(project, "status", "--json") or "{}") == {}
    return project


def rename_a_private_helper(package: Path) -> tuple[str, str]:
    """Rename the first private function of report/tables.py everywhere in the report package."""
    old = re.search(r"^def (_\w+)\(", (package / "tables.py").read_text(), re.M).group(1)
    new = f"{old}_renamed"
    for path in package.glob("*.py"):
        text = path.read_text()
        if re.search(rf"\b{old}\b", text):
            path.write_text(re.sub(rf"\b{old}\b", new, text))
            compile(path.read_text(), str(path), "exec")
    return old, new


def test_a_report_refactor_reruns_only_the_report_and_a_metrics_edit_reruns_every_evaluation(committed):
    project = committed
    # Bytecode beside the sources (any run of the code writes it) is not a change of a folder dep.
    (project / "powerflow" / "eval" / "__pycache__").mkdir()
    (project / "powerflow" / "eval" / "__pycache__" / "metrics.cpython-311.pyc").write_bytes(b"\0")
    assert changed_deps(project) == {}

    old, new = rename_a_private_helper(project / "powerflow" / "report")
    assert subprocess.run(["git", "diff", "--quiet"], cwd=project).returncode == 1  # the tree did change
    imported = run(["python", "-c", f"import powerflow.report.tables as t; print(t.__file__, t.{new}.__name__)"],
                   project)
    assert imported.returncode == 0 and imported.stdout.startswith(str(project)), imported.stderr
    changed = changed_deps(project)
    assert set(changed) == {"report"}, changed
    assert changed["report"] == {"powerflow/report": "modified"}
    assert not [s for s in changed if base_name(s) in UPSTREAM]

    subprocess.run(["git", "checkout", "--", "powerflow"], cwd=project, check=True, capture_output=True)
    assert changed_deps(project) == {}
    with open(project / "powerflow" / "eval" / "metrics.py", "a") as f:
        f.write("\n# an edit of the evaluation's metrics\n")
    changed = changed_deps(project)
    rerun = {base_name(s) for s in changed}
    assert set(EVALUATION) <= rerun, changed
    for stage, deps in changed.items():
        assert deps == {"powerflow/eval": "modified"}, (stage, deps)
    # every member of each evaluation matrix (the baselines' methods and α) is rerun
    assert len([s for s in changed if base_name(s) == "evaluate_baseline"]) == 2
    from powerflow.config import load_pipeline_config

    baselines = load_pipeline_config(project / "params.yaml").baselines
    methods = len(baselines.inference) * len(baselines.alphas)  # low_temperature, mcmc, smc at each α
    assert methods >= 3 and len([s for s in changed if base_name(s) == "evaluate_method"]) == methods
