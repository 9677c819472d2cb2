"""Worlds the project builds itself (no hub downloads): enumerable test models for exact checks.

The embedded reasoning / open-ended world of DESIGN.md section 3 is the pipeline issue's work and
is not built yet.
"""
