"""One member of the α sweep: (α, objective, training seed), as one frozen value.

A `Member` is built once, where a command enters the pipeline (the CLI's `--alpha/--objective/--seed`,
a Prefect flow's parameters, the sweep's own lists), and is passed everywhere after that: its
`name` names the MLflow child run, the model and output folders; `params` and `tags` are what
tracking logs; `label` is the α as it appears in paths. Nothing downstream parses α from text
again: registration reads α from the run, the report from `Member.from_name` of a folder name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from powerflow.errors import UserError

NAME_PREFIX = "alpha-"


def alpha_text(alpha: float) -> str:
    """The α as run names and paths write it: Python's str() of the float ("0.5", "4.0").

    DVC renders `${item.alpha}` with str() of the YAML value, so params.yaml writes every α as a
    float (4.0, not 4) and the CLI's member and DVC's output paths name the same folders.
    """
    return str(float(alpha))


@dataclass(frozen=True)
class Member:
    """One sweep member: trains toward p_base^α with `objective`, seeded with `seed`."""

    alpha: float
    objective: str
    seed: int

    def __post_init__(self):
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) \
                or not math.isfinite(self.alpha) or self.alpha <= 0:
            raise UserError(f"α = {self.alpha!r} is not allowed: every α must be a finite number > 0 "
                            "(α > 1 sharpens, α < 1 flattens, α = 1 keeps the base).")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"seed {self.seed!r} is not a training seed: use an integer >= 0, e.g. 0.")
        if not self.objective or "-" in self.objective:
            raise UserError(f"objective {self.objective!r}: an objective's name is one word without '-' (e.g. tb).")
        object.__setattr__(self, "alpha", float(self.alpha))

    @property
    def label(self) -> str:
        """α as written in names and paths ("4.0")."""
        return alpha_text(self.alpha)

    @property
    def group(self) -> str:
        """The name of this (α, objective) across seeds, e.g. alpha-4.0-tb: the report's seed-mean row."""
        return f"{NAME_PREFIX}{self.label}-{self.objective}"

    @property
    def name(self) -> str:
        """alpha-<α>-<objective>-s<seed>, seed 0 included (DVC's matrix paths are one pattern)."""
        return f"{self.group}-s{self.seed}"

    @property
    def params(self) -> dict[str, Any]:
        """The member's own run parameters (logged as run.alpha, run.objective, ...)."""
        return {"alpha": self.alpha, "objective": self.objective, "method": "power_flow", "seed": self.seed}

    @property
    def tags(self) -> dict[str, str]:
        """The member's MLflow tags (registry versions carry the same)."""
        return {"powerflow.alpha": f"{self.alpha:g}", "powerflow.objective": self.objective,
                "powerflow.seed": str(self.seed)}

    @property
    def command(self) -> str:
        """The `powerflow train` command line that trains this member."""
        return f"powerflow train --alpha {self.label} --objective {self.objective} --seed {self.seed}"

    @classmethod
    def from_name(cls, name: str) -> Member:
        """The member a run name names (alpha-4.0-tb-s0); a UserError when `name` is not one."""
        try:
            alpha, objective, seed = name.removeprefix(NAME_PREFIX).rsplit("-", 2)
            if not name.startswith(NAME_PREFIX) or not seed.startswith("s") or not seed[1:].isdigit():
                raise ValueError(name)
            return cls(float(alpha), objective, int(seed[1:]))
        except ValueError as err:
            raise UserError(f"{name!r} is not a sweep member's name: members are named alpha-<α>-<objective>-s<seed>, "
                            "e.g. alpha-4.0-tb-s0.") from err

    @staticmethod
    def is_name(name: str) -> bool:
        """Whether `name` is a sweep member's name (alpha-<α>-<objective>-s<seed>)."""
        try:
            Member.from_name(name)
        except UserError:
            return False
        return True
