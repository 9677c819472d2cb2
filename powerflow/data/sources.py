"""Prompt sources: the embedded world, a `datasets` id or directory, or a local jsonl/csv/parquet file.

Every source becomes one raw pandas DataFrame with the source's own column names; `schema.py`
maps it to the prompt schema. Whatever goes wrong here (missing file, unknown extension,
unreadable file, empty table, unknown or uncached dataset id) is a `DataSourceError` naming the
source and the fix.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from powerflow.data.config import DataConfig
from powerflow.errors import UserError
from powerflow.table_files import TableFileError, first_line, read_table_file, resolve_path


class DataSourceError(UserError):
    """The prompt source cannot be read, is empty, or lacks a mapped column; the message says the fix."""


def load_source_table(cfg: DataConfig, project_root: str | Path, world_rows: list[dict] | None = None) -> pd.DataFrame:
    """The source named by `cfg.source` as a DataFrame with the source's columns (not yet mapped)."""
    if cfg.is_world:
        table = _world_table(world_rows)
    elif cfg.hf_dataset is not None:
        table = _hf_table(cfg, Path(project_root))
    else:
        table = _file_table(resolve_path(cfg.source, project_root))
    if table.empty:
        raise DataSourceError(
            f"prompt source {cfg.source!r} has no rows: point data.source at a table with at least one prompt."
        )
    return table


def _world_table(world_rows: list[dict] | None) -> pd.DataFrame:
    if world_rows is None:
        raise DataSourceError(
            'data.source is "world" but no world prompt rows were given: the caller passes '
            "powerflow.world.teacher.world_prompt_rows(...) as world_rows, or set data.source to a file or "
            "hf: dataset."
        )
    return pd.DataFrame(list(world_rows))


def _file_table(path: Path) -> pd.DataFrame:
    """Read a .jsonl, .csv or .parquet file (powerflow.table_files); every failure names the file and the fix."""
    try:
        return read_table_file(path, "prompt file", missing="fix data.source in params.yaml (relative paths start "
                               "at the project root) or create the file")
    except TableFileError as err:
        raise DataSourceError(str(err)) from err


def _hf_table(cfg: DataConfig, project_root: Path) -> pd.DataFrame:
    """`datasets.load_dataset(id, hf_config, split=hf_split)` as pandas (load_from_disk for saved datasets).

    A dataset id that is also an existing path under the project root (or an absolute path) is
    loaded from there, so "hf:data/my_dataset" works from any working directory.
    """
    import datasets  # heavy-ish (pyarrow, fsspec): only hf: sources pay for it

    name = cfg.hf_dataset
    local = resolve_path(name, project_root)
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
            f"({first_line(err)}). This machine may be offline: use a dataset id already in the Hugging Face "
            "cache, a local dataset directory (\"hf:<dir>\"), or a .jsonl/.csv/.parquet file as data.source; "
            "check data.hf_config and data.hf_split."
        ) from err
    return loaded.to_pandas()


def _is_saved_dataset(directory: Path) -> bool:
    """True for a directory written by Dataset.save_to_disk or DatasetDict.save_to_disk."""
    return (directory / "state.json").is_file() or (directory / "dataset_dict.json").is_file()
