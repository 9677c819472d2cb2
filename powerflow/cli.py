"""The `powerflow` console script: the one entry point DVC stages, Prefect tasks and users call.

Each subcommand parses its arguments, loads params.yaml through powerflow.config, calls one
library function and writes its outputs atomically. Errors a user can fix (bad params, missing
files) print one line starting with "powerflow: error:" and exit with status 2; nothing is
written in that case.
"""

from __future__ import annotations

import argparse
import os
import sys

from powerflow.config import ConfigError, load_exact_config

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
    except (ConfigError, FileNotFoundError) as err:
        print(f"powerflow: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
