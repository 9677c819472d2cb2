"""Prefect flows (the α-sweep pipeline and one flow per stage).

Not built yet: the pipeline issue (#3) adds them on top of `tasks/`.
"""
