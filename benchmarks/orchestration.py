"""Orchestration overhead: the same pipeline stage run directly and as a Prefect flow run.

Baseline: `powerflow <stage> --orchestrator none` (the library step in a plain process).
Measured: `powerflow <stage> --orchestrator prefect` against a local Prefect server started by
this script (its start-up time is reported separately). Both run in the same command, alternated,
on a tiny pipeline project built first with `dvc repro`. Reported: median wall seconds of each,
their ratio, and the median Prefect overhead per stage command in seconds.

    .venv/bin/python -m benchmarks.orchestration --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.pipeline_project import make_project, run
from powerflow.orchestration import local_prefect_server

STAGES = {"report": ["powerflow", "report"], "evaluate-base": ["powerflow", "evaluate", "--run", "base"]}


def timed(cmd: list[str], project: Path, **env: str) -> float:
    started = time.perf_counter()
    out = run(cmd, project, **env)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/orchestration.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project", alphas=(2.0,))
        build = run(["dvc", "repro", "report"], project)
        if build.returncode != 0:
            raise SystemExit(build.stderr[-3000:])
        with local_prefect_server(project / ".prefect") as server:
            results = {"prefect_server_startup_seconds": server.startup_seconds, "stages": {}}
            for stage, cmd in STAGES.items():
                direct, flow = [], []
                for _ in range(args.repeats):
                    direct.append(timed([*cmd, "--orchestrator", "none"], project))
                    flow.append(timed([*cmd, "--orchestrator", "prefect"], project, **server.client_env()))
                results["stages"][stage] = {
                    "direct_seconds": direct, "prefect_seconds": flow,
                    "median_direct": statistics.median(direct), "median_prefect": statistics.median(flow),
                    "ratio_prefect_over_direct": statistics.median(flow) / statistics.median(direct),
                    "overhead_seconds": statistics.median(flow) - statistics.median(direct),
                }
                print(f"{stage:>14}: direct {statistics.median(direct):.1f} s, Prefect flow "
                      f"{statistics.median(flow):.1f} s (x{results['stages'][stage]['ratio_prefect_over_direct']:.2f},"
                      f" +{results['stages'][stage]['overhead_seconds']:.1f} s)")
    print(f"Prefect server start-up: {results['prefect_server_startup_seconds']:.1f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
