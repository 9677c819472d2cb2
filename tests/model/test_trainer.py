"""PowerFlowTrainer on real tiny transformers models: fixed point, truncation, NaN guard, checkpoints."""

import json
import math

import pytest
import torch
from transformers import TrainerCallback

from powerflow.exact import enumerate_terminals
from powerflow.trainer import CONFIG_FILE, LOGZ_HEAD_FILE, PowerFlowConfig, PowerFlowTrainer, load_logz_head
from powerflow.verify import trainer_for_enumerable


def _trainable(trainer):
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    if trainer.logz_head is not None:
        params.update({f"logz_head.{n}": p.detach().clone() for n, p in trainer.logz_head.named_parameters()})
    return params


class _Snapshots(TrainerCallback):
    """Copies of every trainable parameter after each optimizer step."""

    def __init__(self, trainer):
        self.trainer, self.after_step = trainer, []

    def on_step_end(self, args, state, control, **kwargs):
        self.after_step.append(_trainable(self.trainer))


def _max_change(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize("lora_r", [8, 0], ids=["lora", "full"])
def test_alpha_one_at_exact_log_z_has_zero_loss_and_no_drift(tmp_path, small_cfg, lora_r):
    from dataclasses import replace

    cfg = replace(small_cfg, lora_r=lora_r)
    trainer, _, _ = trainer_for_enumerable(cfg, alpha=1.0, objective="la_tb", output_dir=tmp_path, logging_steps=1)
    before = _trainable(trainer)
    trainer.train()
    after = _trainable(trainer)
    assert _max_change(before, after) == 0.0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == small_cfg.steps and all(abs(v) < 1e-12 for v in losses)
    grad_norms = [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]
    assert all(g == 0.0 for g in grad_norms)


def test_training_moves_parameters_and_logs_every_metric(tmp_path, small_cfg):
    trainer, _, _ = trainer_for_enumerable(small_cfg, alpha=4.0, objective="la_tb", output_dir=tmp_path, logging_steps=1)
    before = _trainable(trainer)
    trainer.train()
    after = _trainable(trainer)
    lora_changed = [k for k in before if "lora_" in k and not torch.equal(before[k], after[k])]
    assert lora_changed, "no LoRA parameter changed"
    assert not torch.equal(before["logz_head.out.bias"], after["logz_head.out.bias"])
    base_params = [k for k in before if "lora_" not in k and not k.startswith("logz_head")]
    assert base_params == []  # with LoRA the base weights are frozen: p_base is the adapter-disabled model
    logged = trainer.state.log_history[0]
    for key in ("loss", "powerflow/log_z", "powerflow/completion_length", "powerflow/residual_var",
                "powerflow/clip_fraction", "powerflow/skipped_steps", "rewards/base_log_density/mean"):
        assert key in logged and math.isfinite(logged[key]), key


def test_truncated_completions_are_scored_by_their_prefix_and_kept(tmp_path, small_cfg):
    trainer, base, prompt_ids = trainer_for_enumerable(small_cfg, alpha=2.0, objective="tb", output_dir=tmp_path)
    exact = dict(zip(base.sequences, base.log_prob.tolist()))
    trainer.model.train()
    batch = trainer._generate_and_score_completions([{"prompt": small_cfg.prompt}] * small_cfg.num_generations)
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    seen_truncated = 0
    for i in range(ids.size(0)):
        seq = tuple(ids[i, : int(mask[i].sum())].tolist())
        truncated = bool(batch["pf_truncated"][i])
        assert truncated == (len(seq) == small_cfg.max_completion_length and seq[-1] != 0)
        assert batch["pf_log_p_base"][i].item() == pytest.approx(exact[seq], abs=1e-4)
        if truncated:
            seen_truncated += 1
            assert int(mask[i].sum()) == small_cfg.max_completion_length  # not masked out of the loss
    assert seen_truncated > 0, "the random base truncates often; the batch should hold some"


def test_head_features_are_the_base_models_pooled_prompt_states(tmp_path, small_cfg):
    """The features captured during the scoring pass equal a separate forward of the prompt alone."""
    trainer, _, prompt_ids = trainer_for_enumerable(small_cfg, alpha=2.0, objective="la_tb", output_dir=tmp_path)
    trainer.train()  # the adapter moves away from zero, so "adapter disabled" is a real distinction
    trainer.model.train()
    batch = trainer._generate_and_score_completions([{"prompt": small_cfg.prompt}] * small_cfg.num_generations)
    with trainer.accelerator.unwrap_model(trainer.model).disable_adapter():
        out = trainer.model(input_ids=torch.tensor([prompt_ids]), output_hidden_states=True)
    expected = out.hidden_states[-1][0].float().mean(dim=0)
    feats = batch["pf_prompt_features"]
    assert feats.shape == (small_cfg.num_generations, expected.numel())
    assert torch.allclose(feats, expected.expand_as(feats), atol=1e-5)


def test_non_finite_loss_skips_the_optimizer_step(tmp_path, small_cfg):
    trainer, _, _ = trainer_for_enumerable(small_cfg, alpha=2.0, objective="la_tb", output_dir=tmp_path, logging_steps=1)
    calls = {"n": 0}
    original = trainer._base_forward

    def nan_on_second_batch(*args, **kwargs):
        calls["n"] += 1
        logps, features = original(*args, **kwargs)
        return (torch.full_like(logps, float("nan")) if calls["n"] == 2 else logps), features

    trainer._base_forward = nan_on_second_batch
    snaps = _Snapshots(trainer)
    trainer.add_callback(snaps)
    before = _trainable(trainer)
    trainer.train()
    assert trainer.skipped_steps == 1
    assert _max_change(before, snaps.after_step[0]) > 0  # step 1 trained
    assert _max_change(snaps.after_step[0], snaps.after_step[1]) == 0.0  # step 2 skipped: nothing moved
    assert _max_change(snaps.after_step[1], snaps.after_step[2]) > 0  # step 3 trained again
    skipped = [h["powerflow/skipped_steps"] for h in trainer.state.log_history if "powerflow/skipped_steps" in h]
    assert skipped[:3] == [0.0, 1.0, 1.0]


def test_checkpoint_holds_adapter_head_config_and_resumes_exactly(tmp_path, small_cfg):
    run_dir = tmp_path / "run"
    trainer, _, _ = trainer_for_enumerable(small_cfg, alpha=2.0, objective="la_tb", output_dir=run_dir,
                                           save_strategy="steps", save_steps=2)
    trainer.train()
    uninterrupted = _trainable(trainer)
    ckpt = run_dir / "checkpoint-2"
    for name in ("adapter_model.safetensors", LOGZ_HEAD_FILE, CONFIG_FILE, "optimizer.pt", "trainer_state.json"):
        assert (ckpt / name).is_file(), name
    saved = json.loads((ckpt / CONFIG_FILE).read_text())
    assert (saved["alpha"], saved["objective"], saved["logz"]) == (2.0, "la_tb", "head")
    head = load_logz_head(ckpt)
    assert head.out.bias.item() != 0.0

    resumed, _, _ = trainer_for_enumerable(small_cfg, alpha=2.0, objective="la_tb", output_dir=tmp_path / "resumed",
                                           save_strategy="no")
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert resumed.state.global_step == small_cfg.steps
    final = _trainable(resumed)
    assert _max_change(uninterrupted, final) < 1e-5

    state = torch.load(ckpt / "optimizer.pt", weights_only=True)
    assert len(state["param_groups"]) == 3  # decay, no-decay, and the log Z head's own group
    assert state["param_groups"][2]["lr"] < small_cfg.logz_learning_rate  # linear decay applies to it too


def test_full_fine_tuning_keeps_a_frozen_reference(tmp_path, small_cfg):
    from dataclasses import replace

    cfg = replace(small_cfg, lora_r=0)
    trainer, base, prompt_ids = trainer_for_enumerable(cfg, alpha=4.0, objective="tb", output_dir=tmp_path)
    ref_before = {n: p.detach().clone() for n, p in trainer.ref_model.named_parameters()}
    trainer.train()
    assert all(not p.requires_grad for p in trainer.ref_model.parameters())
    assert all(torch.equal(ref_before[n], p) for n, p in trainer.ref_model.named_parameters())
    again = enumerate_terminals(trainer.ref_model, prompt_ids, 0, cfg.max_completion_length)
    assert torch.allclose(again.log_prob, base.log_prob, atol=1e-6)
    policy = enumerate_terminals(trainer.model, prompt_ids, 0, cfg.max_completion_length)
    assert not torch.allclose(policy.log_prob, base.log_prob, atol=1e-4)


def test_trainer_refuses_reward_functions_and_plain_grpo_config(tmp_path, small_cfg):
    from trl import GRPOConfig

    from powerflow.world.enumerable import random_base

    model, tok = random_base()
    with pytest.raises(TypeError, match="PowerFlowConfig"):
        PowerFlowTrainer(model=model, args=GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False),
                         processing_class=tok)
    with pytest.raises(TypeError, match="reward"):
        PowerFlowTrainer(model=model, args=PowerFlowConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False),
                         processing_class=tok, reward_funcs=[lambda **k: [0.0]])


def _empirical_tv(batch, base):
    """TV between the batch's completions and the enumerated base distribution."""
    from collections import Counter

    ids, mask = batch["completion_ids"], batch["completion_mask"]
    seqs = Counter(tuple(ids[i, : int(mask[i].sum())].tolist()) for i in range(ids.size(0)))
    n = ids.size(0)
    exact = dict(zip(base.sequences, base.log_prob.exp().tolist()))
    return 0.5 * sum(abs(seqs.get(s, 0) / n - p) for s, p in exact.items())


@pytest.mark.parametrize("lora_r", [8, 0], ids=["adapter-off", "full-ft-reference"])
def test_base_mix_draws_its_share_of_rollouts_from_the_frozen_base(tmp_path, small_cfg, lora_r):
    """base_mix=1: rollouts follow p_base even when training has made π_θ very different.

    With LoRA the adapter is switched off; with full fine-tuning the frozen reference copy samples.
    """
    from dataclasses import replace

    cfg = replace(small_cfg, num_generations=256, lora_r=lora_r)
    results = {}
    for mix in (0.0, 1.0):
        trainer, base, _ = trainer_for_enumerable(cfg, alpha=2.0, objective="tb", output_dir=tmp_path / str(mix),
                                                  base_mix=mix)
        torch.manual_seed(0)
        with torch.no_grad():  # move the policy far from the base: large random LoRA B matrices / weights
            for name, p in trainer.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 2.0)
                elif lora_r == 0 and "lm_head" in name:
                    p.add_(torch.randn_like(p) * 2.0)
        trainer.model.train()
        assert trainer.base_rollout_slots(8, 8) == [mix == 1.0] * 8
        batch = trainer._generate_and_score_completions([{"prompt": cfg.prompt}] * cfg.num_generations)
        results[mix] = _empirical_tv(batch, base)
    # the TV of 256 genuine base draws to p_base is the noise floor (~85 sequences: not small)
    gen = torch.Generator().manual_seed(1)
    draws = torch.multinomial(base.log_prob.exp(), cfg.num_generations, replacement=True, generator=gen)
    counts = torch.bincount(draws, minlength=len(base.sequences)).double() / cfg.num_generations
    floor = 0.5 * (counts - base.log_prob.exp()).abs().sum().item()
    assert results[1.0] < floor + 0.08, (results, floor)
    assert results[0.0] > results[1.0] + 0.2, results


def test_base_mix_slots_are_the_last_share_of_every_group(tmp_path, small_cfg):
    trainer, _, _ = trainer_for_enumerable(small_cfg, alpha=2.0, objective="tb", output_dir=tmp_path, base_mix=0.25)
    trainer.model.train()
    assert trainer.base_rollout_slots(16, 8) == ([False] * 6 + [True] * 2) * 2
    trainer.model.eval()
    assert not any(trainer.base_rollout_slots(16, 8))  # evaluation samples from the policy only


def test_base_mix_out_of_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"base_mix=1.5"):
        PowerFlowConfig(str(tmp_path), base_mix=1.5)
    with pytest.raises(ValueError, match="huber_delta"):
        PowerFlowConfig(str(tmp_path), huber_delta=-1.0)
