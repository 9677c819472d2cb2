"""Metric names: `<family>/<metric>` (math500/pass@4), where the family is an eval family unless its
prefix is one of the non-family ones (cost/, diag/, ...); the k of each pass@k.

Evaluation writes these names and the report reads them: both take the rule from here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

PASS_AT = re.compile(r"^(?P<family>[^/]+)/pass@(?P<k>\d+)$")
# Metric prefixes that are not eval families (train/: a training summary's numbers, in a table row).
NOT_FAMILIES = frozenset({"cost", "eval", "diag", "registered", "sampler", "exact", "train"})


def family_of(key: str) -> str | None:
    """The eval family a metric name belongs to (math500 for math500/pass@4); None for the non-family
    prefixes (cost/, eval/, diag/, registered/, sampler/, exact/, train/) and for names without '/'."""
    prefix, slash, _ = key.partition("/")
    return prefix if slash and prefix not in NOT_FAMILIES else None


def families_in(records: Iterable[dict]) -> list[str]:
    """Eval families among the keys of metrics dicts (or of table rows, keyed the same way), first-seen order."""
    return list(dict.fromkeys(family for record in records for key in record if (family := family_of(key))))


def families_of(runs: list[dict]) -> list[str]:
    """Eval families in the runs' metrics (the prefix before '/'), in first-seen order."""
    return families_in(run.get("metrics") or {} for run in runs)


def pass_at_ks(metrics: dict, family: str = "reasoning") -> list[int]:
    """The k of every finite `<family>/pass@k` in `metrics`, in key order."""
    return [int(m["k"]) for key in metrics
            if (m := PASS_AT.match(key)) and m["family"] == family and _finite(metrics[key])]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
