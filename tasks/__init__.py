"""Prefect tasks, each wrapping one powerflow library function (see tasks/steps.py).

Importing this package imports Prefect; the library (`powerflow`) never does.
"""
