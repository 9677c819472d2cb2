"""The prompt schema: one training table and one answer table, whatever the source looked like.

Training table (prompts.jsonl), exactly PROMPT_COLUMNS:
    id             str, unique
    family         one of data.families ("reasoning", "open_ended", ...)
    split          "train" or "eval"
    prompt         the text the model is given, already rendered (chat template applied for chat)
    request        the user's request before rendering: the source's `request` column when it has one
                   (a source whose prompts are rendered already), else the prompt as the source gives it.
                   What a method that writes its own conversation around the question (verbalized
                   sampling) asks; the policy and the baselines are given `prompt`.
    prompt_tokens  len(tokenizer(prompt, add_special_tokens=False).input_ids)

Answer table (answers.jsonl), ANSWER_COLUMNS, read only by evaluation:
    id, family, answer   answer is JSON: a string ("10") or a list of strings (valid answers)

Answer keys never enter the training table: the mapping keeps only schema fields, and validation
refuses any LEAK_COLUMNS name in it.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Sequence
from typing import Any

import pandas as pd

from powerflow.errors import ConfigError
from powerflow.data.config import SCHEMA_FIELDS, DataConfig
from powerflow.data.sources import DataSourceError

PROMPT_COLUMNS = ("id", "family", "split", "prompt", "request", "prompt_tokens")
ANSWER_COLUMNS = ("id", "family", "answer")
SPLITS = ("train", "eval")
# Split names other datasets use, folded into the two the pipeline knows.
SPLIT_ALIASES = {"training": "train", "validation": "eval", "valid": "eval", "val": "eval", "dev": "eval",
                 "test": "eval", "evaluation": "eval"}
# Column names that hold answer keys or reference outputs in common prompt datasets (compared
# case-insensitively). None may appear in the training table: a policy trained on them could
# learn the answer key instead of the base model's distribution.
LEAK_COLUMNS = (
    "answer", "answers", "answer_key", "final_answer", "correct_answer", "gold", "gold_answer",
    "valid_answers", "solution", "solutions", "label", "labels", "target", "targets",
    "reference", "references", "ground_truth", "expected", "expected_answer", "expected_output",
    "output", "completion", "response", "chosen", "rejected",
)


def column_mapping(raw: pd.DataFrame, cfg: DataConfig) -> dict[str, str]:
    """Schema field -> source column: data.columns first, else a source column of the field's name.

    A mapped column missing from the source, or no prompt column at all, is a DataSourceError that
    lists the columns the source has.
    """
    available = [str(c) for c in raw.columns]
    mapping: dict[str, str] = {}
    for name in SCHEMA_FIELDS:
        if name in cfg.columns:
            column = cfg.columns[name]
            if column not in raw.columns:
                raise DataSourceError(
                    f"data.columns.{name}={column!r} is not a column of {cfg.source!r}; it has "
                    f"{available}: map {name} to one of those."
                )
            mapping[name] = column
        elif name in raw.columns:
            mapping[name] = name
    if "prompt" not in mapping:
        raise DataSourceError(
            f"{cfg.source!r} has no prompt column (columns: {available}): set data.columns.prompt to the "
            "column that holds the prompt text, e.g. columns: {prompt: question}."
        )
    return mapping


def to_prompt_schema(raw: pd.DataFrame, cfg: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(prompts[id, family, split, prompt, request], answers[id, family, answer]) from a raw source table.

    - data.limit keeps the first N rows.
    - ids become strings; without an id column row i gets "row-{i}".
    - without a family column every row gets data.default_family.
    - without a split column a row is "eval" when stable_fraction(id, seed) < data.eval_fraction;
      split values "validation", "test", "dev", ... count as "eval" (SPLIT_ALIASES).
    - request: the source's request column where present, else the prompt text.
    - answers: rows whose answer is present, JSON-encoded (a string, or a list of strings).
    Missing values in mapped columns stay missing, so validation reports them.
    """
    if cfg.limit is not None:
        raw = raw.head(cfg.limit)
    raw = raw.reset_index(drop=True)
    mapping = column_mapping(raw, cfg)
    ids = [_as_id(v) for v in raw[mapping["id"]]] if "id" in mapping else [f"row-{i}" for i in range(len(raw))]
    prompts_text = [_as_prompt(v, i, cfg) for i, v in enumerate(raw[mapping["prompt"]])]
    if "family" in mapping:
        families = [None if _missing(v) else str(v) for v in raw[mapping["family"]]]
    else:
        families = [cfg.default_family] * len(raw)
    if "split" in mapping:
        splits = [None if _missing(v) else normalize_split(str(v)) for v in raw[mapping["split"]]]
    else:
        # A row with a missing id is hashed by position so only the id check reports it.
        splits = [assign_split(i if i is not None else f"row-{n}", cfg.eval_fraction, cfg.seed)
                  for n, i in enumerate(ids)]
    if "request" in mapping:
        requests = [None if _missing(v) else str(v) for v in raw[mapping["request"]]]
        requests = [p if r is None else r for r, p in zip(requests, prompts_text)]
    else:
        requests = list(prompts_text)
    prompts = pd.DataFrame({"id": ids, "family": families, "split": splits, "prompt": prompts_text,
                            "request": requests}, dtype=object)
    answers = _answer_table(raw[mapping["answer"]], ids, families) if "answer" in mapping else _empty_answers()
    return prompts, answers


def stable_fraction(row_id: str, seed: int) -> float:
    """u(id, seed) = int(sha256(f"{seed}:{id}")[:64 bits]) / 2^64, uniform in [0, 1), stable per id."""
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(row_id: str, eval_fraction: float, seed: int) -> str:
    """"eval" when u(id, seed) < eval_fraction, else "train": adding rows never moves another row."""
    return "eval" if stable_fraction(row_id, seed) < eval_fraction else "train"


def normalize_split(value: str) -> str:
    """Lower-case split name with aliases folded ("validation" -> "eval"); unknown names pass through."""
    name = value.strip().lower()
    return SPLIT_ALIASES.get(name, name)


def encode_answer(value: Any) -> str:
    """JSON of an answer key: a scalar becomes a string ("10"), a list/array a list of strings."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()  # numpy arrays (parquet list columns) and numpy scalars
    if isinstance(value, (list, tuple)):
        return json.dumps([_scalar_text(v) for v in value], ensure_ascii=False)
    return json.dumps(_scalar_text(value), ensure_ascii=False)


def render_prompts(prompts: pd.DataFrame, tokenizer, cfg: DataConfig) -> pd.DataFrame:
    """The prompt table with `prompt` rendered for the model and `prompt_tokens` added.

    text: the prompt as is. chat: tokenizer.apply_chat_template([system?, user], tokenize=False,
    add_generation_prompt=True); a blank prompt stays blank so validation still reports it.
    prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"]).
    """
    out = prompts.copy()
    texts = ["" if _missing(p) else str(p) for p in out["prompt"]]
    if cfg.prompt_format == "chat":
        texts = render_chat(texts, tokenizer, cfg.system_prompt)
    out["prompt"] = pd.Series(texts, index=out.index, dtype=object)
    out["prompt_tokens"] = count_tokens(texts, tokenizer)
    ordered = [c for c in PROMPT_COLUMNS if c in out.columns]
    return out[ordered + [c for c in out.columns if c not in ordered]]


def render_chat(texts: Sequence[str], tokenizer, system_prompt: str | None) -> list[str]:
    """Each non-blank text as one user turn (after an optional system turn) through the chat template."""
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ConfigError(
            f"data.prompt_format is \"chat\" but the tokenizer {name!r} has no chat template: use "
            "prompt_format: text for base models, or an instruct model whose tokenizer defines chat_template."
        )
    system = [{"role": "system", "content": system_prompt}] if system_prompt is not None else []
    rendered = []
    for text in texts:
        if not text.strip():
            rendered.append(text)
            continue
        conversation = system + [{"role": "user", "content": text}]
        rendered.append(tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True))
    return rendered


def count_tokens(texts: Sequence[str], tokenizer) -> list[int]:
    """Token count of each text without special tokens (the chat template already holds its own)."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def _answer_table(values: pd.Series, ids: list, families: list) -> pd.DataFrame:
    rows = [
        {"id": row_id, "family": family, "answer": encode_answer(value)}
        for row_id, family, value in zip(ids, families, values)
        if not _missing(value)
    ]
    return pd.DataFrame(rows, columns=list(ANSWER_COLUMNS), dtype=object)


def _empty_answers() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in ANSWER_COLUMNS})


def _missing(value: Any) -> bool:
    """None, NaN or pandas NA (but not a list/array, which is a present answer list)."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _as_id(value: Any) -> str | None:
    """Ids as strings; integral floats (from a column with gaps) lose their ".0"."""
    if _missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _as_prompt(value: Any, position: int, cfg: DataConfig) -> str:
    if _missing(value):
        return ""
    if isinstance(value, (str, numbers.Number)) and not isinstance(value, bool):
        return _scalar_text(value)
    raise DataSourceError(
        f"{cfg.source!r} row {position}: the prompt column holds a {type(value).__name__}, not text: "
        "map data.columns.prompt to a column of plain strings."
    )


def _scalar_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
