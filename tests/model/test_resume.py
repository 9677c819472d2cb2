"""Resuming a training run from runs/train/<name>/: which checkpoint, what is trained again, the curves.

The end-to-end case (a real `powerflow train` process killed and rerun) is
tests/integration/test_killed_training.py; these check the pieces on the enumerable world.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from powerflow.pipeline.layout import HISTORY_KEYS, history_rows
from powerflow.pipeline.train import resumable_checkpoint, train_or_restore, training_workdir
from powerflow.verify import trainer_for_enumerable

PARAMS = {"train": {"steps": 4, "seed": 0}}


def _trainable(trainer):
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    params.update({f"logz_head.{n}": p.detach().clone() for n, p in trainer.logz_head.named_parameters()})
    return params


@pytest.fixture(scope="module")
def small_cfg_module():
    from powerflow.config.sections import ExactCheckConfig

    return ExactCheckConfig(steps=4, num_generations=16)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, small_cfg_module):
    """A 4-step run with checkpoints at steps 2 and 4 (the trainer saves the last step too)."""
    run_dir = tmp_path_factory.mktemp("resume") / "run"
    trainer, _, _ = trainer_for_enumerable(small_cfg_module, alpha=2.0, objective="la_tb", output_dir=run_dir,
                                           save_strategy="steps", save_steps=2)
    trainer.train()
    return trainer, run_dir


def test_a_checkpoint_of_the_last_step_is_restored_without_training_again(finished, small_cfg_module, tmp_path):
    trainer, run_dir = finished
    again, _, _ = trainer_for_enumerable(small_cfg_module, alpha=2.0, objective="la_tb", output_dir=tmp_path / "again",
                                         save_strategy="no")
    train_or_restore(again, str(run_dir / "checkpoint-4"))
    assert again.state.global_step == 4  # Trainer.train() would have run a fifth step here
    expected, restored = _trainable(trainer), _trainable(again)
    assert all(torch.equal(expected[k], restored[k]) for k in expected)
    assert history_rows(again.state.log_history) == history_rows(trainer.state.log_history)


def test_history_rows_hold_every_step_once_from_the_log_history():
    log_history = [{"loss": 1.0, "reward": -3.0, "step": 1}, {"loss": 2.0, "reward": None, "step": 2},
                   {"loss": 2.5, "reward": -1.0, "step": 2},  # step 2 trained again after a resume
                   {"train_loss": 1.7, "train_runtime": 3.0, "step": 2}]
    assert history_rows(log_history) == [{"step": 1, "loss": 1.0, "reward": -3.0},
                                         {"step": 2, "loss": 2.5, "reward": -1.0}]
    assert set(HISTORY_KEYS) >= {"loss", "reward"}


def test_a_checkpoint_cut_off_mid_write_is_removed_and_the_one_before_resumed(finished, tmp_path):
    _trainer, run_dir = finished
    workdir = training_workdir(tmp_path / "runs" / "train" / "alpha-2.0-la_tb-s0", PARAMS)
    shutil.copytree(run_dir / "checkpoint-2", workdir / "checkpoint-2")
    shutil.copytree(run_dir / "checkpoint-4", workdir / "checkpoint-4")
    (workdir / "checkpoint-4" / "trainer_state.json").unlink()  # killed before the trainer wrote it (last)
    assert resumable_checkpoint(workdir, PARAMS) == str(workdir / "checkpoint-2")
    assert not (workdir / "checkpoint-4").exists()


def test_checkpoints_of_other_params_are_cleared_not_resumed(finished, tmp_path):
    _trainer, run_dir = finished
    workdir = training_workdir(tmp_path / "runs" / "train" / "alpha-2.0-la_tb-s0", PARAMS)
    shutil.copytree(run_dir / "checkpoint-2", workdir / "checkpoint-2")
    (workdir / "run.json").write_text("{}")
    assert resumable_checkpoint(workdir, PARAMS) == str(workdir / "checkpoint-2")
    assert resumable_checkpoint(workdir, {"train": {"steps": 8, "seed": 0}}) is None
    assert sorted(p.name for p in workdir.iterdir()) == ["params.sha256"]  # run id and checkpoints gone
