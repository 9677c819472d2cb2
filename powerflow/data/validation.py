"""Great Expectations checks on a prompt table, run before anything trains.

The suite (one GX expectation per check, its human name in `meta.check`):
    required columns       every PROMPT_COLUMNS column is present
    no answer-key columns  no LEAK_COLUMNS name (case-insensitive) is a column
    at least one row
    no missing values      per present PROMPT_COLUMNS column
    non-empty text         prompt is not blank (regex ^\\s*$ never matches)
    unique ids             id
    token-length bounds    data.min_prompt_tokens <= prompt_tokens <= data.max_prompt_tokens
    allowed families       family in data.families
    allowed splits         split in ("train", "eval")

`validate_prompts` runs it with a real GX 1.24 ephemeral context (pandas data source, dataframe
asset, ExpectationSuite, ValidationDefinition), writes the whole GX result to a JSON report, and
raises `DataValidationError` listing every failing check when the table fails.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pandas as pd

from powerflow.errors import UserError
from powerflow.data.config import DataConfig
from powerflow.data.schema import LEAK_COLUMNS, PROMPT_COLUMNS, SPLITS
from powerflow.io import write_json_atomic

SUITE_NAME = "powerflow_prompts"
# Unexpected values quoted per failing check in the error message (the report has up to 20).
EXAMPLES_IN_MESSAGE = 3
# Long prompts are cut to this many characters when quoted in a message.
QUOTE_CHARS = 60


class DataValidationError(UserError):
    """A prompt table failed its expectations; the message lists each failing check and the report path."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


def validate_prompts(prompts: pd.DataFrame, cfg: DataConfig, report_path: str | Path) -> dict:
    """Run the prompt suite on `prompts`; write the GX result to report_path; raise if any check fails.

    Returns {"success": True, "evaluated": n_expectations, "failed": [], "report": str(report_path)}.
    On failure the report is written first, then DataValidationError carries the same summary
    with one entry per failing check (see `failure_entry`).
    """
    import great_expectations as gx  # ~2-5 s to import: only validation pays for it
    from great_expectations.data_context.types.base import ProgressBarsConfig

    report_path = Path(report_path)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bars in stage logs
    asset = context.data_sources.add_pandas(name="prompts").add_dataframe_asset(name="prompts")
    batch = asset.add_batch_definition_whole_dataframe("prompt_table")
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME, expectations=prompt_expectations(prompts, cfg)))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=SUITE_NAME, data=batch, suite=suite))
    result_format: dict[str, Any] = {"result_format": "SUMMARY"}
    if "id" in prompts.columns:
        result_format["unexpected_index_column_names"] = ["id"]  # the report names failing rows by id
    result = definition.run(batch_parameters={"dataframe": prompts.copy()}, result_format=result_format)

    report = result.to_json_dict()
    write_json_atomic(report, report_path)
    failed = [failure_entry(r) for r in report["results"] if not r["success"]]
    summary = {
        "success": bool(report["success"]),
        "evaluated": int(report["statistics"]["evaluated_expectations"]),
        "failed": failed,
        "report": str(report_path),
    }
    if not summary["success"]:
        raise DataValidationError(failure_message(summary), summary)
    return summary


def prompt_expectations(prompts: pd.DataFrame, cfg: DataConfig) -> list:
    """The suite's GX expectations for this table; column checks only for columns it has.

    A missing column fails "required columns" once instead of every check on that column.
    """
    import great_expectations as gx

    ex = gx.expectations
    present = set(prompts.columns)
    suite = [
        ex.ExpectTableColumnsToMatchSet(column_set=list(PROMPT_COLUMNS), exact_match=False,
                                        meta={"check": "required columns"}),
        _exclude_columns_expectation()(column_set=list(LEAK_COLUMNS), meta={"check": "no answer-key columns"}),
        ex.ExpectTableRowCountToBeBetween(min_value=1, meta={"check": "at least one row"}),
    ]
    suite += [ex.ExpectColumnValuesToNotBeNull(column=c, meta={"check": "no missing values"})
              for c in PROMPT_COLUMNS if c in present]
    checks = {
        "prompt": ex.ExpectColumnValuesToNotMatchRegex(column="prompt", regex=r"^\s*$", meta={"check": "non-empty text"}),
        "id": ex.ExpectColumnValuesToBeUnique(column="id", meta={"check": "unique ids"}),
        "prompt_tokens": ex.ExpectColumnValuesToBeBetween(
            column="prompt_tokens", min_value=cfg.min_prompt_tokens, max_value=cfg.max_prompt_tokens,
            meta={"check": "token-length bounds"}),
        "family": ex.ExpectColumnValuesToBeInSet(column="family", value_set=list(cfg.families),
                                                 meta={"check": "allowed families"}),
        "split": ex.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS), meta={"check": "allowed splits"}),
    }
    return suite + [expectation for column, expectation in checks.items() if column in present]


@functools.cache
def _exclude_columns_expectation():
    """GX has no "column must not exist" expectation: a table expectation on the table.columns metric.

    Defined on first use (GX is imported lazily) and once per process (GX registers it by name,
    expect_table_columns_to_exclude_set).
    """
    from typing import ClassVar

    from great_expectations.expectations.expectation import BatchExpectation

    class ExpectTableColumnsToExcludeSet(BatchExpectation):
        """Expect none of column_set (compared case-insensitively) among the table's columns."""

        column_set: list
        metric_dependencies: ClassVar[tuple[str, ...]] = ("table.columns",)
        success_keys: ClassVar[tuple[str, ...]] = ("column_set",)
        args_keys: ClassVar[tuple[str, ...]] = ("column_set",)

        def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None):
            forbidden = {name.lower() for name in self.column_set}
            columns = [str(c) for c in metrics["table.columns"]]
            present = [c for c in columns if c.lower() in forbidden]
            return {"success": not present,
                    "result": {"observed_value": columns, "details": {"forbidden_present": present}}}

    return ExpectTableColumnsToExcludeSet


def failure_entry(result: dict) -> dict:
    """One failing expectation as {check, expectation, column, unexpected_count, unexpected, ids, error}.

    `unexpected` holds up to EXAMPLES_IN_MESSAGE offending values (or column names for table
    checks), `ids` the ids of rows that hold them when GX reported them.
    """
    config, body = result["expectation_config"], result.get("result") or {}
    details = body.get("details") or {}
    kind = config["type"]
    if kind == "expect_table_columns_to_match_set":
        unexpected = list((details.get("mismatched") or {}).get("missing", []))
    elif kind == "expect_table_columns_to_exclude_set":
        unexpected = list(details.get("forbidden_present", []))
    elif kind == "expect_table_row_count_to_be_between":
        unexpected = [body.get("observed_value")]
    else:
        unexpected = _distinct(body.get("partial_unexpected_list") or [])
    ids = _distinct(row.get("id") for row in body.get("partial_unexpected_index_list") or [] if isinstance(row, dict))
    error = (result.get("exception_info") or {}).get("exception_message")
    return {
        "check": (config.get("meta") or {}).get("check", kind),
        "expectation": kind,
        "column": config["kwargs"].get("column"),
        "unexpected_count": body.get("unexpected_count", len(unexpected)),
        "unexpected": unexpected[:EXAMPLES_IN_MESSAGE],
        "ids": ids[:EXAMPLES_IN_MESSAGE],
        "error": error,
    }


def failure_message(summary: dict) -> str:
    """One line: how many checks failed, each with its column and examples, the report path and the fix."""
    parts = []
    for f in summary["failed"]:
        where = f" on column {f['column']!r}" if f["column"] else ""
        what = f"{f['check']} ({f['expectation']}{where})"
        if f["error"]:
            what += f": error {f['error']}"
        elif f["column"]:
            what += f": {f['unexpected_count']} row(s), e.g. {_quote(f['unexpected'])}"
            if f["ids"]:
                what += f" at id {_quote(f['ids'])}"
        else:
            what += f": {_TABLE_FINDING.get(f['expectation'], 'observed')} {_quote(f['unexpected'])}"
        parts.append(what)
    return (
        f"prompt table failed validation, {len(summary['failed'])} of {summary['evaluated']} expectations: "
        + "; ".join(parts)
        + f". Full report: {summary['report']}. Fix the prompt source or the data: section of params.yaml "
        "(columns, families, min/max_prompt_tokens), then rerun `dvc repro prepare`."
    )


# How a table-level check's findings read in the message.
_TABLE_FINDING = {
    "expect_table_columns_to_match_set": "missing",
    "expect_table_columns_to_exclude_set": "found",
    "expect_table_row_count_to_be_between": "row count",
}


def _distinct(values) -> list:
    out: list = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _quote(values: list) -> str:
    return "[" + ", ".join(repr(v[:QUOTE_CHARS] + "…" if isinstance(v, str) and len(v) > QUOTE_CHARS else v)
                           for v in values) + "]"
