"""sweep.seeds in DVC's matrix: one train/evaluate/register stage per (α, objective, seed), each
with its own command and paths (nothing runs; DVC only renders dvc.yaml against params.yaml)."""

from __future__ import annotations

import subprocess

import pytest

from benchmarks.pipeline_project import BIN, env_for, make_project


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    from dvc.repo import Repo

    project = make_project(tmp_path_factory.mktemp("seeds") / "project", alphas=(2.0, 4.0), git=False,
                           overrides={"sweep": {"seeds": [0, 1]}})
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=project, env=env_for(project), check=True)
    with Repo(str(project)) as repo:
        return {s.name: {"cmd": s.cmd, "outs": sorted(str(o.def_path) for o in s.outs),
                               "deps": sorted(str(d.def_path) for d in s.deps)} for s in repo.index.stages}


def test_every_seed_is_a_stage_of_its_own(stages):
    for step in ("train", "evaluate", "register"):
        members = sorted(name for name in stages if name.startswith(f"{step}@"))
        assert members == [f"{step}@{a}-la_tb-{s}" for a in ("2.0", "4.0") for s in (0, 1)]


def test_seed_stages_pass_the_seed_and_write_their_own_paths(stages):
    zero, one = stages["train@4.0-la_tb-0"], stages["train@4.0-la_tb-1"]
    assert one["cmd"].endswith("--alpha 4.0 --objective la_tb --seed 1") and zero["cmd"].endswith("--seed 0")
    assert "models/policies/alpha-4.0-la_tb-s1" in one["outs"] and "models/policies/alpha-4.0-la_tb-s0" in zero["outs"]
    assert not set(zero["outs"]) & set(one["outs"])
    evaluate = stages["evaluate@4.0-la_tb-1"]
    assert evaluate["cmd"].endswith("--run alpha-4.0-la_tb-s1")
    assert "models/policies/alpha-4.0-la_tb-s1" in evaluate["deps"]
    register = stages["register@4.0-la_tb-1"]
    assert register["cmd"].endswith("--seed 1") and register["outs"] == ["outputs/register/alpha-4.0-la_tb-s1.json"]
    assert "outputs/eval/alpha-4.0-la_tb-s1/metrics.json" in register["deps"]


def test_the_baselines_stay_single_seed(stages):
    assert sorted(n for n in stages if n.startswith("train_baseline@")) == ["train_baseline@empo", "train_baseline@grpo"]
