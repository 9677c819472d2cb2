"""The `powerflow` console script: the one entry point DVC stages, Prefect tasks and users call.

Each subcommand parses its arguments, loads params.yaml through powerflow.config, calls one
library function and writes its outputs atomically. Errors a user can fix (bad params, missing
files) print one line starting with "powerflow: error:" and exit with status 2; nothing is
written in that case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from powerflow.config.sections import load_exact_config
from powerflow.errors import ConfigError, UserError
from powerflow.orchestration import ORCHESTRATORS, prefect_server_url

EXIT_USAGE = 2


def _set_offline_defaults() -> None:
    """Telemetry off and hubs offline unless the user set otherwise (called by main only)."""
    for key, value in {
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DISABLE_MLFLOW_INTEGRATION": "TRUE",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
        "DVC_NO_ANALYTICS": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }.items():
        os.environ.setdefault(key, value)


def cmd_verify_exact(args: argparse.Namespace) -> int:
    """Train on an enumerable model for each α and objective; report the exact KL to the target."""
    cfg = load_exact_config(args.params)
    if args.steps is not None:
        if args.steps <= 0:
            raise ConfigError(f"--steps {args.steps}: use a positive number of steps.")
        from dataclasses import replace

        cfg = replace(cfg, steps=args.steps)
    from powerflow.io import write_json_atomic
    from powerflow.verify import format_table, run_exact_check

    result = run_exact_check(cfg, progress=lambda msg: print(msg, flush=True))
    print()
    print(format_table(result))
    path = write_json_atomic(result, args.out)
    print(f"\nwrote {path}")
    return 0


# ------------------------------------------------------------------ orchestration
def run_stage(args: argparse.Namespace, stage: str, direct, flow_name: str, **kwargs):
    """Run one stage through its Prefect flow or directly; record the time split in outputs/timing/."""
    from powerflow import timing
    from powerflow.config import load_pipeline_config

    started = time.perf_counter()
    cfg = load_pipeline_config(args.params)
    from powerflow.orchestration import use_prefect

    orchestrated = use_prefect(args.orchestrator)
    if orchestrated:
        import flows.stages

        result = getattr(flows.stages, flow_name)(params=str(cfg.path), **kwargs)
    else:
        result = direct(cfg)
    wall = time.perf_counter() - started
    steps = timing.step_seconds()
    record = {"stage": stage, "orchestrator": "prefect" if orchestrated else "none", "wall_seconds": wall,
              "step_seconds": sum(steps.values()), "steps": steps,
              "overhead_seconds": wall - sum(steps.values())}
    from powerflow.io import write_json_atomic

    label = "-".join([stage] + [str(v) for v in kwargs.values() if isinstance(v, (str, int, float))])
    write_json_atomic(record, cfg.project_root / "outputs" / "timing" / f"{label}.json")
    return result


def cmd_prepare(args):
    """Load the prompt source, validate it with Great Expectations, write data/prepared/."""
    from powerflow.pipeline.prepare import prepare_prompts
    from powerflow.timing import measured

    manifest = run_stage(args, "prepare", measured(prepare_prompts), "prepare_flow")
    print(f"prepared prompts: {json.dumps(manifest.get('rows', {}))}, sha256 {manifest.get('prompts_sha256', '')[:12]}")
    return 0


def cmd_pretrain(args):
    """Pretrain the embedded world's base model into models/base/ (skipped for hub/local models)."""
    from powerflow.pipeline.base import pretrain_base
    from powerflow.timing import measured

    metrics = run_stage(args, "base", measured(pretrain_base), "base_flow")
    print(json.dumps(metrics, indent=1, default=str))
    return 0


def cmd_train(args):
    """Fine-tune one policy toward p_base^alpha (--alpha) or a baseline (--method grpo|empo); log it to MLflow."""
    from powerflow.pipeline.layout import check_baseline
    from powerflow.pipeline.train import train_baseline_member, train_member
    from powerflow.timing import measured

    if args.method:
        method = check_baseline(args.method)
        summary = run_stage(args, "train", lambda cfg: train_baseline_member(cfg, method, step=measured),
                            "train_baseline_flow", method=method)
        print(json.dumps(summary, indent=1, default=str))
        return 0
    member = member_of(args)
    summary = run_stage(args, "train", lambda cfg: train_member(cfg, member, step=measured),
                        "train_flow", alpha=member.alpha, objective=member.objective, seed=member.seed)
    print(json.dumps(summary, indent=1, default=str))
    return 0


def cmd_register(args):
    """Register an evaluated policy or baseline (--method) in the MLflow Model Registry (idempotent)."""
    from powerflow.pipeline.layout import check_baseline
    from powerflow.pipeline.register import register_baseline, register_policy
    from powerflow.timing import measured

    if args.method:
        method = check_baseline(args.method)
        record = run_stage(args, "register", lambda cfg: measured(register_baseline)(cfg, method),
                           "register_baseline_flow", method=method)
        print(f"registered {record['name']} version {record['version']} ({'new' if record['created'] else 'existing'})")
        return 0
    member = member_of(args)
    record = run_stage(args, "register", lambda cfg: measured(register_policy)(cfg, member),
                       "register_flow", alpha=member.alpha, objective=member.objective, seed=member.seed)
    print(f"registered {record['name']} version {record['version']} ({'new' if record['created'] else 'existing'})")
    return 0


def member_of(args: argparse.Namespace):
    """The sweep member --alpha/--objective/--seed name (objective and seed may be left out when the
    sweep has only one): α is parsed here, once, and looked up in params.yaml's sweep."""
    from powerflow.config import load_pipeline_config

    if args.alpha is None:
        raise UserError("--alpha is required (or --method for a baseline): e.g. --alpha 4.0.")
    return load_pipeline_config(args.params).sweep.member(args.alpha, args.objective, args.seed)


def cmd_evaluate(args):
    """Evaluate the base model (--run base), a sweep member (--run alpha-4.0-la_tb-s0) or --model-uri."""
    from powerflow.pipeline.evaluate import evaluate_member, evaluate_registered
    from powerflow.timing import measured

    if args.model_uri:
        metrics = run_stage(args, "evaluate-registered",
                            lambda cfg: measured(evaluate_registered)(cfg, args.model_uri),
                            "evaluate_registered_flow", model_uri=args.model_uri)
    else:
        metrics = run_stage(args, "evaluate", lambda cfg: evaluate_member(cfg, args.run, step=measured),
                            "evaluate_flow", run=args.run)
    print(json.dumps(metrics, indent=1, sort_keys=True, default=str))
    return 0


def cmd_report(args):
    """Compare the sweep: report.md, plots, registry aliases; log it to the sweep's parent run."""
    from powerflow.pipeline.report import report_sweep
    from powerflow.timing import measured

    result = run_stage(args, "report", lambda cfg: report_sweep(cfg, step=measured), "report_flow")
    print(f"wrote {result['report']}; aliases: {json.dumps(result['aliases'])}")
    return 0


def cmd_sweep(args):
    """Run the α sweep end to end: a local Prefect server, `dvc repro report` (`dvc exp run -S ...` with
    --set-param), the table, the MLflow UI command."""

    from powerflow.config import load_pipeline_config
    from powerflow.orchestration import local_prefect_server
    from powerflow.pipeline.runs import tracking_experiment

    cfg = load_pipeline_config(args.params)
    if args.set_param:
        check_overrides(args.params, args.set_param)  # a bad override fails here, before DVC changes anything
    tracking_experiment(cfg)  # an unreachable tracking server fails here, before any work
    root = cfg.project_root
    timing_dir = root / "outputs" / "timing"
    if timing_dir.is_dir():
        for old in timing_dir.glob("*.json"):
            old.unlink()
    started = time.perf_counter()
    dvc = str(Path(sys.executable).with_name("dvc"))
    if args.set_param:  # an experiment: DVC writes the overrides into params.yaml and records them
        command = [dvc, "exp", "run", *[a for kv in args.set_param for a in ("-S", kv)], *args.targets]
    else:
        command = [dvc, "repro", *args.targets]
    if args.orchestrator == "none" or prefect_server_url():
        startup = 0.0
        status = subprocess.run(command, cwd=root, env=os.environ | {"POWERFLOW_ORCHESTRATOR": args.orchestrator}).returncode
    else:
        with local_prefect_server(root / ".prefect") as server:
            startup = server.startup_seconds
            print(f"Prefect server up at {server.api_url} in {startup:.1f} s", flush=True)
            env = os.environ | server.client_env() | {"POWERFLOW_ORCHESTRATOR": "prefect"}
            status = subprocess.run(command, cwd=root, env=env).returncode
    wall = time.perf_counter() - started
    if status != 0:
        print(f"powerflow: error: `{' '.join(command[1:3])}` failed (exit {status}); the stage's error is printed "
              "above. Fix it and run the same command again: finished stages are not repeated.", file=sys.stderr)
        return status
    if args.set_param:
        cfg = load_pipeline_config(args.params)  # params.yaml now holds the overrides (DVC's experiment)
    print(sweep_summary(cfg, wall, startup))
    return 0


def check_overrides(params_path: str, overrides: list[str]) -> None:
    """Validate `-S key=value` overrides (YAML values, dotted keys) against params.yaml, in memory.

    DVC applies them to params.yaml itself (`dvc exp run -S`); this only makes a bad key or value
    fail with the config's own error before any stage runs.
    """
    import tempfile

    import yaml

    from powerflow.config import load_pipeline_config
    from powerflow.config.parse import load_params

    params = load_params(params_path)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(f"-S {item!r}: write section.key=value, e.g. -S 'sweep.seeds=[0,1,2]'.")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"-S {item!r}: the value is not valid YAML ({err}); write e.g. "
                              "-S 'sweep.seeds=[0,1,2]'.") from err
        node = params
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"-S {item!r}: {part} is not a section of params.yaml.")
        node[parts[-1]] = value
    # validated where params.yaml is, so relative paths in it (train.accelerate_config) resolve the same
    folder = Path(params_path).resolve().parent
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=folder, prefix=".params-check-", delete=False) as f:
        yaml.safe_dump(params, f, sort_keys=False)
    try:
        load_pipeline_config(f.name)
    finally:
        Path(f.name).unlink(missing_ok=True)


def sweep_summary(cfg, wall: float, prefect_startup: float) -> str:
    """The headline table, where the time went, and how to open the MLflow UI."""
    from powerflow import tracking
    from powerflow.io import write_json_atomic
    from powerflow.pipeline.layout import layout_of
    from powerflow.pipeline.report import collect_runs
    from powerflow.report.tables import headline_rows, headline_table_markdown

    runs, _ = collect_runs(cfg)
    records = [json.loads(p.read_text()) for p in sorted((cfg.project_root / "outputs" / "timing").glob("*.json"))
               if p.name != "sweep.json"]
    overhead = sum(r["overhead_seconds"] for r in records)
    timing = {"pipeline_seconds": wall, "prefect_startup_seconds": prefect_startup,
              "stage_commands": len(records), "stage_overhead_seconds": overhead,
              "step_seconds": sum(r["step_seconds"] for r in records)}
    write_json_atomic(timing, cfg.project_root / "outputs" / "timing" / "sweep.json")
    uri = tracking.resolve_tracking_uri(cfg.tracking, cfg.project_root)
    return "\n".join([
        "", headline_table_markdown(headline_rows(runs)), "",
        f"pipeline time {wall / 60:.1f} min for {len(records)} stage commands that ran "
        f"(steps {timing['step_seconds']:.0f} s; imports + Prefect bookkeeping {overhead:.0f} s; "
        f"Prefect server start-up {prefect_startup:.0f} s)",
        f"report: {layout_of(cfg).report / 'report.md'}",
        f"MLflow UI: {Path(sys.executable).with_name('mlflow')} ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"
        if uri.startswith("sqlite") else f"MLflow UI: {uri}",
    ])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--orchestrator", choices=ORCHESTRATORS, default=os.environ.get("POWERFLOW_ORCHESTRATOR", "auto"),
                   help="run the stage as a Prefect flow (prefect), directly (none), or prefect only when a "
                        "server answers at PREFECT_API_URL (auto, the default; env POWERFLOW_ORCHESTRATOR)")


def _member(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--alpha", help="the power alpha (> 0), as written in params.yaml")
    which.add_argument("--method", help="a trained baseline instead: grpo or empo")
    p.add_argument("--objective", default=None,
                   help="la_tb, tb or tb_token (default: sweep.objectives' only objective; required when it lists several)")
    p.add_argument("--seed", type=int, default=None,
                   help="the member's training seed, one of sweep.seeds (default: its only seed; required when "
                        "sweep.seeds lists several)")


# ------------------------------------------------------------------------- presets
def cmd_preset_list(args: argparse.Namespace) -> int:
    """List the shipped parameter presets (name and summary)."""
    from powerflow.presets import get_preset, preset_names

    for name in preset_names():
        print(f"{name:45s} {get_preset(name).description}")
    return 0


def cmd_preset_show(args: argparse.Namespace) -> int:
    """Print a preset's YAML (an overlay on params.yaml), with its memory arithmetic."""
    from powerflow.presets import get_preset

    print(get_preset(args.name).text, end="")
    return 0


def cmd_preset_apply(args: argparse.Namespace) -> int:
    """Merge a preset over params.yaml, validate the result, then replace params.yaml with it.

    With --model DIR it writes the preset's CPU check instead: the same preset with a local model
    swapped in, vLLM, bf16 and accelerate off and steps, batches and lengths cut to a few, so
    `dvc repro report` runs the preset's whole configuration on this CPU in minutes (--data and
    --source swap in local files for the preset's hub data and benchmarks).
    """
    from powerflow.presets import apply_cpu_check, apply_preset, cpu_check_summary, parse_source_options

    if args.model is None:
        if args.data is not None or args.source:
            raise UserError("--data and --source belong to the CPU check: add --model DIR (a local model "
                            "directory), or drop them to apply the preset as it is.")
        path = apply_preset(args.name, args.params)
        print(f"wrote {path}: preset {args.name} merged over it (validated); run `dvc repro` or `powerflow sweep`")
        return 0
    check = apply_cpu_check(args.name, args.params, args.model, data=args.data,
                            sources=parse_source_options(args.source))
    print(cpu_check_summary(args.name, check))
    return 0


def _add_preset_parser(sub) -> None:
    import inspect

    preset = sub.add_parser("preset", help="parameter presets for the seed's models (GPU)",
                            description="Named overlays on params.yaml: the seed's models and settings (docs/gpu.md).")
    actions = preset.add_subparsers(dest="preset_command", metavar="ACTION", required=True)
    actions.add_parser("list", help=cmd_preset_list.__doc__).set_defaults(func=cmd_preset_list)
    show = actions.add_parser("show", help=cmd_preset_show.__doc__)
    show.add_argument("name", help="preset name (see `powerflow preset list`)")
    show.set_defaults(func=cmd_preset_show)
    apply = actions.add_parser(
        "apply", help=cmd_preset_apply.__doc__.splitlines()[0], description=inspect.cleandoc(cmd_preset_apply.__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="CPU check, before renting a GPU:\n"
               "  powerflow preset apply llama-3.1-8b-instruct-alpha2-reasoning --model tiny-model/ \\\n"
               "      --data math.jsonl --source math500=math500.jsonl --source gpqa_diamond=gpqa.csv\n"
               "  dvc repro report\n"
               "It overrides model.name_or_path (DIR); train.use_vllm, bf16: false; accelerate_config, "
               "num_processes: null;\ntrain.steps and save_steps 2, prompts_per_step 2, num_generations 2, "
               "gradient_accumulation_steps\n1 or 2 (as the preset accumulates or not), max_completion_length 16; "
               "evaluate.backend transformers,\nn_samples 2, max_new_tokens 16, max_prompts_per_family 2, "
               "diagnostics at most 2; baselines.mcmc_* and smc_particles cut;\ndata.source (--data) and "
               "evaluate.sources "
               "(--source). Everything else is the preset's, validated as it is\nfirst (the GPU run's params), "
               "then with the overrides; it prints each value it changed.")
    apply.add_argument("name", help="preset name (see `powerflow preset list`)")
    apply.add_argument("--params", default="params.yaml", help="the params file to rewrite (default params.yaml)")
    apply.add_argument("--model", metavar="DIR", default=None,
                       help="CPU check: a local model directory (save_pretrained's files) in place of the preset's "
                            "hub model; turns on the CPU-check overrides (see below)")
    apply.add_argument("--data", metavar="FILE", default=None,
                       help="CPU check: a .jsonl/.csv/.parquet prompt file for data.source, in the preset's "
                            "data.columns (e.g. a `problem` column for the MATH presets)")
    apply.add_argument("--source", action="append", default=[], metavar="BENCHMARK=FILE",
                       help="CPU check: a local file for one of the preset's evaluate.benchmarks "
                            "(evaluate.sources.BENCHMARK), e.g. math500=math500.jsonl; repeatable")
    apply.set_defaults(func=cmd_preset_apply)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="powerflow",
        description="Fine-tune a language model to sample from p_base(y|q)^alpha (GFlowNet trajectory balance).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    verify = sub.add_parser(
        "verify-exact",
        help="train on a tiny enumerable model for each alpha and report the exact KL to the target",
        description=cmd_verify_exact.__doc__,
    )
    verify.add_argument("--params", default="params.yaml", help="params file (section `exact:`)")
    verify.add_argument("--out", default="outputs/exact/metrics.json", help="where to write the JSON report")
    verify.add_argument("--steps", type=int, default=None, help="override exact.steps (quick runs)")
    verify.set_defaults(func=cmd_verify_exact)

    for name, fn, extra in [
        ("prepare", cmd_prepare, None), ("pretrain", cmd_pretrain, None), ("train", cmd_train, _member),
        ("register", cmd_register, _member), ("report", cmd_report, None),
    ]:
        p = sub.add_parser(name, help=fn.__doc__.splitlines()[0], description=fn.__doc__)
        _common(p)
        if extra:
            extra(p)
        p.set_defaults(func=fn)
    sw = sub.add_parser("sweep", help=cmd_sweep.__doc__, description=cmd_sweep.__doc__)
    _common(sw)
    sw.add_argument("targets", nargs="*", default=["report"], help="dvc repro targets (default: report)")
    sw.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                    help="run the sweep as a DVC experiment with this params.yaml override (`dvc exp run -S`), e.g. "
                         "-S 'sweep.seeds=[0,1,2]'; repeatable. DVC writes it into params.yaml and records the "
                         "experiment (`dvc exp show`); `git checkout params.yaml` goes back.")
    sw.set_defaults(func=cmd_sweep)
    ev = sub.add_parser("evaluate", help=cmd_evaluate.__doc__, description=cmd_evaluate.__doc__)
    _common(ev)
    target = ev.add_mutually_exclusive_group(required=True)
    target.add_argument("--run", help='"base", a sweep member such as alpha-4.0-la_tb-s0 (α, objective, seed), or a '
                                      'baseline run: grpo, empo, mcmc-4.0, smc-4.0, low_temperature-4.0, verbalized, '
                                      'high_temperature')
    target.add_argument("--model-uri", help="a registered version, e.g. models:/powerflow-world@best-reasoning")
    ev.set_defaults(func=cmd_evaluate)
    _add_preset_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    _set_offline_defaults()
    try:
        return args.func(args)
    except (UserError, FileNotFoundError) as err:
        print(f"powerflow: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
