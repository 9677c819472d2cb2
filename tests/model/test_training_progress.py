"""A training shows one progress bar with loss, residual variance and length, not a metric dict per step."""

from __future__ import annotations

import re

from powerflow.progress import TrainingProgress, show_training_progress, watched_numbers
from powerflow.verify import trainer_for_enumerable


def test_watched_numbers_pick_the_three_a_user_watches():
    logs = {"loss": 0.123456, "powerflow/residual_var": 12.5, "powerflow/completion_length": 3.0,
            "completions/mean_length": 9.0, "powerflow/log_z": 1.0, "epoch": 0.1}
    assert watched_numbers(logs) == {"loss": "0.123", "resid_var": "12.5", "len": "3"}
    assert watched_numbers({"reward": 0.5, "completions/mean_length": 7.25}) == {"reward": "0.5", "len": "7.25"}
    assert watched_numbers({"train_runtime": 3.0}) == {}


def test_a_training_prints_one_bar_and_no_per_step_metric_dicts(tmp_path, small_cfg, capfd):
    trainer, _, _ = trainer_for_enumerable(small_cfg, alpha=2.0, objective="tb", output_dir=tmp_path,
                                           disable_tqdm=False, logging_steps=1)
    progress = show_training_progress(trainer, "alpha-2.0-tb-s0")
    names = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    assert "ProgressCallback" not in names and "PrinterCallback" not in names
    assert names.count("TrainingProgress") == 1 and isinstance(progress, TrainingProgress)
    trainer.train()
    err = capfd.readouterr()
    text = err.out + err.err
    assert "train alpha-2.0-tb-s0" in text
    assert re.search(r"loss=[-\d.e]+.*resid_var=[-\d.e]+.*len=[\d.e]+", text), text[-2000:]
    assert "{'loss'" not in text and "'powerflow/residual_var'" not in text  # no dict per logging step
    assert progress.bar is None  # closed at the end
    assert len([h for h in trainer.state.log_history if "loss" in h]) == small_cfg.steps  # every number still logged
