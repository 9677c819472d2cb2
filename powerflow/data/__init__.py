"""Prompt data: sources (world, `datasets`, jsonl/csv/parquet), one schema, GX validation, prepared outputs.

    from powerflow.data.config import DataConfig
    from powerflow.data.prepare import prepare_prompts, load_prepared

- config.py        DataConfig, the `data:` section of params.yaml
- sources.py       load_source_table: a source as a raw DataFrame (DataSourceError on failure)
- schema.py        PROMPT_COLUMNS / ANSWER_COLUMNS / LEAK_COLUMNS, to_prompt_schema, render_prompts
- answer_kinds.py  family_answer_kinds: the answer kind that grades each family, keys checked
- validation.py    validate_prompts: the Great Expectations suite (DataValidationError on failure)
- prepare.py       prepare_prompts (the `prepare` stage) and load_prepared

This package imports nothing: import each name from its module, so `import powerflow.data` pulls
in neither pandas nor great_expectations.
"""
