"""The adapter settings of `train:` (issue 20's LoRA levers) on real tiny transformers models:
which modules carry an adapter, its scale, LoRA+'s learning rates and the warm-up."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from powerflow.config.train import TrainConfig, block_linear_names, lora_config, trl_arguments
from powerflow.errors import ConfigError
from powerflow.verify import trainer_for_enumerable
from powerflow.world.enumerable import random_base


def test_no_adapter_at_rank_zero_and_all_linear_is_peft_s_own_rule():
    assert lora_config(0, 16) is None
    config = lora_config(8, 16)
    assert config.target_modules == "all-linear" and config.r == 8 and config.lora_dropout == 0.0
    assert not config.use_rslora


def test_all_linear_beside_other_names_expands_on_the_model_and_adapts_the_embeddings():
    from peft import get_peft_model

    model, _ = random_base(seed=0, n_symbols=3)
    names = block_linear_names(model)
    assert "lm_head" not in names and {"q_proj", "down_proj"} <= set(names)
    with pytest.raises(ValueError, match="needs the model"):
        lora_config(8, 16, ("all-linear", "embed_tokens"))
    config = lora_config(8, 16, ("all-linear", "embed_tokens"), model=model)
    assert set(config.target_modules) == set(names) | {"embed_tokens"}
    adapted = get_peft_model(model, config)
    adapted_modules = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, _ in adapted.named_parameters() if ".lora_" in n}
    assert adapted_modules == set(names) | {"embed_tokens"}


def test_an_adapter_on_the_output_layer_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match="lm_head.weight directly"):
        TrainConfig(lora_target_modules=("all-linear", "lm_head"))


def test_rslora_scales_the_adapter_by_alpha_over_root_rank():
    from peft import get_peft_model

    model, _ = random_base(seed=0, n_symbols=3)
    adapted = get_peft_model(model, lora_config(16, 16, rslora=True))
    q = next(m for n, m in adapted.named_modules() if n.endswith("q_proj"))
    assert q.scaling["default"] == pytest.approx(16 / math.sqrt(16))
    model, _ = random_base(seed=0, n_symbols=3)
    q = next(m for n, m in get_peft_model(model, lora_config(16, 16)).named_modules() if n.endswith("q_proj"))
    assert q.scaling["default"] == pytest.approx(1.0)


def test_lora_plus_puts_exactly_the_b_matrices_at_ratio_times_the_learning_rate(tmp_path, small_cfg):
    trainer, _, _ = trainer_for_enumerable(replace(small_cfg, lora_r=4), alpha=2.0, objective="tb",
                                           output_dir=tmp_path, lr_multipliers={"lora_B": 16.0})
    optimizer = trainer.create_optimizer()
    lr = trainer.args.learning_rate
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    fast = [names[id(p)] for g in optimizer.param_groups if g["lr"] == pytest.approx(16 * lr)
            for p in g["params"] if id(p) in names]
    slow = [names[id(p)] for g in optimizer.param_groups if g["lr"] == pytest.approx(lr)
            for p in g["params"] if id(p) in names]
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert fast and all("lora_B" in n for n in fast)
    assert sorted(fast + slow) == sorted(trainable)
    assert all("lora_A" in n for n in slow)
    trainer.train()  # the scheduler reads each group's lr: training runs with the split groups
    assert trainer.state.global_step == small_cfg.steps


def test_a_multiplier_that_names_no_parameter_is_refused(tmp_path, small_cfg):
    trainer, _, _ = trainer_for_enumerable(replace(small_cfg, lora_r=0), alpha=2.0, objective="tb",
                                           output_dir=tmp_path, lr_multipliers={"lora_B": 16.0})
    with pytest.raises(ValueError, match=r"lr_multipliers names \['lora_B'\], which match no trainable"):
        trainer.create_optimizer()


def test_warmup_and_adapter_settings_are_checked_and_reach_trl(tmp_path):
    with pytest.raises(ConfigError, match="train.warmup_steps=10"):
        TrainConfig(steps=10, warmup_steps=10)
    with pytest.raises(ConfigError, match="lr_multipliers"):
        TrainConfig(lr_multipliers={"lora_B": 0.0})
    with pytest.raises(ConfigError, match="lora_target_modules"):
        TrainConfig(lora_target_modules=())
    assert TrainConfig(lora_target_modules="all-linear").lora_target_modules == ("all-linear",)
    assert trl_arguments(TrainConfig(steps=100, warmup_steps=10), tmp_path)["warmup_steps"] == 10


def test_modules_trained_beside_the_adapter_leave_p_base_untouched_and_merge_into_the_policy():
    """lora_modules_to_save: [norm] trains a copy of every norm gain; with the adapter disabled (how the
    trainer computes p_base) the model is the base exactly, and merging keeps the trained gains."""
    import torch
    from peft import get_peft_model

    model, _ = random_base(seed=0, n_symbols=3)
    ids = torch.tensor([[1, 2, 3, 2]])
    with torch.no_grad():
        base_logits = model(ids).logits.clone()
    adapted = get_peft_model(model, lora_config(4, 8, modules_to_save=("norm",)))
    saved = [p for n, p in adapted.named_parameters() if "modules_to_save" in n]
    assert saved and all(p.requires_grad for p in saved)
    assert any(n.endswith("model.norm.modules_to_save.default.weight") for n, _ in adapted.named_parameters())
    with torch.no_grad():
        for p in saved:
            p.mul_(3.0)  # a sharpening step: every gain ×3
        policy_logits = adapted(ids).logits.clone()
        with adapted.disable_adapter():
            assert torch.equal(adapted(ids).logits, base_logits)
    assert not torch.allclose(policy_logits, base_logits)
    merged = adapted.merge_and_unload()
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, policy_logits, atol=1e-5)


def test_an_annealed_alpha_starts_at_the_base_s_own_fixed_point_and_reaches_alpha(tmp_path, small_cfg):
    """alpha_warmup_steps = 2 at α = 4: the loss uses α_t = 1, 2.5, 4, 4 at steps 0–3. At step 0 the policy
    is the base (a copy, nothing trained yet) and α_0 = 1, so every residual log Z + log π − log p_base is 0."""
    with pytest.raises(ConfigError, match="alpha_warmup_steps=10 >= train.steps=10"):
        TrainConfig(steps=10, alpha_warmup_steps=10)
    with pytest.raises(ConfigError, match="alpha_warmup_steps"):
        TrainConfig(alpha_warmup_steps=-1)
    trainer, _, _ = trainer_for_enumerable(replace(small_cfg, lora_r=0), alpha=4.0, objective="tb",
                                           output_dir=tmp_path, alpha_warmup_steps=2, logging_steps=1)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "powerflow/alpha" in entry]
    assert [entry["powerflow/alpha"] for entry in logs] == pytest.approx([1.0, 2.5, 4.0, 4.0])
    assert logs[0]["powerflow/residual_var"] == pytest.approx(0.0, abs=1e-10)
    assert logs[-1]["powerflow/residual_var"] > 1e-6  # at α = 4 the base is far from its fixed point
    trainer.model.eval()
    assert trainer.current_alpha() == 4.0
