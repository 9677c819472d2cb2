"""The `prepare` stage: source -> schema -> rendered prompts -> validation -> prepared directory.

Output directory (a DVC stage output, replaced whole or not at all):
    prompts.jsonl   the training table, PROMPT_COLUMNS only, train and eval rows, source order
    answers.jsonl   ANSWER_COLUMNS, for evaluation only
    manifest.json   {"prompts_sha256", "answers_sha256", "rows": {split: {family: n}}, "source",
                     "prompt_format", "answer_kinds": {family: kind}, "answer_kinds_from": how they
                     were chosen (data.answer_kind or inferred), "validation": summary,
                     "config": the data: section}
The validation report goes beside it, <out_dir parent>/validation/<out_dir name>.json, so a
failing table leaves its report and no prepared data (an earlier good out_dir stays as it was).
The manifest holds no timestamps or machine paths: its hashes change only when the data does.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from powerflow.errors import UserError
from powerflow.data.answer_kinds import family_answer_kinds
from powerflow.data.config import DataConfig
from powerflow.data.schema import ANSWER_COLUMNS, PROMPT_COLUMNS, render_prompts, to_prompt_schema
from powerflow.data.sources import load_source_table
from powerflow.io import atomic_directory, sha256_of_path, write_json_atomic

PROMPTS_FILE = "prompts.jsonl"
ANSWERS_FILE = "answers.jsonl"
MANIFEST_FILE = "manifest.json"
PREPARED_FILES = (PROMPTS_FILE, ANSWERS_FILE, MANIFEST_FILE)


class PreparedDataError(UserError):
    """The prepared prompt directory is missing, incomplete or altered since `prepare` wrote it."""


@dataclass(frozen=True)
class PreparedData:
    """Where `prepare_prompts` wrote its outputs, and the manifest it wrote."""

    out_dir: Path
    prompts_path: Path
    answers_path: Path
    manifest: dict


def default_report_path(out_dir: str | Path) -> Path:
    """<out_dir parent>/validation/<out_dir name>.json: outside out_dir, so it survives a failure."""
    out_dir = Path(out_dir)
    return out_dir.parent / "validation" / f"{out_dir.name}.json"


def prepare_prompts(
    cfg: DataConfig,
    tokenizer,
    out_dir: str | Path,
    project_root: str | Path,
    *,
    world_rows: list[dict] | None = None,
    report_path: str | Path | None = None,
) -> PreparedData:
    """Load, map, render and validate the prompts; write out_dir atomically. Raises before writing.

    Raises DataSourceError (source/mapping), ConfigError (chat without a template), AnswerKindError
    (an answer its family's kind cannot grade) or DataValidationError (failing expectations; the report is written, out_dir is not touched).
    """
    from powerflow.data.validation import validate_prompts  # imports great_expectations lazily

    out_dir, project_root = Path(out_dir), Path(project_root)
    report_path = Path(report_path) if report_path is not None else default_report_path(out_dir)
    prompts, answers = to_prompt_schema(load_source_table(cfg, project_root, world_rows), cfg)
    kinds, kinds_from = family_answer_kinds(cfg, prompts, answers)
    table = render_prompts(prompts, tokenizer, cfg)[list(PROMPT_COLUMNS)]  # validate exactly what is written
    summary = validate_prompts(table, cfg, report_path)
    summary = summary | {"report": _display_path(report_path, project_root)}
    with atomic_directory(out_dir) as tmp:
        (tmp / PROMPTS_FILE).write_text(jsonl_text(table, PROMPT_COLUMNS), encoding="utf-8")
        (tmp / ANSWERS_FILE).write_text(jsonl_text(answers, ANSWER_COLUMNS), encoding="utf-8")
        manifest = {
            "prompts_sha256": sha256_of_path(tmp / PROMPTS_FILE),
            "answers_sha256": sha256_of_path(tmp / ANSWERS_FILE),
            "rows": row_counts(table),
            "source": cfg.source,
            "prompt_format": cfg.prompt_format,
            "answer_kinds": kinds,
            "answer_kinds_from": kinds_from,
            "validation": summary,
            "config": dataclasses.asdict(cfg),
        }
        manifest = json.loads(json.dumps(manifest))  # tuples -> lists: the returned dict equals the file
        write_json_atomic(manifest, tmp / MANIFEST_FILE)
    return PreparedData(out_dir, out_dir / PROMPTS_FILE, out_dir / ANSWERS_FILE, manifest)


def load_prepared(out_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(prompts, answers, manifest) from a prepared directory, checked against the manifest's hashes."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise PreparedDataError(f"prepared prompts not found at {out_dir}: run `dvc repro prepare` first.")
    missing = [name for name in PREPARED_FILES if not (out_dir / name).is_file()]
    if missing:
        raise PreparedDataError(
            f"prepared prompts at {out_dir} are incomplete (missing {', '.join(missing)}): run `dvc repro prepare`."
        )
    try:
        manifest = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
        prompts = _read_jsonl(out_dir / PROMPTS_FILE, PROMPT_COLUMNS)
        answers = _read_jsonl(out_dir / ANSWERS_FILE, ANSWER_COLUMNS)
    except (ValueError, KeyError) as err:
        raise PreparedDataError(
            f"prepared prompts at {out_dir} are unreadable ({err}): run `dvc repro prepare` to rewrite them."
        ) from err
    for name, key in ((PROMPTS_FILE, "prompts_sha256"), (ANSWERS_FILE, "answers_sha256")):
        if sha256_of_path(out_dir / name) != manifest.get(key):
            raise PreparedDataError(
                f"{out_dir / name} does not match its sha256 in {MANIFEST_FILE} (changed after prepare wrote it): "
                "run `dvc repro prepare` (or `dvc checkout`) to restore it."
            )
    if not isinstance(manifest.get("answer_kinds"), dict):
        raise PreparedDataError(
            f"{out_dir / MANIFEST_FILE} records no answer kinds (written before answers were graded by kind): run "
            "`dvc repro prepare` to rewrite it."
        )
    prompts["prompt_tokens"] = prompts["prompt_tokens"].astype("int64")
    return prompts, answers, manifest


def row_counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{split: {family: number of rows}}, keys sorted."""
    counts = table.groupby(["split", "family"]).size()
    out: dict[str, dict[str, int]] = {}
    for (split, family), n in sorted(counts.items()):
        out.setdefault(str(split), {})[str(family)] = int(n)
    return out


def jsonl_text(table: pd.DataFrame, columns: Iterable[str]) -> str:
    """One JSON object per row with keys in `columns` order; deterministic for equal tables."""
    columns = list(columns)
    lines = []
    for row in table[columns].itertuples(index=False, name=None):
        record = {c: _plain(v) for c, v in zip(columns, row)}
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    return "".join(lines)


def _read_jsonl(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame({c: pd.Series([r[c] for r in records], dtype=object) for c in columns})


def _plain(value):
    """numpy scalars as Python numbers, so json.dumps writes them."""
    return value.item() if hasattr(value, "item") else value


def _display_path(path: Path, root: Path) -> str:
    """path relative to the project root when inside it (the manifest stays machine-independent)."""
    path, root = path.resolve(), root.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
