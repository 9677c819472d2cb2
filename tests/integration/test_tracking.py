"""powerflow.tracking against a real MLflow SQLite store (one per module: creating it costs seconds)."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from powerflow.errors import UserError
from powerflow.tracking import (
    CHECKPOINT_SHA_TAG,
    ROLE_TAG,
    SWEEP_TAG,
    ModelVersionNotFoundError,
    TrackingConfig,
    TrackingUnavailableError,
    connect,
    download_checkpoint,
    log_artifacts,
    log_metrics,
    register_checkpoint,
    resolve_version,
    set_alias,
    start_child_run,
    sweep_parent_run,
)
from powerflow.tracking.callback import MlflowStepLogger
from powerflow.world.enumerable import build_model, build_tokenizer, save_pair

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # MLflow's advice on type hints/examples

VERSION_TAGS = {"alpha": "4.0", "objective": "la_tb", "base_model": "world/base", "prompts_sha256": "p" * 64,
                "git_commit": "0" * 40, "params_sha256": "f" * 64}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """connect() with the default config: a fresh sqlite store in a project root; env restored after."""
    import mlflow

    root = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", "")  # unset for resolve_tracking_uri; restored afterwards
        mp.chdir(tmp_path_factory.mktemp("elsewhere"))  # the store must not depend on the cwd
        experiment_id = connect(TrackingConfig(), root)
        yield {"root": root, "experiment_id": experiment_id, "uri": mlflow.get_tracking_uri()}
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny Qwen2 + WordLevel tokenizer directory, with the extra files a powerflow checkpoint has."""
    tokenizer = build_tokenizer(4)
    model = build_model(len(tokenizer), seed=0, init_scale=0.3)
    path = save_pair(model, tokenizer, tmp_path_factory.mktemp("ckpt") / "policy")
    from safetensors.torch import save_file

    save_file({"weight": torch.ones(2, 2)}, str(path / "logz_head.safetensors"))
    (path / "powerflow_config.json").write_text(json.dumps({"alpha": 4.0}))
    return path


@pytest.fixture(scope="module")
def child_run(store):
    parent = sweep_parent_run(store["experiment_id"], "registry-sweep")
    return start_child_run(store["experiment_id"], parent, "alpha=4/la_tb", {"train": {"alpha": 4.0}}, {})


def client():
    from mlflow import MlflowClient

    return MlflowClient()


def test_default_store_is_sqlite_in_the_project_root_with_absolute_artifacts(store):
    root = store["root"].resolve()
    assert store["uri"] == f"sqlite:///{root / 'mlflow.db'}"
    assert (root / "mlflow.db").is_file()
    experiment = client().get_experiment(store["experiment_id"])
    assert experiment.name == "powerflow"
    assert experiment.artifact_location.removeprefix("file://") == str(root / "mlartifacts")
    assert connect(TrackingConfig(), root) == store["experiment_id"]  # found again, not re-created


def test_deleted_experiment_is_a_user_error_with_the_fix(store):
    other = connect(TrackingConfig(experiment="scratch"), store["root"])
    client().delete_experiment(other)
    with pytest.raises(UserError, match="mlflow experiments restore"):
        connect(TrackingConfig(experiment="scratch"), store["root"])
    connect(TrackingConfig(), store["root"])  # leave the module's experiment active


def test_sweep_parent_run_is_found_again_not_duplicated(store):
    exp = store["experiment_id"]
    first = sweep_parent_run(exp, "sweep-a", tags={"purpose": "test"})
    assert sweep_parent_run(exp, "sweep-a") == first
    other = sweep_parent_run(exp, "sweep-b")
    assert other != first
    runs = client().search_runs([exp], filter_string=f"tags.`{SWEEP_TAG}` = 'sweep-a'")
    assert [r.info.run_id for r in runs] == [first]
    assert runs[0].data.tags[ROLE_TAG] == "parent" and runs[0].data.tags["purpose"] == "test"
    client().delete_run(first)
    assert sweep_parent_run(exp, "sweep-a") not in (first, other)  # a deleted parent is not reused


def test_of_two_parents_of_a_sweep_the_oldest_is_kept(store):
    """What a creation race leaves behind: both callers resolve to the same, oldest parent."""
    exp = store["experiment_id"]
    tags = {SWEEP_TAG: "raced", ROLE_TAG: "parent"}
    older = client().create_run(exp, start_time=1_000, tags=tags).info.run_id
    client().create_run(exp, start_time=2_000, tags=tags)
    assert sweep_parent_run(exp, "raced") == older


def test_child_run_carries_parent_id_dotted_params_and_ends_finished(store):
    exp = store["experiment_id"]
    parent = sweep_parent_run(exp, "sweep-c")
    params = {"train": {"learning_rate": 0.003, "objective": "la_tb"}, "alpha": 2.0}
    run_id = start_child_run(exp, parent, "alpha=2/la_tb", params, {"powerflow.alpha": "2.0"})
    run = client().get_run(run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags[SWEEP_TAG] == "sweep-c" and run.data.tags[ROLE_TAG] == "child"
    assert run.data.tags["powerflow.alpha"] == "2.0"
    assert run.info.run_name == "alpha=2/la_tb"
    assert run.data.params == {"train.learning_rate": "0.003", "train.objective": "la_tb", "alpha": "2.0"}
    assert run.info.status == "FINISHED"


def test_metrics_and_artifacts_are_logged_to_a_finished_run(store, tmp_path):
    exp = store["experiment_id"]
    run_id = start_child_run(exp, sweep_parent_run(exp, "sweep-m"), "m", {}, {})
    log_metrics(run_id, {"eval/reasoning/accuracy": 0.5, "eval/pass@1": 0.25})
    log_metrics(run_id, {"eval/reasoning/accuracy": 0.75}, step=10)
    history = client().get_metric_history(run_id, "eval/reasoning/accuracy")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (10, 0.75)]
    assert client().get_run(run_id).data.metrics["eval/pass_at_1"] == 0.25
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "kl.png").write_bytes(b"png")
    (tmp_path / "config.yaml").write_text("train: {}\n")
    log_artifacts(run_id, tmp_path / "config.yaml")
    log_artifacts(run_id, tmp_path / "plots", "plots")
    listed = {a.path for a in client().list_artifacts(run_id)} | {a.path for a in client().list_artifacts(run_id, "plots")}
    assert {"config.yaml", "plots", "plots/kl.png"} <= listed
    with pytest.raises(FileNotFoundError, match="missing.json"):
        log_artifacts(run_id, tmp_path / "missing.json")


def test_step_logger_hooks_log_numbers_at_the_global_step(store):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    exp = store["experiment_id"]
    run_id = start_child_run(exp, sweep_parent_run(exp, "sweep-l"), "hooks", {}, {})
    logger = MlflowStepLogger(run_id)
    args = TrainingArguments(output_dir="unused", report_to=[])
    for step in (5, 7):
        state = TrainerState(global_step=step)
        logs = {"loss": 1.0 / step, "powerflow/log_z": -2.0, "train/already": 3, "note": "text", "flag": True,
                "sizes": [1, 2]}
        logger.on_log(args, state, TrainerControl(), logs=logs)
    logger.on_log(args, TrainerState(global_step=9, is_world_process_zero=False), TrainerControl(), logs={"loss": 9.0})
    history = client().get_metric_history(run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(5, 0.2), (7, 1.0 / 7)]
    metrics = client().get_run(run_id).data.metrics
    assert set(metrics) == {"train/loss", "train/powerflow/log_z", "train/already"}


def test_step_logger_records_every_step_of_a_real_trainer(store, tmp_path):
    from transformers import Trainer, TrainingArguments

    exp = store["experiment_id"]
    run_id = start_child_run(exp, sweep_parent_run(exp, "sweep-l"), "trainer", {}, {})
    tokenizer = build_tokenizer(4)
    model = build_model(len(tokenizer), seed=0)
    ids = torch.tensor([[1, 2, 3, 0], [2, 3, 4, 0]])
    data = [{"input_ids": row, "labels": row} for row in ids]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, logging_steps=1, per_device_train_batch_size=2,
                             report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=data, callbacks=[MlflowStepLogger(run_id)]).train()
    steps = sorted(m.step for m in client().get_metric_history(run_id, "train/loss"))
    assert steps == [1, 2, 3]
    assert "train/train_runtime" in client().get_run(run_id).data.metrics  # end-of-training summary


def test_registering_a_checkpoint_twice_gives_one_version_with_its_tags(store, checkpoint, child_run):
    started = time.perf_counter()
    first = register_checkpoint(child_run, checkpoint, "powerflow-test-twice", VERSION_TAGS)
    seconds = time.perf_counter() - started
    print(f"register_checkpoint: {seconds:.2f} s")
    again = register_checkpoint(child_run, checkpoint, "powerflow-test-twice", VERSION_TAGS)
    assert (first.created, again.created) == (True, False)
    assert again == dataclass_replace(first, created=False)
    assert first.uri == f"models:/powerflow-test-twice/{first.version}" and first.run_id == child_run
    versions = client().search_model_versions("name = 'powerflow-test-twice'")
    assert len(versions) == 1
    tags = versions[0].tags
    from powerflow.io import sha256_of_path

    assert tags == {**VERSION_TAGS, CHECKPOINT_SHA_TAG: sha256_of_path(checkpoint)}
    assert len(client().search_logged_models([store["experiment_id"]],
                                             filter_string="name = 'policy'").to_list()) >= 1


def test_a_changed_checkpoint_is_a_second_version(store, checkpoint, child_run, tmp_path):
    import shutil

    changed = Path(shutil.copytree(checkpoint, tmp_path / "changed"))
    (changed / "powerflow_config.json").write_text(json.dumps({"alpha": 2.0}))
    first = register_checkpoint(child_run, checkpoint, "powerflow-test-changed", VERSION_TAGS)
    second = register_checkpoint(child_run, changed, "powerflow-test-changed", {**VERSION_TAGS, "alpha": "2.0"})
    assert second.created and int(second.version) == int(first.version) + 1
    assert client().get_model_version("powerflow-test-changed", second.version).tags["alpha"] == "2.0"


def test_the_same_bytes_from_another_run_are_another_version(store, checkpoint, child_run):
    """Two methods that both left the base unchanged (e.g. GRPO and EMPO with no reward signal) are
    two registrations, each with its own run and tags, not one."""
    parent = sweep_parent_run(store["experiment_id"], "registry-sweep")
    other_run = start_child_run(store["experiment_id"], parent, "empo", {}, {})
    first = register_checkpoint(child_run, checkpoint, "powerflow-test-two-runs", {**VERSION_TAGS, "method": "grpo"})
    second = register_checkpoint(other_run, checkpoint, "powerflow-test-two-runs", {**VERSION_TAGS, "method": "empo"})
    assert first.created and second.created and first.version != second.version
    assert (first.run_id, second.run_id) == (child_run, other_run)
    versions = client().search_model_versions("name = 'powerflow-test-two-runs'")
    assert sorted(v.tags["method"] for v in versions) == ["empo", "grpo"]
    assert register_checkpoint(other_run, checkpoint, "powerflow-test-two-runs", VERSION_TAGS) == dataclass_replace(
        second, created=False)


def test_registering_a_directory_without_a_model_is_a_user_error(child_run, tmp_path):
    with pytest.raises(UserError, match="config.json"):
        register_checkpoint(child_run, tmp_path, "powerflow-test-empty", VERSION_TAGS)


def test_alias_is_set_moved_and_resolved(store, checkpoint, child_run, tmp_path):
    import shutil

    v1 = register_checkpoint(child_run, checkpoint, "powerflow-test-alias", VERSION_TAGS)
    changed = Path(shutil.copytree(checkpoint, tmp_path / "changed"))
    (changed / "powerflow_config.json").write_text("{}")
    v2 = register_checkpoint(child_run, changed, "powerflow-test-alias", VERSION_TAGS)
    set_alias(v1.name, "best-reasoning", v1.version)
    set_alias(v1.name, "best-diversity", v2.version)
    assert resolve_version("models:/powerflow-test-alias@best-reasoning").version == v1.version
    assert resolve_version("models:/powerflow-test-alias@best-diversity").version == v2.version
    set_alias(v1.name, "best-reasoning", v2.version)
    assert resolve_version("models:/powerflow-test-alias@best-reasoning") == dataclass_replace(v2, created=False)
    assert resolve_version(f"models:/powerflow-test-alias/{v1.version}").run_id == child_run
    with pytest.raises(ModelVersionNotFoundError, match="models:/powerflow-test-alias@nobody"):
        resolve_version("models:/powerflow-test-alias@nobody")
    with pytest.raises(ModelVersionNotFoundError, match="models:/<name>"):
        resolve_version("runs:/abc/model")


def test_registered_version_loads_and_generates_in_a_fresh_process(store, checkpoint, child_run):
    version = register_checkpoint(child_run, checkpoint, "powerflow-test-load", VERSION_TAGS)
    set_alias(version.name, "best-reasoning", version.version)
    script = """
import json, sys, time
import pandas as pd
from powerflow.tracking import load_policy
started = time.perf_counter()
policy = load_policy(sys.argv[1])
loaded = time.perf_counter() - started
params = {"max_new_tokens": 6, "temperature": 1.0, "do_sample": True, "seed": 3}
sampled = policy.predict(["a b", "c", "d"], params=params)
frame = policy.predict(pd.DataFrame({"answer": [0, 1, 2], "prompt": ["a b", "c", "d"]}), params=params)
greedy = policy.predict(["a b"], params={"do_sample": False, "max_new_tokens": 6})
print(json.dumps({"sampled": sampled, "frame": frame, "greedy": greedy, "load_s": loaded,
                  "code_imported_as_module": "powerflow.tracking.policy_model" in sys.modules}))
"""
    out = subprocess.run([sys.executable, "-c", script, f"models:/{version.name}@best-reasoning"],
                         check=False, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"load_policy in a fresh process: {result['load_s']:.2f} s")
    assert len(result["sampled"]) == 3 and all(isinstance(s, str) for s in result["sampled"])
    assert result["frame"] == result["sampled"]  # same seed, same prompts: same samples
    letters = [s.replace(" ", "") for s in result["sampled"] + result["greedy"]]  # decoders differ on spaces
    assert all(set(s) <= {"a", "b", "c", "d"} and len(s) <= 6 for s in letters)  # no prompt, no EOS text
    assert any(s for s in result["sampled"])  # something was generated, not only EOS
    assert result["code_imported_as_module"] is False  # the model code ran as MLflow model code


def test_downloaded_checkpoint_loads_with_transformers_and_matches(store, checkpoint, child_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    version = register_checkpoint(child_run, checkpoint, "powerflow-test-download", VERSION_TAGS)
    dst = download_checkpoint(version.uri, tmp_path / "eval" / "model")
    assert dst == tmp_path / "eval" / "model"
    assert {"logz_head.safetensors", "powerflow_config.json", "config.json"} <= {p.name for p in dst.iterdir()}
    loaded = AutoModelForCausalLM.from_pretrained(dst, use_safetensors=True)
    original = AutoModelForCausalLM.from_pretrained(checkpoint, use_safetensors=True)
    for (name, a), (_, b) in zip(loaded.state_dict().items(), original.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert AutoTokenizer.from_pretrained(dst).convert_tokens_to_ids("d") == 4
    download_checkpoint(version.uri, dst)  # again into the same place: replaced whole, still loads
    AutoModelForCausalLM.from_pretrained(dst, use_safetensors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(60)  # MLflow's own retry loop would take minutes; the probe must not
def test_unreachable_server_fails_fast_naming_the_uri(monkeypatch, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.perf_counter()
    with pytest.raises(TrackingUnavailableError, match=uri.replace(".", r"\.")) as err:
        connect(TrackingConfig(timeout_s=2), tmp_path)
    print(f"refused connection reported after {time.perf_counter() - started:.2f} s")
    assert "MLFLOW_TRACKING_URI" in str(err.value)


@pytest.mark.timeout(60)
def test_silent_server_fails_after_the_timeout(monkeypatch, tmp_path):
    with socket.socket() as server:  # accepts connections (kernel backlog) but never answers
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        with pytest.raises(TrackingUnavailableError, match=uri.replace(".", r"\.")):
            connect(TrackingConfig(timeout_s=0.5), tmp_path)


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)
