"""Prompt sources: local files of each format, `datasets` on local data (offline), and their errors."""

import json

import datasets
import huggingface_hub
import pandas as pd
import pytest

from powerflow.data.config import DataConfig
from powerflow.data.schema import to_prompt_schema
from powerflow.data.sources import DataSourceError, load_source_table

# A source whose column names differ from the schema's: mapped with data.columns.
RAW = [
    {"uid": 7, "question": "what is two plus three", "kind": "reasoning", "part": "validation", "solution": "5"},
    {"uid": 8, "question": "name a fruit", "kind": "open_ended", "part": "train", "solution": "apple"},
]
MAPPING = {"id": "uid", "prompt": "question", "family": "kind", "split": "part", "answer": "solution"}


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """Keep `datasets`' Arrow cache inside the test's folder."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def write_source(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path)
    return path


def assert_mapped(raw):
    prompts, answers = to_prompt_schema(raw, DataConfig(source="x.jsonl", columns=MAPPING))
    assert prompts.to_dict("records") == [
        {"id": "7", "family": "reasoning", "split": "eval", "prompt": "what is two plus three",
         "request": "what is two plus three"},
        {"id": "8", "family": "open_ended", "split": "train", "prompt": "name a fruit", "request": "name a fruit"},
    ]
    assert answers["answer"].tolist() == ['"5"', '"apple"']


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_local_file_with_column_mapping(tmp_path, suffix):
    write_source(tmp_path / f"prompts{suffix}", RAW)
    # relative path: resolved against the project root, not the working directory
    raw = load_source_table(DataConfig(source=f"prompts{suffix}", columns=MAPPING), tmp_path)
    assert len(raw) == 2
    assert_mapped(raw)


def test_load_dataset_on_a_local_directory_offline(tmp_path, hf_cache):
    """hf:<directory of data files> goes through datasets.load_dataset, split by file name."""
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    write_source(folder / "train.jsonl", RAW)
    write_source(folder / "test.jsonl", RAW[:1])
    raw = load_source_table(DataConfig(source="hf:my_dataset", columns=MAPPING), tmp_path)
    assert_mapped(raw)
    test = load_source_table(DataConfig(source="hf:my_dataset", hf_split="test", columns=MAPPING), tmp_path)
    assert test["question"].tolist() == ["what is two plus three"]


def test_saved_dataset_directory(tmp_path, hf_cache):
    datasets.DatasetDict({"train": datasets.Dataset.from_list(RAW)}).save_to_disk(tmp_path / "saved")
    raw = load_source_table(DataConfig(source=f"hf:{tmp_path / 'saved'}", columns=MAPPING), "/nonexistent-root")
    assert_mapped(raw)


def test_unknown_dataset_id_offline(tmp_path, hf_cache, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataSourceError, match=r"powerflow-tests/no-such-dataset.*offline"):
        load_source_table(DataConfig(source="hf:powerflow-tests/no-such-dataset"), tmp_path)


def test_world_rows_pass_through_and_are_required(world_rows, tmp_path):
    raw = load_source_table(DataConfig(), tmp_path, world_rows=world_rows)
    assert raw["id"].tolist() == ["r-1", "r-2", "o-1", "o-2"]
    with pytest.raises(DataSourceError, match="world_rows"):
        load_source_table(DataConfig(), tmp_path)


def test_missing_file_names_path_and_fix(tmp_path):
    with pytest.raises(DataSourceError, match=r"prompts\.csv not found.*data\.source"):
        load_source_table(DataConfig(source="prompts.csv"), tmp_path)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("bad.jsonl", '{"prompt": "a"}\n{"prompt": \n', "line 2 is not valid JSON"),
        ("list.jsonl", '["a", "b"]\n', "line 1 is a JSON list"),
        ("bad.parquet", "not parquet at all", "could not be read as parquet"),
    ],
)
def test_unreadable_file(tmp_path, name, content, match):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataSourceError, match=match):
        load_source_table(DataConfig(source=name), tmp_path)


@pytest.mark.parametrize("name, content", [("empty.jsonl", "\n"), ("empty.csv", "prompt\n")])
def test_empty_table(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataSourceError, match="has no rows"):
        load_source_table(DataConfig(source=name), tmp_path)


def test_mapped_column_absent_lists_existing_columns(tmp_path):
    write_source(tmp_path / "p.jsonl", RAW)
    cfg = DataConfig(source="p.jsonl", columns={"prompt": "problem"})
    raw = load_source_table(cfg, tmp_path)
    with pytest.raises(DataSourceError, match=r"data\.columns\.prompt='problem'.*'question'.*'solution'"):
        to_prompt_schema(raw, cfg)


def test_no_prompt_column_asks_for_a_mapping(tmp_path):
    write_source(tmp_path / "p.jsonl", RAW)
    cfg = DataConfig(source="p.jsonl")
    with pytest.raises(DataSourceError, match=r"no prompt column.*data\.columns\.prompt"):
        to_prompt_schema(load_source_table(cfg, tmp_path), cfg)
