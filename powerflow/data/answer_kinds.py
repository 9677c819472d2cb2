"""Which answer kind grades each family of a prompt table (`data.answer_kind`, or inferred).

    family_answer_kinds(cfg, prompts, answers) -> (kinds: {family: kind}, how: text)

- data.answer_kind set to one kind: every family gets it; set to {family: kind}: those families
  get theirs and the others are inferred.
- inferred: the embedded world's families get the world's kinds (reasoning: world_integer,
  open_ended and chat: world_open); on any other source a family without answers gets "none", a family
  whose answers are lists gets "open_qa", and any other family with answers gets "math".

Every answer key is then checked against its kind (`AnswerKind.key_problem`), so a table whose
keys its kind cannot read is refused here, before anything is written or graded. The world's
kinds are refused for any other source: its integer grader would read real answers wrongly.
"""

from __future__ import annotations

import pandas as pd

from powerflow.data.config import DataConfig
from powerflow.errors import ConfigError, UserError
from powerflow.eval.grading import WORLD_KINDS, answer_kind, decoded_key

WORLD_FAMILY_KINDS = {"reasoning": "world_integer", "open_ended": "world_open", "chat": "world_open"}


class AnswerKindError(UserError):
    """An answer key its family's kind cannot grade; the message names the row, the kind and the fix."""


def family_answer_kinds(cfg: DataConfig, prompts: pd.DataFrame, answers: pd.DataFrame) -> tuple[dict[str, str], str]:
    """({family: answer kind} for every family of `prompts`, how they were chosen), keys checked."""
    families = list(dict.fromkeys(str(f) for f in prompts["family"] if f is not None))
    configured = cfg.answer_kind if isinstance(cfg.answer_kind, dict) else (
        {f: cfg.answer_kind for f in families} if cfg.answer_kind is not None else {})
    kinds = {f: configured.get(f) or inferred_kind(cfg, f, answers) for f in families}
    how = ("data.answer_kind" if set(configured) >= set(families)
           else "inferred from the source" if not configured else "data.answer_kind, the rest inferred from the source")
    if not cfg.is_world:
        world = sorted(f for f, k in kinds.items() if k in WORLD_KINDS)
        if world:
            raise ConfigError(
                f"data.answer_kind gives family {world[0]!r} the world's kind {kinds[world[0]]!r}, but data.source is "
                f"{cfg.source!r}: the world's kinds grade only the embedded world; use math, multiple_choice, "
                "multiple_choice_4, open_qa or none."
            )
    check_answer_keys(kinds, answers)
    return kinds, how


def inferred_kind(cfg: DataConfig, family: str, answers: pd.DataFrame) -> str:
    """The kind a family gets when data.answer_kind does not name one (module docstring)."""
    if cfg.is_world and family in WORLD_FAMILY_KINDS:
        return WORLD_FAMILY_KINDS[family]
    keys = [decoded_key(a) for a in answers.loc[answers["family"] == family, "answer"]]
    if not keys:
        return "none"
    if all(isinstance(k, list) for k in keys):
        return "open_qa"
    return "math"


def check_answer_keys(kinds: dict[str, str], answers: pd.DataFrame) -> None:
    """AnswerKindError for the first key its family's kind cannot take (none: a key where none belongs)."""
    for family, kind_name in kinds.items():
        kind = answer_kind(kind_name)
        for row_id, answer in answers.loc[answers["family"] == family, ["id", "answer"]].itertuples(
                index=False, name=None):
            problem = kind.key_problem(decoded_key(answer))
            if problem is not None:
                raise AnswerKindError(
                    f"answer of row {row_id!r} (family {family!r}): {problem}. Set data.answer_kind to the kind "
                    f"these answers are (e.g. data.answer_kind: {{{family}: math}}), or fix the row."
                )
