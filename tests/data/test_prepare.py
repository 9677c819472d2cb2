"""The prepare stage end to end: written outputs, manifest hashes, and nothing written on failure."""

import json

import pandas as pd
import pytest

from powerflow.errors import UserError
from powerflow.data.config import DataConfig
from powerflow.data.prepare import PreparedDataError, load_prepared, prepare_prompts
from powerflow.data.schema import PROMPT_COLUMNS
from powerflow.data.validation import DataValidationError


@pytest.fixture
def project(tmp_path):
    return tmp_path


def test_prepare_writes_prompts_answers_and_manifest(project, world_rows, tokenizer):
    out = project / "data" / "prepared"
    prepared = prepare_prompts(DataConfig(), tokenizer, out, project, world_rows=world_rows)
    assert sorted(p.name for p in out.iterdir()) == ["answers.jsonl", "manifest.json", "prompts.jsonl"]
    lines = [json.loads(line) for line in prepared.prompts_path.read_text().splitlines()]
    assert [list(r) for r in lines] == [list(PROMPT_COLUMNS)] * 4
    assert all("answer" not in line for line in prepared.prompts_path.read_text().splitlines())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == prepared.manifest
    assert manifest["rows"] == {"eval": {"open_ended": 1, "reasoning": 1}, "train": {"open_ended": 1, "reasoning": 1}}
    assert manifest["source"] == "world" and manifest["prompt_format"] == "text"
    assert manifest["validation"]["success"] and manifest["validation"]["report"] == "data/validation/prepared.json"
    assert (project / "data" / "validation" / "prepared.json").is_file()

    prompts, answers, loaded = load_prepared(out)
    assert loaded == manifest
    assert prompts["id"].tolist() == ["r-1", "r-2", "o-1", "o-2"]
    assert prompts["prompt_tokens"].tolist() == [5, 5, 3, 3]
    assert [json.loads(a) for a in answers["answer"]] == ["5", "5", ["apple", "pear"], ["red", "blue"]]


def test_chat_prepare_from_a_mapped_csv(project, chat_tokenizer):
    pd.DataFrame({"question": ["what is two plus three", "name a fruit"], "gold": ["5", "apple"]}).to_csv(
        project / "p.csv", index=False)
    cfg = DataConfig(source="p.csv", columns={"prompt": "question", "answer": "gold"}, prompt_format="chat",
                     eval_fraction=0.5)
    prepared = prepare_prompts(cfg, chat_tokenizer, project / "out", project)
    prompts, answers, _ = load_prepared(prepared.out_dir)
    assert prompts["prompt"].str.endswith("<|im_start|> assistant ").all()
    assert set(prompts["split"]) <= {"train", "eval"} and set(prompts["family"]) == {"reasoning"}
    assert list(prompts.columns) == list(PROMPT_COLUMNS)  # the gold column stays out of the training table
    assert answers["id"].tolist() == ["row-0", "row-1"]


def test_manifest_hash_changes_with_a_prompt_and_only_then(project, world_rows, tokenizer):
    out = project / "prepared"
    first = prepare_prompts(DataConfig(), tokenizer, out, project, world_rows=world_rows)
    first_bytes = (out / "manifest.json").read_bytes()
    again = prepare_prompts(DataConfig(), tokenizer, out, project, world_rows=[dict(r) for r in world_rows])
    assert again.manifest["prompts_sha256"] == first.manifest["prompts_sha256"]
    assert (out / "manifest.json").read_bytes() == first_bytes  # no timestamps, no machine paths

    world_rows[2]["prompt"] = "name a color"
    changed = prepare_prompts(DataConfig(), tokenizer, out, project, world_rows=world_rows)
    assert changed.manifest["prompts_sha256"] != first.manifest["prompts_sha256"]
    assert changed.manifest["answers_sha256"] == first.manifest["answers_sha256"]


def test_failing_table_writes_report_but_no_prepared_data(project, world_rows, tokenizer):
    world_rows[1]["family"] = "poetry"
    out = project / "data" / "prepared"
    with pytest.raises(DataValidationError, match="allowed families") as info:
        prepare_prompts(DataConfig(), tokenizer, out, project, world_rows=world_rows)
    report = project / "data" / "validation" / "prepared.json"
    assert str(report) in str(info.value) and json.loads(report.read_text())["success"] is False
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir()] == ["validation"]  # no temporary directory left behind


def test_failing_table_leaves_an_earlier_good_output_untouched(project, world_rows, tokenizer):
    out = project / "prepared"
    prepare_prompts(DataConfig(), tokenizer, out, project, world_rows=world_rows)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    report = project / "reports" / "bad.json"
    with pytest.raises(DataValidationError, match="token-length bounds"):
        prepare_prompts(DataConfig(max_prompt_tokens=4), tokenizer, out, project, world_rows=world_rows,
                        report_path=report)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert report.is_file()


def test_load_prepared_errors_say_how_to_fix(project, world_rows, tokenizer):
    with pytest.raises(PreparedDataError, match="dvc repro prepare"):
        load_prepared(project / "nothing")
    out = project / "prepared"
    prepare_prompts(DataConfig(), tokenizer, out, project, world_rows=world_rows)
    prompts = out / "prompts.jsonl"
    prompts.write_text(prompts.read_text().replace("name a fruit", "name a pear"))
    with pytest.raises(PreparedDataError, match="sha256"):
        load_prepared(out)
    (out / "answers.jsonl").unlink()
    with pytest.raises(UserError, match=r"incomplete \(missing answers\.jsonl\).*dvc repro prepare"):
        load_prepared(out)


def test_embedded_world_rows_pass_validation(project):
    """The real world's prompt rows and tokenizer (what `dvc repro prepare` uses by default)."""
    from powerflow.world.config import WorldConfig
    from powerflow.world.teacher import world_prompt_rows
    from powerflow.world.tokenizer import build_tokenizer

    world = WorldConfig()
    rows = world_prompt_rows(world)
    prepared = prepare_prompts(DataConfig(), build_tokenizer(world), project / "prepared", project, world_rows=rows)
    counts = prepared.manifest["rows"]
    assert sum(n for per_family in counts.values() for n in per_family.values()) == len(rows)
    assert set(counts) == {"train", "eval"}
    _prompts, answers, _ = load_prepared(prepared.out_dir)
    assert len(answers) == len(rows)


# ------------------------------------------------------------------------------ answer kinds
def test_the_manifest_records_the_worlds_answer_kinds(project, world_rows, tokenizer):
    prepared = prepare_prompts(DataConfig(), tokenizer, project / "out", project, world_rows=world_rows)
    assert prepared.manifest["answer_kinds"] == {"reasoning": "world_integer", "open_ended": "world_open"}
    assert prepared.manifest["answer_kinds_from"] == "inferred from the source"


def _table(project, rows) -> str:
    pd.DataFrame(rows).to_json(project / "p.jsonl", orient="records", lines=True)
    return "p.jsonl"


def test_a_users_answers_are_math_lists_open_qa_and_none_without_answers(project, tokenizer):
    source = _table(project, [
        {"id": "a", "prompt": "two plus three", "family": "reasoning", "answer": "\\frac{1}{2}"},
        {"id": "b", "prompt": "name a fruit", "family": "open_ended", "answer": ["apple", "pear"]},
    ])
    prepared = prepare_prompts(DataConfig(source=source, eval_fraction=0.5), tokenizer, project / "out", project)
    assert prepared.manifest["answer_kinds"] == {"reasoning": "math", "open_ended": "open_qa"}
    no_answers = _table(project, [{"id": "a", "prompt": "two plus three"}, {"id": "b", "prompt": "three"}])
    prepared = prepare_prompts(DataConfig(source=no_answers), tokenizer, project / "out2", project)
    assert prepared.manifest["answer_kinds"] == {"reasoning": "none"}


def test_data_answer_kind_overrides_the_inference_and_checks_every_key(project, tokenizer):
    from powerflow.data.answer_kinds import AnswerKindError

    source = _table(project, [{"id": str(i), "prompt": f"pick {i}", "answer": letter}
                              for i, letter in enumerate("ABCK")])
    cfg = DataConfig(source=source, answer_kind="multiple_choice")
    with pytest.raises(AnswerKindError, match=r"row '3' \(family 'reasoning'\): multiple_choice keys are one letter"):
        prepare_prompts(cfg, tokenizer, project / "out", project)
    assert not (project / "out").exists()  # nothing half-written
    source = _table(project, [{"id": str(i), "prompt": f"pick {i}", "answer": letter} for i, letter in enumerate("ABC")])
    prepared = prepare_prompts(DataConfig(source=source, answer_kind={"reasoning": "multiple_choice"}), tokenizer,
                               project / "out", project)
    assert prepared.manifest["answer_kinds"] == {"reasoning": "multiple_choice"}
    assert prepared.manifest["answer_kinds_from"] == "data.answer_kind"


def test_the_worlds_kinds_are_refused_for_other_sources(project, tokenizer):
    from powerflow.errors import ConfigError

    source = _table(project, [{"id": "a", "prompt": "p", "answer": "(0,9) \\cup (9,36)"}])
    with pytest.raises(ConfigError, match="world's kinds grade only the embedded world"):
        prepare_prompts(DataConfig(source=source, answer_kind="world_integer"), tokenizer, project / "out", project)


@pytest.mark.parametrize("value, message", [
    ("latex", "data.answer_kind='latex' is not an answer kind"),
    ({"poetry": "math"}, "data.answer_kind.poetry: 'poetry' is not in data.families"),
    ({"reasoning": "integer"}, "data.answer_kind.reasoning='integer' is not an answer kind"),
])
def test_bad_answer_kinds_in_the_config_name_the_key(value, message):
    from powerflow.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        DataConfig(answer_kind=value)


def test_an_old_manifest_without_answer_kinds_asks_for_prepare(project, world_rows, tokenizer):
    out = project / "prepared"
    prepare_prompts(DataConfig(), tokenizer, out, project, world_rows=world_rows)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["answer_kinds"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PreparedDataError, match="records no answer kinds.*dvc repro prepare"):
        load_prepared(out)
