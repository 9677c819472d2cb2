"""The two exception types every part of powerflow raises for problems a user can fix.

This module imports nothing of the project, so any module may import it without forming an
import cycle (powerflow.config assembles the sections; the sections raise these).
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad params, missing or invalid input, unreachable server).

    The CLI prints its message as one line, "powerflow: error: ...", and exits with status 2; the
    message names the problem and the fix. Subclasses say which kind of input was wrong.
    """


class ConfigError(UserError, ValueError):
    """A params.yaml problem; the message names the key and what to write instead."""
