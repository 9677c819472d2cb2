"""Local table files (.jsonl, .csv, .parquet) read as pandas DataFrames; every failure says the fix.

The one reader of tables on disk: prompt sources (powerflow.data.sources) and benchmark files
(powerflow.eval.benchmarks) both read through it, so neither package imports the other for it.
pandas is imported on the first read: importing this module costs nothing.

    path = resolve_path("data/prompts.jsonl", project_root)
    table = read_table_file(path, "prompt file", missing="fix data.source in params.yaml")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from powerflow.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

TABLE_EXTENSIONS = (".jsonl", ".csv", ".parquet")


class TableFileError(UserError):
    """A table file that cannot be read (extension, missing, malformed); the message names the file and the fix."""


def resolve_path(source: str | Path, project_root: str | Path) -> Path:
    """A file or directory as a path; relative paths resolve against the project root."""
    path = Path(source).expanduser()
    return path if path.is_absolute() else Path(project_root) / path


def read_table_file(path: Path, what: str = "file", missing: str = "create the file") -> pd.DataFrame:
    """A .jsonl, .csv (every column as text) or .parquet file as a DataFrame.

    Every failure is a TableFileError that starts with `what` and the path; a file that does not
    exist says `missing` (how to fix it).
    """
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in TABLE_EXTENSIONS:
        raise TableFileError(
            f"{what} {path} has an unsupported extension {suffix or '(none)'}: "
            f"convert it to one of {', '.join(TABLE_EXTENSIONS)}."
        )
    if not path.is_file():
        raise TableFileError(f"{what} {path} not found: {missing}.")
    try:
        if suffix == ".jsonl":
            return _read_jsonl(path, what)
        if suffix == ".csv":
            # Strings throughout: ids like "007" keep their text, and numbers are never guessed.
            return pd.read_csv(path, dtype=str)
        return pd.read_parquet(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise TableFileError(
            f"{what} {path} could not be read as {suffix[1:]} ({first_line(err)}): "
            "check that the file is complete and in that format."
        ) from err


def _read_jsonl(path: Path, what: str) -> pd.DataFrame:
    """One JSON object per non-blank line; a bad line is reported with its line number."""
    import pandas as pd

    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TableFileError(
                    f"{what} {path} line {number} is not valid JSON ({err.msg}): fix or remove that line."
                ) from err
            if not isinstance(record, dict):
                raise TableFileError(
                    f"{what} {path} line {number} is a JSON {type(record).__name__}, not an object: "
                    'write one object per line, e.g. {"prompt": "..."}.'
                )
            records.append(record)
    return pd.DataFrame(records)


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
