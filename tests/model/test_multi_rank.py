"""Multi-GPU training through accelerate, checked on CPU: the configs, two gloo ranks, the train stage.

No GPU and no DeepSpeed here: FSDP and ZeRO-3 are checked as configs (accelerate's own loader),
DDP runs for real on two CPU ranks with infra/accelerate/ddp_cpu.yaml.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType, is_deepspeed_available

from benchmarks.pipeline_project import ROOT, make_project, run, tiny_params
from powerflow.config import load_pipeline_config
from powerflow.config.parse import section_from_dict
from powerflow.config.train import TrainConfig
from powerflow.errors import ConfigError
from powerflow.distributed import (
    LaunchError,
    check_launchable,
    launch_command,
    load_accelerate_config,
    rank_arguments,
    train_on_ranks,
)
from powerflow.orchestration import free_port
from tests.model import multi_rank_grads as ranks

CONFIGS = ROOT / "infra" / "accelerate"
CPU_CONFIG = "infra/accelerate/ddp_cpu.yaml"


def test_every_accelerate_config_parses_with_accelerates_loader():
    clusters = {p.name: load_config_from_file(str(p)) for p in sorted(CONFIGS.glob("*.yaml"))}
    assert set(clusters) == {"ddp.yaml", "fsdp.yaml", "zero3.yaml", "ddp_cpu.yaml"}
    for name, cluster in clusters.items():  # powerflow's check accepts what accelerate accepts
        assert load_accelerate_config(CONFIGS / name).to_dict() == cluster.to_dict()
    ddp, fsdp, zero3, cpu = (clusters[n] for n in ("ddp.yaml", "fsdp.yaml", "zero3.yaml", "ddp_cpu.yaml"))
    for gpu in (ddp, fsdp, zero3):  # one node of 8 GPUs, bf16
        assert (gpu.num_machines, gpu.num_processes, gpu.mixed_precision, gpu.use_cpu) == (1, 8, "bf16", False)
    assert ddp.distributed_type == DistributedType.MULTI_GPU
    assert fsdp.distributed_type == DistributedType.FSDP
    assert fsdp.fsdp_config["fsdp_version"] == 2 and fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert zero3.distributed_type == DistributedType.DEEPSPEED
    assert zero3.deepspeed_config["zero_stage"] == 3 and zero3.deepspeed_config["zero3_save_16bit_model"] is True
    # torchrun launcher (MULTI_GPU) with CPU ranks: accelerate's MULTI_CPU would need mpirun
    assert (cpu.distributed_type, cpu.use_cpu, cpu.num_processes) == (DistributedType.MULTI_GPU, True, 2)


def test_bad_launch_settings_are_config_errors_naming_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"train.accelerate_config: .*missing.yaml does not exist.*infra/accelerate"):
        load_accelerate_config(tmp_path / "missing.yaml")
    foreign = tmp_path / "foreign.yaml"
    foreign.write_text(yaml.safe_dump({"distributed_type": "MULTI_GPU", "gpus_per_node": 8}))
    with pytest.raises(ConfigError, match=r"not a valid accelerate config .*accelerate config --config_file"):
        load_accelerate_config(foreign)
    with pytest.raises(ConfigError, match=r"train.num_processes=2 needs train.accelerate_config"):
        section_from_dict(TrainConfig, {"num_processes": 2}, "train")
    with pytest.raises(ConfigError, match=r"train.num_processes=0"):
        section_from_dict(TrainConfig, {"accelerate_config": CPU_CONFIG, "num_processes": 0}, "train")
    params = tiny_params()
    params["train"]["accelerate_config"] = "infra/accelerate/nope.yaml"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_pipeline_config(tmp_path / "params.yaml")
    zero3 = load_accelerate_config(CONFIGS / "zero3.yaml")
    if is_deepspeed_available():
        check_launchable(zero3, CONFIGS / "zero3.yaml")  # launchable where DeepSpeed is installed
    else:
        with pytest.raises(ConfigError, match="pip install deepspeed"):
            check_launchable(zero3, CONFIGS / "zero3.yaml")


def test_launch_command_runs_this_package_on_the_configs_ranks(tmp_path):
    params = tiny_params()
    params["train"].update(accelerate_config="cpu.yaml", num_processes=3)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(CONFIGS / "ddp_cpu.yaml", tmp_path / "cpu.yaml")
    cfg = load_pipeline_config(tmp_path / "params.yaml")
    command = launch_command(cfg, ["--alpha", "2.0", "--objective", "la_tb"], port=12345)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    joined = " ".join(command)
    assert f"--config_file {tmp_path / 'cpu.yaml'} --num_processes 3 --main_process_port 12345" in joined
    assert joined.endswith(f"-P -m powerflow.pipeline.ranks --params {tmp_path / 'params.yaml'} --alpha 2.0 --objective la_tb")


@pytest.mark.slow
def test_two_gloo_ranks_give_the_single_process_gradients(tmp_path):
    """Gradients after one step's backward on a fixed batch: two ranks with half each = one process on all.

    The PowerFlow loss is a mean over the batch, L = (1/8) Σ_y w(y) δ(y)², and each rank computes it on
    its 4 samples. DDP averages the policy's gradients across ranks and _before_optimizer_step averages
    the log Z head's (accelerator.reduce mean); the mean of the two half-batch means is the full-batch
    mean, so every gradient must equal the single-process one on the 8 samples (float tolerance). The
    head's warm start (its bias set from the batch's residuals, gathered across ranks) must agree too.
    The inputs are sampled once here and fed to both runs: no sampling randomness in the comparison.
    """
    trainer = ranks.build_trainer(tmp_path / "single")
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA's B and the head's output layer start at 0: every gradient before them would be 0
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
        trainer.logz_head.out.weight.normal_(0.0, 0.05)
    state = ranks.trainable_state(trainer)
    batch = trainer._generate_and_score_completions([{"prompt": ranks.CFG.prompt}] * ranks.CFG.num_generations)
    torch.save({"state": state, "batch": batch}, tmp_path / "inputs.pt")
    full = ranks.loss_gradients(trainer, trainer.model, batch)
    half = ranks.loss_gradients(trainer, trainer.model, ranks.rank_slice(batch, 0, 2))

    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / CPU_CONFIG),
               "--main_process_port", str(free_port()), str(Path(ranks.__file__)), str(tmp_path / "inputs.pt"),
               str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [r["backend"] for r in results] == ["gloo", "gloo"]
    assert [r["type"] for r in results] == ["DistributedDataParallel"] * 2

    assert any("lora_A" in k for k in full) and any("lora_B" in k for k in full) and "logz_head.out.weight" in full
    for key, expected in full.items():
        assert expected.abs().max() > 0, f"{key}: zero gradient, the comparison would be empty"
        for rank, result in enumerate(results):
            got = result["grads"][key]
            assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7), (
                f"rank {rank} {key}: max |diff| {(got - expected).abs().max():.3g}")
    # the halves differ: without the cross-rank reductions a rank would hold its own half's gradients
    differs = [k for k in full if k != "warm_bias" and not torch.allclose(half[k], full[k], rtol=1e-3, atol=1e-6)]
    assert "logz_head.out.weight" in differs and any("lora_" in k for k in differs)


@pytest.mark.slow
def test_train_stage_on_two_cpu_ranks_writes_the_policy_and_one_run(tmp_path):
    project = make_project(tmp_path / "proj", alphas=(2.0,), git=False)
    (project / "infra" / "accelerate").mkdir(parents=True)
    shutil.copy(ROOT / CPU_CONFIG, project / CPU_CONFIG)
    for cmd in (["powerflow", "prepare"], ["powerflow", "pretrain"]):
        done = run(cmd, project)
        assert done.returncode == 0, done.stderr[-3000:]

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"].update(accelerate_config="infra/accelerate/missing.yaml", num_processes=2)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    bad = run(["powerflow", "train", "--alpha", "2.0", "--objective", "la_tb"], project)
    assert bad.returncode == 2 and "powerflow: error: train.accelerate_config" in bad.stderr
    assert not (project / "models" / "policies").exists()

    params["train"]["accelerate_config"] = CPU_CONFIG
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = run(["powerflow", "train", "--alpha", "2.0", "--objective", "la_tb"], project, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "rank: 1" not in done.stderr  # no failed rank reported by torchrun
    policy = project / "models" / "policies" / "alpha-2.0-la_tb-s0"
    for name in ("model.safetensors", "config.json", "logz_head.safetensors", "powerflow_config.json"):
        assert (policy / name).is_file(), name
    assert not (policy / "adapter_model.safetensors").exists()  # LoRA merged, as a one-process run saves it
    out = project / "outputs" / "train" / "alpha-2.0-la_tb-s0"
    metrics = json.loads((out / "metrics.json").read_text())
    steps = params["train"]["steps"]
    assert metrics["train/steps"] == steps and metrics["alpha"] == 2.0
    assert len((out / "history.csv").read_text().strip().splitlines()) == 1 + steps

    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = MlflowClient()
    members = [r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
               if r.info.run_name == "alpha-2.0-la_tb-s0"]
    assert len(members) == 1 and members[0].info.status == "FINISHED"
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    assert members[0].info.run_id == run_id
    for key in ("train/loss", "train/powerflow/log_z", "train/grad_norm"):
        history = client.get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == list(range(1, steps + 1)), key  # once per step: rank 0 only


def test_a_failing_rank_fails_the_step_with_a_launch_error(tmp_path, capfd):
    params = tiny_params()
    params["train"].update(accelerate_config="cpu.yaml", num_processes=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(CONFIGS / "ddp_cpu.yaml", tmp_path / "cpu.yaml")
    cfg = load_pipeline_config(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").unlink()  # every rank fails to read its params
    result = tmp_path / "metrics.json"
    result.write_text("{}")  # a stale result must not pass for this launch's
    with pytest.raises(LaunchError, match=r"accelerate launch --config_file .*cpu.yaml` exited with status"):
        train_on_ranks(cfg, rank_arguments("2.0", "la_tb"), result)
    assert not result.exists()
    # Every rank fails; the launcher stops the others when the first one exits, so which rank gets to
    # print first depends on scheduling: some rank's error, naming its rank and the cause, reaches the user.
    err = capfd.readouterr().err
    assert re.search(r"powerflow: error \(rank [01]\): params file .*params.yaml not f", err), err[-2000:]
