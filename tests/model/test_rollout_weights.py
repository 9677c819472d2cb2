"""What PowerFlowTrainer pushes to a vLLM rollout engine, checked without vLLM.

`rollout_engine_weights` runs TRL's own weight walk (`VLLMGeneration._iter_named_params`, the one
`sync_weights` feeds to the engine). vLLM itself cannot be installed here (it pins another torch),
so these tests check the tensors that walk yields: the merged policy's weights under checkpoint
names, and nothing of the log Z head.
"""

import copy
import importlib.util

import pytest
import torch

from powerflow.config.sections import ExactCheckConfig
from powerflow.trainer import PowerFlowConfig, rollout_engine_weights
from powerflow.verify import trainer_for_enumerable

PEFT_MARKERS = ("base_model.", "base_layer", "lora_", "modules_to_save", "original_module")


def _trainer(tmp_path, lora_r=8, logz="head"):
    cfg = ExactCheckConfig(steps=1, num_generations=8, lora_r=lora_r, logz=logz)
    trainer, _, _ = trainer_for_enumerable(cfg, alpha=4.0, objective="la_tb", output_dir=tmp_path)
    return trainer


def _randomize_lora_b(model) -> None:
    """LoRA's B starts at zero (merged = base); give it values so a merge visibly changes weights."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)


def test_pushed_weights_are_the_merged_policy_without_the_log_z_head(tmp_path):
    trainer = _trainer(tmp_path)
    _randomize_lora_b(trainer.model)
    before_push = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    merged = copy.deepcopy(trainer.model).merge_and_unload()
    expected = dict(merged.named_parameters())  # checkpoint names; tied weights once, as vLLM wants

    pushed = dict(rollout_engine_weights(trainer))

    assert set(pushed) == set(expected)  # every model weight, and nothing else (no head, no adapter)
    assert not [n for n in pushed if any(m in n for m in PEFT_MARKERS) or "logz" in n]
    for name, tensor in pushed.items():
        assert torch.allclose(tensor, expected[name], atol=1e-6), name
    base = {n.removeprefix("base_model.model.").replace(".base_layer", ""): p for n, p in before_push.items()
            if "lora_" not in n}
    changed = [n for n in pushed if not torch.equal(pushed[n], base[n])]
    assert changed and all(n.endswith("weight") for n in changed)  # the LoRA delta is in what is pushed
    head_tensors = [p.detach() for p in trainer.logz_head.parameters()]
    assert not any(t.shape == h.shape and torch.equal(t, h) for t in pushed.values() for h in head_tensors)
    # the walk unmerged the adapter again: the training weights are as they were (up to float round-off)
    after_push = dict(trainer.model.named_parameters())
    assert all(torch.allclose(before_push[n], after_push[n], atol=1e-5) for n in before_push)


def test_full_fine_tuning_pushes_every_parameter_by_name(tmp_path):
    trainer = _trainer(tmp_path, lora_r=0)
    pushed = dict(rollout_engine_weights(trainer))
    expected = dict(trainer.model.named_parameters())
    assert set(pushed) == set(expected)
    assert all(torch.equal(pushed[n], expected[n].detach()) for n in pushed)
    assert not [n for n in pushed if "logz" in n]


def test_a_head_inside_the_model_would_be_pushed_and_is_refused(tmp_path):
    """The failure the guard exists for: a head registered in the model travels with every sync."""
    trainer = _trainer(tmp_path)
    trainer._check_logz_head_outside_model()  # as built: outside, no error
    trainer.model.base_model.model.logz_head = trainer.logz_head
    assert [n for n, _ in rollout_engine_weights(trainer) if n.startswith("logz_head.")]
    with pytest.raises(RuntimeError, match="outside trainer.model"):
        trainer._check_logz_head_outside_model()


@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_config_accepts_vllm_modes(tmp_path, mode):
    """Constructs where vLLM is not installed (this machine): the config never imports it."""
    args = PowerFlowConfig(str(tmp_path), use_vllm=True, vllm_mode=mode, vllm_gpu_memory_utilization=0.4,
                           vllm_server_base_url="http://127.0.0.1:8000", use_cpu=True, report_to="none")
    assert args.use_vllm and args.vllm_mode == mode and args.temperature == 1.0


def test_config_refuses_unknown_vllm_mode_and_non_unit_temperature(tmp_path):
    with pytest.raises(ValueError, match="vllm_mode='remote'.*'colocate'.*'server'"):
        PowerFlowConfig(str(tmp_path), use_vllm=True, vllm_mode="remote", use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match="temperature=0.7"):
        PowerFlowConfig(str(tmp_path), use_vllm=True, temperature=0.7, use_cpu=True, report_to="none")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="checks a machine without vLLM")
def test_trainer_with_use_vllm_needs_vllm(tmp_path):
    """Without vLLM, TRL refuses at construction: nothing trains on a backend that is not there."""
    with pytest.raises(ImportError, match="vLLM is not available"):
        _trainer_with(tmp_path, use_vllm=True)


def _trainer_with(tmp_path, **overrides):
    cfg = ExactCheckConfig(steps=1, num_generations=8)
    return trainer_for_enumerable(cfg, alpha=4.0, objective="la_tb", output_dir=tmp_path, **overrides)


def test_norm_gains_trained_beside_the_adapter_are_pushed_under_their_checkpoint_names(tmp_path):
    """The presets' LoRA recipe trains copies of the norm gains (lora_modules_to_save: [norm]): the engine
    must sample with the trained copies, once each, under the names vLLM loads (not the frozen originals)."""
    cfg = ExactCheckConfig(steps=1, num_generations=8, lora_r=8, logz="group")
    trainer, _, _ = trainer_for_enumerable(cfg, alpha=4.0, objective="tb", output_dir=tmp_path,
                                           lora_modules_to_save=("norm",))
    originals = {}
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "modules_to_save" in name:
                originals[name.removeprefix("base_model.model.").replace(".modules_to_save.default", "")] = p.clone()
                p.mul_(3.0)
    expected = dict(copy.deepcopy(trainer.model).merge_and_unload().named_parameters())
    pushed = dict(rollout_engine_weights(trainer))
    assert set(pushed) == set(expected)
    assert not [n for n in pushed if any(m in n for m in PEFT_MARKERS)]
    norms = [n for n in pushed if n.endswith("norm.weight")]
    assert "model.norm.weight" in norms
    assert sorted(norms) == sorted(originals)
    for name in norms:  # the trained copy (3 × the original gain), not the frozen original
        assert torch.allclose(pushed[name], expected[name]) and torch.allclose(pushed[name], 3.0 * originals[name])
