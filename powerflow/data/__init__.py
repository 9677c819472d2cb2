"""Prompt data: sources (world, `datasets`, jsonl/csv/parquet), one schema, GX validation, prepared outputs.

    from powerflow.data import DataConfig, prepare_prompts, load_prepared

- config.py      DataConfig, the `data:` section of params.yaml
- sources.py     load_source_table: a source as a raw DataFrame (DataSourceError on failure)
- schema.py      PROMPT_COLUMNS / ANSWER_COLUMNS / LEAK_COLUMNS, to_prompt_schema, render_prompts
- validation.py  validate_prompts: the Great Expectations suite (DataValidationError on failure)
- prepare.py     prepare_prompts (the `prepare` stage) and load_prepared

Names are imported lazily: `import powerflow.data` pulls in neither pandas nor great_expectations.
"""

from __future__ import annotations

from powerflow._lazy import lazy_exports

_EXPORTS = {
    "DataConfig": "powerflow.data.config",
    "DataSourceError": "powerflow.data.sources",
    "load_source_table": "powerflow.data.sources",
    "PROMPT_COLUMNS": "powerflow.data.schema",
    "ANSWER_COLUMNS": "powerflow.data.schema",
    "LEAK_COLUMNS": "powerflow.data.schema",
    "to_prompt_schema": "powerflow.data.schema",
    "render_prompts": "powerflow.data.schema",
    "DataValidationError": "powerflow.data.validation",
    "validate_prompts": "powerflow.data.validation",
    "PreparedData": "powerflow.data.prepare",
    "PreparedDataError": "powerflow.data.prepare",
    "prepare_prompts": "powerflow.data.prepare",
    "load_prepared": "powerflow.data.prepare",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("powerflow.data", _EXPORTS)
