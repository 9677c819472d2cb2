"""scripts/length_study.py writes a params file the pipeline accepts: the long-completion world with
both length caps at its longest solution (a cap below it would be refused)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from powerflow.config import load_pipeline_config
from powerflow.world.teacher import longest_completion_tokens

ROOT = Path(__file__).resolve().parents[2]


def _length_study():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        spec = importlib.util.spec_from_file_location("length_study", ROOT / "scripts" / "length_study.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def test_study_params_give_the_long_world_with_caps_at_its_longest_solution(tmp_path):
    study = _length_study()
    cfg = load_pipeline_config(study.study_params(tmp_path / "length"))
    assert cfg.world.max_operands == study.STUDY_SETTINGS["world"]["max_operands"]
    longest = longest_completion_tokens(cfg.world)
    assert cfg.train.max_completion_length == cfg.evaluate.max_new_tokens == longest == 53
    assert cfg.train.families == ("reasoning",)
    assert cfg.project_root == (tmp_path / "length").resolve()  # its own data/prepared and models/base
