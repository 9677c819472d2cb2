"""The α sweep through real DVC, MLflow (SQLite store + registry) and Great Expectations.

One tiny project runs the whole pipeline once (`dvc repro report`); the tests then check what a
user sees: outputs, MLflow runs and registered versions, a second `dvc repro` doing nothing, one
more α through `dvc exp run -S` re-running only that α, `dvc metrics show`, `dvc plots show`, and
a second training seed through `powerflow sweep -S 'sweep.seeds=[0,1]'` (the README's several-seeds
command) training only the new seed and reporting the seed mean.
"""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow import MlflowClient

from benchmarks.pipeline_project import make_project, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    path = make_project(tmp_path_factory.mktemp("sweep") / "project", alphas=(0.5, 2.0))
    out = run(["dvc", "repro", "report"], path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return path


@pytest.fixture(scope="module")
def client(project):
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    yield MlflowClient()
    mlflow.set_tracking_uri(None)


def test_every_stage_wrote_its_outputs(project):
    assert (project / "data" / "prepared" / "manifest.json").is_file()
    assert (project / "models" / "base" / "model.safetensors").is_file()
    for name in ("alpha-0.5-la_tb-s0", "alpha-2.0-la_tb-s0"):
        assert (project / "models" / "policies" / name / "model.safetensors").is_file()
        assert (project / "models" / "policies" / name / "logz_head.safetensors").is_file()
        metrics = json.loads((project / "outputs" / "eval" / name / "metrics.json").read_text())
        assert 0.0 <= metrics["reasoning/accuracy_mean"] <= 1.0
        assert "open_ended/coverage" in metrics
        # the world oracle: the exact p_base^α of this α and the policy's distance to it
        assert 0.0 < metrics["exact/target/reasoning/accuracy"] < 1.0
        assert metrics["exact/policy/reasoning/kl_target"] >= 0.0
        assert metrics["exact/accuracy_ratio"] == pytest.approx(
            metrics["reasoning/accuracy_mean"] / metrics["exact/target/reasoning/accuracy"])
        # la_tb: also against its own fixed point π*_λ (a length tilt of p^α, with λ per family)
        assert metrics["exact/own_policy/reasoning/kl_target"] >= 0.0
        assert 0.0 < metrics["exact/own_target/reasoning/accuracy"] < 1.0
        assert metrics["exact/own_target/reasoning/lambda"] != 0.0
        assert metrics["exact/own_target/reasoning/accuracy"] != metrics["exact/target/reasoning/accuracy"]
        # below α = 1 the true target reaches outside the support: its share there and accuracy are bounded
        flat = name.startswith("alpha-0.5")
        assert ("exact/target/reasoning/support_share_max" in metrics) == flat
        if flat:
            assert 0.0 < metrics["exact/target/reasoning/support_share_max"] < 1.0
            assert metrics["exact/target/reasoning/accuracy_max"] < metrics["exact/target/reasoning/accuracy"]
        history = (project / "outputs" / "train" / name / "history.csv").read_text().splitlines()
        assert history[0].startswith("step,") and len(history) == 3  # header + 2 steps
    report = (project / "outputs" / "report" / "report.md").read_text()
    assert "alpha-2.0-la_tb-s0" in report
    assert "| p_base^2 (exact) | 2 | exact |" in report and "## Against the exact p_base^α" in report
    assert "## Against each objective's own fixed point" in report and "KL(π*‖π) reasoning" in report
    assert "a standard error across seeds needs ≥ 2 seeds" in report and "seeds) |" not in report
    assert list((project / "outputs" / "report" / "plots").glob("*.png"))
    assert not (project / "runs" / "train" / "alpha-0.5-la_tb-s0").exists()  # checkpoints cleared after success


def test_every_baseline_ran_on_the_same_recipe(project, client):
    """GRPO and EMPO trained, registered and evaluated; MCMC and low temperature evaluated on the base;
    verbalized sampling on the open-ended families of the world's chat model; high temperature."""
    tiny_steps = 2
    for method in ("grpo", "empo"):
        assert (project / "models" / "policies" / method / "model.safetensors").is_file()
        summary = json.loads((project / "outputs" / "train" / method / "metrics.json").read_text())
        assert summary["train/steps"] == tiny_steps and summary["method"] == method  # the same budget
        recipe = json.loads((project / "outputs" / "train" / method / "recipe.json").read_text())
        assert recipe["method"] == method and recipe["max_steps"] == tiny_steps
    mcmc = json.loads((project / "outputs" / "eval" / "mcmc-2.0" / "metrics.json").read_text())
    low = json.loads((project / "outputs" / "eval" / "low_temperature-2.0" / "metrics.json").read_text())
    assert 0.0 <= mcmc["sampler/acceptance_rate"] <= 1.0
    # MCMC pays for its rejected proposals: more tokens generated than the answers hold
    assert mcmc["cost/inference_tokens_per_answer"] > mcmc["cost/tokens_per_answer"]
    assert low["cost/inference_tokens_per_answer"] == pytest.approx(low["cost/tokens_per_answer"])
    # verbalized sampling answers the open-ended families only, asked by their plain request; the judge
    # (the base) scores every open-ended row of every run, its agreement with the answer key beside it
    verbalized = json.loads((project / "outputs" / "eval" / "verbalized" / "metrics.json").read_text())
    settings = json.loads((project / "outputs" / "eval" / "verbalized" / "settings.json").read_text())
    assert [f["family"] for f in settings["families"]] == ["open_ended", "chat"]
    assert "not_applicable" not in settings and not any(k.startswith("reasoning/") for k in verbalized)
    for family in ("open_ended", "chat"):
        assert 0.0 <= verbalized[f"{family}/coverage"] <= 1.0 and 0.0 <= verbalized[f"{family}/validity"] <= 1.0
        assert 0.0 <= verbalized["sampler/parse_failures"] <= 1.0
        for run in ("verbalized", "high_temperature", "base", "alpha-2.0-la_tb-s0"):
            metrics = json.loads((project / "outputs" / "eval" / run / "metrics.json").read_text())
            assert 0.0 <= metrics[f"{family}/judge_failures"] <= 1.0
            assert f"{family}/judge_agreement" in metrics and f"{family}/judged_quality" in metrics
    samples = [json.loads(line) for line in (project / "outputs" / "eval" / "verbalized" / "samples.jsonl").open()]
    assert {s["family"] for s in samples} == {"open_ended", "chat"}
    high = json.loads((project / "outputs" / "eval" / "high_temperature" / "metrics.json").read_text())
    assert high["sampler/temperature"] == 2.0 and "reasoning/accuracy_mean" in high

    experiment = client.get_experiment_by_name("powerflow")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    parent = next(r for r in runs if r.data.tags.get("powerflow.role") == "parent").info.run_id
    for name, method in [("grpo", "grpo"), ("empo", "empo"), ("mcmc-2.0", "mcmc"),
                         ("low_temperature-2.0", "low_temperature"), ("verbalized", "verbalized"),
                         ("high_temperature", "high_temperature")]:
        assert by_name[name].data.tags.get("mlflow.parentRunId") == parent  # siblings of the α runs
        assert by_name[name].data.tags.get("method") == method
    assert "eval/reasoning/accuracy_mean" in by_name["grpo"].data.metrics
    versions = client.search_model_versions("name='powerflow-world'")
    assert {"grpo", "empo"} <= {v.tags.get("method") for v in versions}

    report = (project / "outputs" / "report" / "report.md").read_text()
    assert "## Methods side by side" in report
    for label in ("MCMC power sampling α=2", "GRPO (gold answers)", "EMPO (semantic entropy)",
                  "low temperature α=2", "verbalized sampling | verbalized |", "high temperature T=2 |"):
        assert label in report
    assert "| mcmc-2.0 | 2 |" in report and "| grpo | – |" in report  # a baseline's α column: its own α or –
    assert any(f"Power-Flow {verdict} MCMC power sampling at α=2" in report
               for verdict in ("beat", "matched", "did not match"))


def test_mlflow_has_one_parent_and_a_child_per_alpha(project, client):
    experiment = client.get_experiment_by_name("powerflow")
    assert experiment.artifact_location.startswith(("/", "file:/"))  # absolute, survives DVC temp copies
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("powerflow.role") == "parent"]
    assert len(parents) == 1
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert {"alpha-0.5-la_tb-s0", "alpha-2.0-la_tb-s0", "base"} <= set(children)
    child = children["alpha-2.0-la_tb-s0"]
    assert child.data.params["run.alpha"] == "2.0"
    assert child.data.params["run.seed"] == "0" and child.data.tags["seed"] == "0"
    assert children["grpo"].data.tags["seed"] == "0"  # a baseline trains with train.seed
    assert child.data.params["train.steps"] == "2"
    assert "eval/reasoning/accuracy_mean" in child.data.metrics
    history = client.get_metric_history(child.info.run_id, "train/loss")
    assert [m.step for m in history] == [1, 2]
    manifest = json.loads((project / "data" / "prepared" / "manifest.json").read_text())
    assert child.data.tags["prompts_sha256"] == manifest["prompts_sha256"]


def test_each_checkpoint_is_registered_with_tags_and_aliases(project, client):
    every = client.search_model_versions("name='powerflow-world'")
    assert len(every) == 4  # two α policies, GRPO and EMPO
    versions = [v for v in every if v.tags.get("method") == "power_flow"]
    by_alpha = {v.tags["alpha"]: v for v in versions}
    assert set(by_alpha) == {"0.5", "2"}
    for v in versions:
        assert {"objective", "seed", "base_model", "prompts_sha256", "git_commit", "params_sha256"} <= set(v.tags)
    for v in every:  # registered after its evaluation: the version carries the evaluated numbers
        name = (v.tags.get("method") if v.tags.get("method") != "power_flow"
                else f"alpha-{float(v.tags['alpha'])}-la_tb-s{v.tags['seed']}")
        metrics = json.loads((project / "outputs" / "eval" / name / "metrics.json").read_text())
        assert float(v.tags["eval/reasoning/accuracy_mean"]) == pytest.approx(metrics["reasoning/accuracy_mean"])
    # The report picks the runs; an alias points at each pick (a role with no eligible run has none),
    # and the sweep's own alias (default-best-<role>) too, which another sweep's report leaves alone.
    best = json.loads((project / "outputs" / "report" / "summary.json").read_text())["best"]
    assert best["reasoning"] in {"alpha-0.5-la_tb-s0", "alpha-2.0-la_tb-s0"}
    expected = {f"{prefix}best-{role}": name for role, name in best.items() if name for prefix in ("", "default-")}
    aliases = client.get_registered_model("powerflow-world").aliases
    assert set(aliases) == set(expected)
    for alias, name in expected.items():
        registered = json.loads((project / "outputs" / "register" / f"{name}.json").read_text())
        assert str(aliases[alias]) == str(registered["version"])


def test_registering_again_creates_no_new_version(project, client):
    out = run(["powerflow", "register", "--alpha", "2.0", "--objective", "la_tb"], project)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "existing" in out.stdout
    out = run(["powerflow", "register", "--method", "empo"], project)
    assert out.returncode == 0 and "existing" in out.stdout, out.stderr[-2000:]
    assert len(client.search_model_versions("name='powerflow-world'")) == 4


def test_registered_version_loads_back_and_generates(project):
    from powerflow.tracking import load_policy

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    prompt = json.loads((project / "data" / "prepared" / "prompts.jsonl").read_text().splitlines()[0])["prompt"]
    policy = load_policy("models:/powerflow-world@best-reasoning")
    (text,) = policy.predict([prompt], params={"max_new_tokens": 8, "do_sample": False})
    assert isinstance(text, str) and text


def test_second_repro_runs_nothing(project):
    out = run(["dvc", "repro", "report"], project)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Running stage" not in out.stdout


def test_metrics_and_plots_show_every_alpha(project):
    metrics = run(["dvc", "metrics", "show", "--json"], project)
    assert metrics.returncode == 0, metrics.stderr[-2000:]
    text = metrics.stdout
    assert "outputs/eval/alpha-0.5-la_tb-s0/metrics.json" in text and "reasoning/accuracy_mean" in text
    plots = run(["dvc", "plots", "show", "-o", "plots_html"], project)
    assert plots.returncode == 0, plots.stderr[-2000:]
    assert (project / "plots_html" / "index.html").is_file()


def test_one_more_alpha_runs_only_that_alpha(project):
    out = run(["dvc", "exp", "run", "-S", "sweep.alphas=[0.5,2.0,3.0]", "report"], project)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Running stage 'train@3.0-la_tb-0'" in out.stdout
    assert "Running stage 'train@0.5-la_tb-0'" not in out.stdout
    assert "Running stage 'base'" not in out.stdout
    summary = json.loads((project / "outputs" / "report" / "summary.json").read_text())
    assert "alpha-3.0-la_tb-s0" in summary["runs"]


def test_a_second_seed_trains_only_that_seed_and_the_report_gives_the_seed_mean(project, client):
    """The README's several-seeds command: `powerflow sweep -S ...` runs `dvc exp run -S ...`."""
    out = run(["powerflow", "sweep", "--orchestrator", "none", "-S", "sweep.alphas=[2.0]", "-S", "sweep.seeds=[0,1]"],
              project)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Running stage 'train@2.0-la_tb-1'" in out.stdout
    assert "Running stage 'train@2.0-la_tb-0'" not in out.stdout  # seed 0 is cached
    assert "| alpha-2.0-la_tb (mean over 2 seeds) |" in out.stdout  # the summary table printed at the end

    policies = project / "models" / "policies"
    zero, one = ((policies / f"alpha-2.0-la_tb-s{s}" / "model.safetensors").read_bytes() for s in (0, 1))
    assert zero != one  # another seed trained other weights
    assert json.loads((project / "outputs" / "train" / "alpha-2.0-la_tb-s1" / "metrics.json").read_text())["seed"] == 1

    summary = json.loads((project / "outputs" / "report" / "summary.json").read_text())
    group = summary["groups"]["alpha-2.0-la_tb"]
    assert group["n_seeds"] == 2 and group["seeds"] == "0,1" and group["se_over"] == "seeds"
    accuracies = [summary["runs"][f"alpha-2.0-la_tb-s{s}"]["reasoning/accuracy_mean"] for s in (0, 1)]
    assert group["mean"]["reasoning/accuracy_mean"] == pytest.approx(sum(accuracies) / 2)
    assert group["se"]["reasoning/accuracy_mean"] == pytest.approx(abs(accuracies[0] - accuracies[1]) / 2)
    assert summary["best_groups"]["reasoning"] == "alpha-2.0-la_tb"
    assert summary["best"]["reasoning"] in {"alpha-2.0-la_tb-s0", "alpha-2.0-la_tb-s1"}
    report = (project / "outputs" / "report" / "report.md").read_text()
    assert "| alpha-2.0-la_tb (mean over 2 seeds) |" in report and "2 training seeds per (α, objective)" in report
    means = (project / "outputs" / "report" / "alpha_means.csv").read_text().splitlines()
    assert means[0].startswith("alpha,objective,n_seeds,") and means[1].startswith("2,la_tb,2,")

    (member,) = [r for r in client.search_runs([client.get_experiment_by_name("powerflow").experiment_id])
                 if r.info.run_name == "alpha-2.0-la_tb-s1"]
    assert member.data.tags["seed"] == "1" and member.data.params["run.seed"] == "1"
