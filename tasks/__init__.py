"""Prefect tasks, each wrapping one powerflow library function.

Not built yet: the pipeline issue (#3) adds them. Until then the only job is
`powerflow verify-exact`, run directly or through `dvc repro`.
"""
