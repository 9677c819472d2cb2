"""Entry point of one rank launched by `accelerate launch` (powerflow.distributed.train_on_ranks).

    python -P -m powerflow.pipeline.ranks --params params.yaml (--alpha A --objective O --seed S | --method M)
        [--run-id ID]

runs the train step in this rank with POWERFLOW_ACCELERATE_RANK=1 set, so it trains instead of
launching again. It lives in the pipeline package (not in powerflow.distributed) so that the
launcher does not import the train stage that imports the launcher.
"""

from __future__ import annotations

import argparse
import os
import sys

from powerflow.distributed import RANK_ENV
from powerflow.errors import UserError


def rank_main(argv: list[str] | None = None) -> int:
    """Entry point of one launched rank: the train step of `argv`, in this rank."""
    parser = argparse.ArgumentParser(prog="python -m powerflow.pipeline.ranks", description=rank_main.__doc__)
    parser.add_argument("--params", required=True)
    parser.add_argument("--alpha")
    parser.add_argument("--objective")
    parser.add_argument("--seed", help="the member's training seed (default: sweep.seeds' only seed)")
    parser.add_argument("--method")
    parser.add_argument("--run-id")
    args = parser.parse_args(argv)
    os.environ[RANK_ENV] = "1"
    from powerflow.config import load_pipeline_config
    from powerflow.pipeline.train import train_baseline, train_policy

    try:
        cfg = load_pipeline_config(args.params)
        if args.method:
            train_baseline(cfg, args.method, run_id=args.run_id)
        else:
            train_policy(cfg, cfg.sweep.member(args.alpha, args.objective, args.seed), run_id=args.run_id)
    except UserError as err:
        print(f"powerflow: error (rank {os.environ.get('RANK', '0')}): {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(rank_main())
