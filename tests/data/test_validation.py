"""The Great Expectations suite on prompt tables: each check fails on its own, with a named message."""

import json

import pandas as pd
import pytest

from powerflow.data.config import DataConfig
from powerflow.data.schema import render_prompts, to_prompt_schema
from powerflow.data.validation import DataValidationError, validate_prompts

CFG = DataConfig(min_prompt_tokens=0, max_prompt_tokens=8)


@pytest.fixture
def table(world_rows, tokenizer):
    """A valid rendered prompt table (4 rows, 3-5 tokens each)."""
    prompts, _ = to_prompt_schema(pd.DataFrame(world_rows), CFG)
    return render_prompts(prompts, tokenizer, CFG)


def test_valid_table_passes_and_writes_report(table, tmp_path):
    report = tmp_path / "reports" / "ok.json"
    summary = validate_prompts(table, CFG, report)
    assert summary == {"success": True, "evaluated": 14, "failed": [], "report": str(report)}
    result = json.loads(report.read_text())
    assert result["success"] is True and result["statistics"]["evaluated_expectations"] == 14


def _empty_text(t):
    t.loc[1, "prompt"] = "   "


def _duplicate_id(t):
    t.loc[3, "id"] = "r-1"


def _too_many_tokens(t):
    t.loc[2, "prompt_tokens"] = 9


def _unknown_family(t):
    t.loc[0, "family"] = "poetry"


def _answer_leak(t):
    t["Answer"] = "5"  # compared case-insensitively


def _missing_column(t):
    del t["prompt_tokens"]


def _missing_value(t):
    t.loc[2, "family"] = None


def _unknown_split(t):
    t.loc[0, "split"] = "holdout"


@pytest.mark.parametrize(
    "corrupt, check, named",
    [
        (_empty_text, "non-empty text", ["'prompt'", "'   '", "'r-2'"]),
        (_duplicate_id, "unique ids", ["'id'", "'r-1'"]),
        (_too_many_tokens, "token-length bounds", ["'prompt_tokens'", "[9]", "'o-1'"]),
        (_unknown_family, "allowed families", ["'family'", "'poetry'"]),
        (_answer_leak, "no answer-key columns", ["'Answer'"]),
        (_missing_column, "required columns", ["'prompt_tokens'"]),
        (_missing_value, "no missing values", ["'family'", "'o-1'"]),
        (_unknown_split, "allowed splits", ["'split'", "'holdout'"]),
    ],
)
def test_each_check_fails_on_its_own(table, tmp_path, corrupt, check, named):
    corrupt(table)
    report = tmp_path / "validation" / "prepared.json"
    with pytest.raises(DataValidationError) as info:
        validate_prompts(table, CFG, report)
    message, summary = str(info.value), info.value.summary
    assert [f["check"] for f in summary["failed"]] == [check]
    assert check in message and str(report) in message and "\n" not in message
    for text in named:
        assert text in message
    result = json.loads(report.read_text())
    assert result["success"] is False
    assert [r["expectation_config"]["meta"]["check"] for r in result["results"] if not r["success"]] == [check]


def test_several_failures_are_listed_in_one_message(table, tmp_path):
    _duplicate_id(table)
    _unknown_family(table)
    with pytest.raises(DataValidationError) as info:
        validate_prompts(table, CFG, tmp_path / "r.json")
    assert {f["check"] for f in info.value.summary["failed"]} == {"unique ids", "allowed families"}
    assert "2 of 14 expectations" in str(info.value)
