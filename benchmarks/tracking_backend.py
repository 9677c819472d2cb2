"""Tracking cost on the team stack: what one training run's MLflow traffic costs on each store.

Baseline: the laptop store, `sqlite:////abs/mlflow.db` with artifacts on the local disk (what the
main job uses). Measured against it, in the same process and alternated: an `mlflow server` on
127.0.0.1 (SQLite backend, proxied artifacts on disk), and the same server with its artifacts in
an S3-compatible store (moto's server, the test stand-in for the team stack's MinIO). Each repeat
does what a `train` + `register` + `evaluate-registered` sequence does to the store:

- create a child run with the sweep's params,
- log `--steps` training steps of 10 metrics each, one request per step (MlflowStepLogger),
- register a saved checkpoint of the world-sized model (a pyfunc model + registry version),
- download that version back (what `load_policy` does in another process).

Reported per backend: median seconds of each phase and of the whole, and the ratio to the laptop
store. The servers' start-up time is reported separately.

    .venv/bin/python -m benchmarks.tracking_backend --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from powerflow.servers import mlflow_server, moto_s3_server

PHASES = ("run", "steps", "register", "download")
BUCKET = "powerflow"


def world_sized_checkpoint(path: Path) -> Path:
    """A Llama with the embedded world's shape (4 layers, width 128), saved as safetensors."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=96, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128)
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    return path


def one_training_run(uri: str, artifacts: str | None, checkpoint: Path, steps: int, tag: str) -> dict[str, float]:
    """Seconds of each phase of one run's tracking traffic against the store at `uri`.

    `artifacts`: the experiment's artifact location (None: the server's proxied store).
    """
    import mlflow

    from powerflow import tracking
    from powerflow.tracking.store import get_or_create_experiment

    mlflow.set_tracking_uri(uri)
    timings = {}
    started = time.perf_counter()
    experiment_id = get_or_create_experiment("benchmark", artifacts)
    parent = tracking.sweep_parent_run(experiment_id, f"bench-{tag}")
    params = {"train": {"steps": steps, "learning_rate": 0.003, "lora_r": 8}, "run": {"alpha": 4.0}}
    run_id = tracking.start_child_run(experiment_id, parent, f"alpha-4.0-{tag}", params, {"method": "power_flow"})
    timings["run"] = time.perf_counter() - started

    started = time.perf_counter()
    for step in range(1, steps + 1):
        tracking.log_metrics(run_id, {f"train/m{i}": float(step * i) for i in range(10)}, step=step)
    timings["steps"] = time.perf_counter() - started

    started = time.perf_counter()
    version = tracking.register_checkpoint(run_id, checkpoint, "benchmark-model", {"alpha": "4", "bench": tag})
    timings["register"] = time.perf_counter() - started

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as dst:
        tracking.download_checkpoint(version.uri, dst)
    timings["download"] = time.perf_counter() - started
    timings["total"] = sum(timings[p] for p in PHASES)
    return timings


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median seconds of each phase over the repeats."""
    return {key: statistics.median(r[key] for r in runs) for key in (*PHASES, "total")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200, help="training steps logged per run (the main job: 200)")
    parser.add_argument("--out", default="benchmarks/results/tracking_backend.json")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = world_sized_checkpoint(tmp / "checkpoint")
        startup = {}
        with moto_s3_server(workdir=tmp) as s3:
            s3.create_bucket(BUCKET)
            os.environ.update(s3.env())  # the client needs nothing from S3 (artifacts are proxied)
            t0 = time.perf_counter()
            with mlflow_server(tmp / "server-disk") as disk_server:
                startup["server_disk"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                with mlflow_server(tmp / "server-s3", artifacts_destination=f"s3://{BUCKET}/mlartifacts",
                                   env=s3.env()) as s3_server:
                    startup["server_s3"] = time.perf_counter() - t0
                    backends = {  # name -> (tracking URI, artifact location of the experiment)
                        "laptop_sqlite": (f"sqlite:///{tmp / 'laptop' / 'mlflow.db'}", str(tmp / "laptop" / "art")),
                        "server_sqlite_disk": (disk_server.url, None),
                        "server_sqlite_s3": (s3_server.url, None),
                    }
                    (tmp / "laptop").mkdir()
                    runs: dict[str, list] = {name: [] for name in backends}
                    for repeat in range(args.repeats):
                        for name, (uri, artifacts) in backends.items():  # alternated: drift hits every backend
                            runs[name].append(
                                one_training_run(uri, artifacts, checkpoint, args.steps, f"{name}-{repeat}"))
                    keys = s3.list_keys(BUCKET, "mlartifacts")
    medians = {name: summarise(r) for name, r in runs.items()}
    base = medians["laptop_sqlite"]
    ratios = {name: {k: m[k] / base[k] for k in m} for name, m in medians.items()}
    results = {"steps": args.steps, "repeats": args.repeats, "server_startup_seconds": startup,
               "s3_objects_written": len(keys), "runs": runs, "median_seconds": medians, "ratio_to_laptop": ratios}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"{'backend':<20}" + "".join(f"{p:>12}" for p in (*PHASES, "total")) + f"{'x laptop':>10}")
    for name, m in medians.items():
        print(f"{name:<20}" + "".join(f"{m[p]:>11.2f}s" for p in (*PHASES, "total"))
              + f"{ratios[name]['total']:>10.2f}")
    print(f"server start-up: {startup}; S3 objects written: {len(keys)}; wrote {args.out}")


if __name__ == "__main__":
    main()
