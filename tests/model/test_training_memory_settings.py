"""Gradient accumulation and gradient checkpointing (train.gradient_accumulation_steps,
train.gradient_checkpointing) change how a step is computed, not the step: checked on the
enumerable world with PowerFlowTrainer on CPU."""

import pytest
import torch

from powerflow.config.sections import ExactCheckConfig
from powerflow.verify import trainer_for_enumerable


def _one_step(tmp_path, **overrides):
    # logz="group": the log Z estimate is computed per whole generation batch, so it does not depend
    # on how the batch is split (a head's warm start would see only the first micro-batch)
    # plain SGD without clipping: the update is lr × the gradient itself, so a micro-batch weighted
    # wrongly shows up (Adam's first step, lr × sign(g), would hide a scale error)
    cfg = ExactCheckConfig(steps=1, num_generations=16, logz="group")
    trainer, _, _ = trainer_for_enumerable(cfg, alpha=4.0, objective="la_tb", output_dir=tmp_path, optim="sgd",
                                           max_grad_norm=0.0, **overrides)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    after = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return before, after, trainer


def test_accumulated_checkpointed_step_equals_the_plain_step(tmp_path):
    before, plain, _ = _one_step(tmp_path / "plain", per_device_train_batch_size=16)
    before_acc, accumulated, trainer = _one_step(
        tmp_path / "accumulated", per_device_train_batch_size=8, gradient_accumulation_steps=2,
        gradient_checkpointing=True)
    assert trainer.args.steps_per_generation == 2 and trainer.args.gradient_checkpointing
    assert all(torch.equal(before[n], before_acc[n]) for n in before)  # same seed, same initial adapter
    moved = [n for n in plain if not torch.equal(plain[n], before[n])]
    assert moved, "the plain step moved nothing"
    for name in plain:
        assert torch.allclose(accumulated[name], plain[name], atol=1e-5), name
