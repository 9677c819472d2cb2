"""Prompt sources: the embedded world, a `datasets` id or directory, or a local jsonl/csv/parquet file.

Every source becomes one raw pandas DataFrame with the source's own column names; `schema.py`
maps it to the prompt schema. Whatever goes wrong here (missing file, unknown extension,
unreadable file, empty table, unknown or uncached dataset id) is a `DataSourceError` naming the
source and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from powerflow.errors import UserError
from powerflow.data.config import FILE_EXTENSIONS, DataConfig


class DataSourceError(UserError):
    """The prompt source cannot be read, is empty, or lacks a mapped column; the message says the fix."""


def load_source_table(cfg: DataConfig, project_root: str | Path, world_rows: list[dict] | None = None) -> pd.DataFrame:
    """The source named by `cfg.source` as a DataFrame with the source's columns (not yet mapped)."""
    if cfg.is_world:
        table = _world_table(world_rows)
    elif cfg.hf_dataset is not None:
        table = _hf_table(cfg, Path(project_root))
    else:
        table = _file_table(resolve_source_path(cfg.source, project_root))
    if table.empty:
        raise DataSourceError(
            f"prompt source {cfg.source!r} has no rows: point data.source at a table with at least one prompt."
        )
    return table


def resolve_source_path(source: str, project_root: str | Path) -> Path:
    """A file or directory source as a path; relative paths resolve against the project root."""
    path = Path(source).expanduser()
    return path if path.is_absolute() else Path(project_root) / path


def _world_table(world_rows: list[dict] | None) -> pd.DataFrame:
    if world_rows is None:
        raise DataSourceError(
            'data.source is "world" but no world prompt rows were given: the caller passes '
            "powerflow.world.world_prompt_rows(...) as world_rows, or set data.source to a file or hf: dataset."
        )
    return pd.DataFrame(list(world_rows))


def _file_table(path: Path) -> pd.DataFrame:
    """Read a .jsonl, .csv or .parquet file; every failure names the file and the fix."""
    suffix = path.suffix.lower()
    if suffix not in FILE_EXTENSIONS:
        raise DataSourceError(
            f"prompt file {path} has an unsupported extension {suffix or '(none)'}: "
            f"convert it to one of {', '.join(FILE_EXTENSIONS)}."
        )
    if not path.is_file():
        raise DataSourceError(
            f"prompt file {path} not found: fix data.source in params.yaml (relative paths start at the "
            "project root) or create the file."
        )
    try:
        if suffix == ".jsonl":
            return _read_jsonl(path)
        if suffix == ".csv":
            # Strings throughout: ids like "007" keep their text, and numbers are never guessed.
            return pd.read_csv(path, dtype=str)
        return pd.read_parquet(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise DataSourceError(
            f"prompt file {path} could not be read as {suffix[1:]} ({_first_line(err)}): "
            "check that the file is complete and in that format."
        ) from err


def _read_jsonl(path: Path) -> pd.DataFrame:
    """One JSON object per non-blank line; a bad line is reported with its line number."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataSourceError(
                    f"prompt file {path} line {number} is not valid JSON ({err.msg}): fix or remove that line."
                ) from err
            if not isinstance(record, dict):
                raise DataSourceError(
                    f"prompt file {path} line {number} is a JSON {type(record).__name__}, not an object: "
                    'write one object per line, e.g. {"prompt": "..."}.'
                )
            records.append(record)
    return pd.DataFrame(records)


def _hf_table(cfg: DataConfig, project_root: Path) -> pd.DataFrame:
    """`datasets.load_dataset(id, hf_config, split=hf_split)` as pandas (load_from_disk for saved datasets).

    A dataset id that is also an existing path under the project root (or an absolute path) is
    loaded from there, so "hf:data/my_dataset" works from any working directory.
    """
    import datasets  # heavy-ish (pyarrow, fsspec): only hf: sources pay for it

    name = cfg.hf_dataset
    local = resolve_source_path(name, project_root)
    target = str(local) if local.exists() else name
    try:
        if local.is_dir() and _is_saved_dataset(local):
            loaded = datasets.load_from_disk(str(local))
            if isinstance(loaded, datasets.DatasetDict):
                loaded = loaded[cfg.hf_split]
        else:
            loaded = datasets.load_dataset(target, cfg.hf_config, split=cfg.hf_split)
    except Exception as err:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ValueError, ...)
        raise DataSourceError(
            f"dataset {cfg.source!r} (config {cfg.hf_config!r}, split {cfg.hf_split!r}) could not be loaded "
            f"({_first_line(err)}). This machine may be offline: use a dataset id already in the Hugging Face "
            "cache, a local dataset directory (\"hf:<dir>\"), or a .jsonl/.csv/.parquet file as data.source; "
            "check data.hf_config and data.hf_split."
        ) from err
    return loaded.to_pandas()


def _is_saved_dataset(directory: Path) -> bool:
    """True for a directory written by Dataset.save_to_disk or DatasetDict.save_to_disk."""
    return (directory / "state.json").is_file() or (directory / "dataset_dict.json").is_file()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
