"""Prefect flows: one per pipeline stage (flows/stages.py) and the α sweep (flows/pipeline.py).

The `powerflow` CLI runs these flows when a Prefect server is reachable (PREFECT_API_URL), and
the library steps directly otherwise; `prefect.yaml` deploys them to a process work pool.
"""
