"""Benchmark loaders on small local files of each schema: rows, golds, shuffles, errors (no network)."""

import json
from collections import Counter

import datasets
import huggingface_hub
import pytest

from powerflow.errors import UserError
from powerflow.eval.benchmarks import (
    LETTERS,
    MATH_TEMPLATE,
    OPEN_QA_TEMPLATE,
    BenchmarkError,
    benchmark_names,
    load_benchmark,
    merge_alias_groups,
)
from powerflow.eval.evaluate import rows_by_family
from tests.data.benchmark_files import (
    coverageqa_records,
    coverageqa_release,
    creative_prompts,
    creative_records,
    gpqa_records,
    math500_records,
    mmlu_pro_records,
    write_coverageqa_json,
    write_creative_json,
    write_records,
)

INSTRUCTION = "Answer with 'The answer is (X)' where X is the letter."


def assert_row_contract(bench, kind):
    assert bench.kind == kind
    ids = [r["id"] for r in bench.rows]
    assert len(set(ids)) == len(ids)
    for row in bench.rows:
        assert set(row) == {"id", "family", "prompt", "answer", "meta"}
        assert row["family"] == bench.name and isinstance(row["id"], str) and row["prompt"]
    assert list(rows_by_family(bench.rows)) == [bench.name]  # the evaluator accepts them


# --- MATH500 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv", ".json"])
def test_math500_rows(tmp_path, suffix):
    path = write_records(tmp_path / f"math{suffix}", math500_records())
    bench = load_benchmark("math500", str(path))
    assert_row_contract(bench, "math")
    assert [r["id"] for r in bench.rows] == ["test/prealgebra/1.json", "test/algebra/2.json", "test/algebra/3.json"]
    assert [r["answer"] for r in bench.rows] == ["2", "\\frac{1}{2}", "-3"]
    first = bench.rows[0]
    assert first["prompt"] == (
        "What is $1+1$?\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    )
    assert first["prompt"] == MATH_TEMPLATE.format(problem="What is $1+1$?")
    # level is an int in every format (csv cells are text)
    assert [(r["meta"]["subject"], r["meta"]["level"]) for r in bench.rows] == [
        ("Prealgebra", 1), ("Algebra", 2), ("Algebra", 5)
    ]
    assert bench.rows[0]["meta"]["source"] == f"file {path}"


def test_math500_original_level_strings_and_limit(tmp_path):
    records = math500_records()
    records[0]["level"] = "Level 4"
    path = write_records(tmp_path / "math.jsonl", records)
    bench = load_benchmark("math500", str(path), limit=2)
    assert [r["meta"]["level"] for r in bench.rows] == [4, 2]
    assert [r["id"] for r in bench.rows] == ["test/prealgebra/1.json", "test/algebra/2.json"]


# --- GPQA-Diamond ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_gpqa_gold_letter_points_at_the_correct_answer(tmp_path, suffix):
    path = write_records(tmp_path / f"gpqa{suffix}", gpqa_records(5))
    bench = load_benchmark("gpqa_diamond", str(path))
    assert_row_contract(bench, "multiple_choice")
    assert [r["id"] for r in bench.rows] == [f"rec{i:03d}" for i in range(5)]
    for i, row in enumerate(bench.rows):
        options = row["meta"]["options"]
        assert row["meta"]["n_options"] == 4
        assert sorted(options) == sorted([f"right {i}", f"wrong {i}a", f"wrong {i}b", f"wrong {i}c"])
        assert options[LETTERS.index(row["answer"])] == f"right {i}"
        lines = "\n".join(f"({LETTERS[k]}) {text}" for k, text in enumerate(options))
        assert row["prompt"] == f"Question {i}: which option is right?\n\n{lines}\n\n{INSTRUCTION}"
    assert bench.rows[0]["meta"]["domain"] == "Physics"


def test_gpqa_shuffle_is_per_question_and_deterministic(tmp_path):
    records = gpqa_records(20)
    path = write_records(tmp_path / "gpqa.jsonl", records)
    first = load_benchmark("gpqa_diamond", str(path), seed=0)
    again = load_benchmark("gpqa_diamond", str(path), seed=0)
    assert first.rows == again.rows
    letters = [r["answer"] for r in first.rows]
    assert len(set(letters)) > 1  # questions get different permutations, not one shared order
    permutations = {tuple("R" if t.startswith("right") else t[-1] for t in r["meta"]["options"]) for r in first.rows}
    assert len(permutations) > 5  # 20 questions, 24 possible orders
    # a question's order depends on its id, not on its position in the file
    reversed_path = write_records(tmp_path / "reversed.jsonl", records[::-1])
    by_id = {r["id"]: r for r in load_benchmark("gpqa_diamond", str(reversed_path), seed=0).rows}
    assert all(by_id[r["id"]]["meta"]["options"] == r["meta"]["options"] for r in first.rows)
    # another seed gives other orders (the gold still points at the correct text)
    other = load_benchmark("gpqa_diamond", str(path), seed=1)
    assert [r["meta"]["options"] for r in other.rows] != [r["meta"]["options"] for r in first.rows]
    for i, row in enumerate(other.rows):
        assert row["meta"]["options"][LETTERS.index(row["answer"])] == f"right {i}"


def test_gpqa_without_record_id_hashes_the_question(tmp_path):
    path = write_records(tmp_path / "gpqa.jsonl", gpqa_records(3, with_record_id=False))
    ids = [r["id"] for r in load_benchmark("gpqa_diamond", str(path)).rows]
    assert all(i.startswith("gpqa-") for i in ids) and len(set(ids)) == 3
    assert ids == [r["id"] for r in load_benchmark("gpqa_diamond", str(path)).rows]


# --- MMLU-Pro --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_mmlu_pro_ten_three_and_padded_options(tmp_path, suffix):
    path = write_records(tmp_path / f"mmlu{suffix}", mmlu_pro_records())
    bench = load_benchmark("mmlu_pro", str(path))
    assert_row_contract(bench, "multiple_choice")
    ten, three, padded = bench.rows
    assert [r["id"] for r in bench.rows] == ["70", "71", "72"]
    # ten options, in the published order (never shuffled)
    assert ten["meta"]["options"] == [f"option {k}" for k in range(10)] and ten["meta"]["n_options"] == 10
    assert ten["answer"] == "H" and ten["meta"]["options"][7] == "option 7"
    assert "(J) option 9" in ten["prompt"] and ten["prompt"].endswith(INSTRUCTION)
    assert three["meta"]["options"] == ["red", "green", "blue"] and three["answer"] == "B"
    assert three["prompt"] == f"Three options, gold B?\n\n(A) red\n(B) green\n(C) blue\n\n{INSTRUCTION}"
    assert (three["meta"]["category"], three["meta"]["src"]) == ("law", "stemez-Law")
    # "N/A" padding dropped as MMLU-Pro's evaluation does; the gold letter follows its option
    assert padded["meta"]["options"] == ["a", "c", "d"] and padded["answer"] == "C"


def test_relative_path_resolves_against_the_project_root(tmp_path, monkeypatch):
    write_records(tmp_path / "data" / "mmlu.jsonl", mmlu_pro_records())
    monkeypatch.chdir(tmp_path / "data")  # the working directory is not the project root
    bench = load_benchmark("mmlu_pro", "data/mmlu.jsonl", project_root=tmp_path)
    assert bench.rows[0]["meta"]["source"] == f"file {tmp_path / 'data' / 'mmlu.jsonl'}"
    with pytest.raises(BenchmarkError, match="not found"):
        load_benchmark("mmlu_pro", "data/mmlu.jsonl")


def test_mmlu_pro_answer_and_answer_index_must_agree(tmp_path):
    records = mmlu_pro_records()
    records[1]["answer_index"] = 2
    path = write_records(tmp_path / "mmlu.jsonl", records)
    with pytest.raises(BenchmarkError, match=r"'71'.*answer 'B' but answer_index 2"):
        load_benchmark("mmlu_pro", str(path))
    records[1]["answer"], records[1]["answer_index"] = "AB", 0
    with pytest.raises(BenchmarkError, match=r"answer 'AB' is not one of the letters ABC"):
        load_benchmark("mmlu_pro", str(write_records(tmp_path / "mmlu.jsonl", records)))
    records[1]["answer"], records[1]["answer_index"] = "B", "one"
    with pytest.raises(BenchmarkError, match=r"answer_index 'one'"):
        load_benchmark("mmlu_pro", str(write_records(tmp_path / "mmlu.jsonl", records)))


# --- Creative Writing v3 ---------------------------------------------------------------------------


def test_creative_release_json_expands_seed_modifiers_seed_major(tmp_path):
    path = write_creative_json(tmp_path / "creative_writing_prompts_v3.json")
    bench = load_benchmark("creative_writing_v3", str(path))
    assert_row_contract(bench, "creative")
    # prompt 1 has 3 modifiers, prompt 5 has 2: seed 0 of both, seed 1 of both, then seed 2 of prompt 1
    assert [r["id"] for r in bench.rows] == ["1/0", "5/0", "1/1", "5/1", "1/2"]
    assert all(r["answer"] is None for r in bench.rows)
    assert bench.rows[0]["prompt"] == "Write about a gladiator. Mention a deity. 1000 words."
    # every <SEED> is filled, as the benchmark's str.replace does
    assert bench.rows[3]["prompt"] == "Continue the story. Crows gather. Build dread. Crows gather. 1000 words."
    assert bench.rows[4]["meta"] == {"prompt_id": "1", "seed_index": 2, "seed_modifier": "Include a scar.",
                                     "title": "Gladiator", "category": "historical fiction",
                                     "source": f"file {path}"}


def test_creative_n_seeds_and_jsonl_form(tmp_path):
    path = write_records(tmp_path / "creative.jsonl", creative_records())
    bench = load_benchmark("creative_writing_v3", str(path), n_seeds=1)
    assert [r["id"] for r in bench.rows] == ["1/0", "5/0"]
    assert [r["meta"]["seed_modifier"] for r in bench.rows] == ["Mention a deity.", "A cabin."]
    limited = load_benchmark("creative_writing_v3", str(path), limit=3)
    assert [r["id"] for r in limited.rows] == ["1/0", "5/0", "1/1"]


def test_creative_prompt_without_modifiers_gives_one_row(tmp_path):
    prompts = creative_prompts()
    prompts["1"]["seed_modifiers"] = []
    bench = load_benchmark("creative_writing_v3", str(write_creative_json(tmp_path / "c.json", prompts)))
    assert [r["id"] for r in bench.rows] == ["1/0", "5/0", "5/1"]
    assert bench.rows[0]["prompt"] == "Write about a gladiator.  1000 words."


# --- CoverageQA ------------------------------------------------------------------------------------


def test_coverageqa_release_json_merges_repeated_alias_groups(tmp_path):
    path = write_coverageqa_json(tmp_path / "CoverageQA.json")
    bench = load_benchmark("coverageqa", str(path))
    assert_row_contract(bench, "open_qa")
    euro, parks = bench.rows
    question = next(iter(coverageqa_release()))
    assert euro["prompt"] == OPEN_QA_TEMPLATE.format(question=question)
    assert euro["prompt"].endswith("\nGive one answer.")
    # the release lists Ireland's group twice: it counts once
    assert euro["answer"] == [["France"], ["Irish Republic", "Republic of Ireland", "Ireland"], ["Spain"]]
    # "Glacier Bay National Park " and "Glacier Bay National Park" are one park
    assert parks["answer"] == [["Glacier Bay", "Glacier Bay National Park"], ["Zion", "Zion National Park"]]
    assert (parks["meta"]["category"], parks["meta"]["n_answers"]) == ("park", 2)
    assert euro["id"].startswith("coverageqa-")
    assert euro["id"] == load_benchmark("coverageqa", str(path)).rows[0]["id"]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_coverageqa_local_form(tmp_path, suffix):
    bench = load_benchmark("coverageqa", str(write_records(tmp_path / f"cq{suffix}", coverageqa_records())))
    assert [r["id"] for r in bench.rows] == ["cq-1", "cq-2"]
    assert bench.rows[0]["prompt"] == "Name a primary colour.\nGive one answer."
    assert bench.rows[0]["answer"] == [["red"], ["blue"], ["yellow"]]
    assert bench.rows[1]["answer"] == [["lion"], ["tiger"], ["jaguar", "Panthera onca"]]
    assert bench.rows[1]["meta"]["category"] == "animal" and "category" not in bench.rows[0]["meta"]


def test_coverageqa_plain_string_answers_are_groups_of_one(tmp_path):
    records = coverageqa_records()[:1]
    records[0]["answers"] = ["red", "blue", ["yellow", "Yellow "]]
    bench = load_benchmark("coverageqa", str(write_records(tmp_path / "cq.jsonl", records)))
    assert bench.rows[0]["answer"] == [["red"], ["blue"], ["yellow"]]


def test_merge_alias_groups_bridges_groups_through_a_shared_alias():
    groups = [["A"], ["b"], ["C", "a"], ["B", "c"], [" "], ["d", "D"]]
    assert merge_alias_groups(groups) == [["A", "C", "b"], ["d"]]


# --- errors ----------------------------------------------------------------------------------------


def test_missing_field_names_file_fields_and_schema(tmp_path):
    records = gpqa_records(2)
    del records[1]["Correct Answer"]
    path = write_records(tmp_path / "gpqa.jsonl", records)
    with pytest.raises(BenchmarkError) as info:
        load_benchmark("gpqa_diamond", str(path))
    message = str(info.value)
    assert str(path) in message and "row 1" in message and "'Correct Answer'" in message
    assert "expected schema: records with Question, Correct Answer" in message


def test_missing_fields_in_a_csv_and_a_json_list(tmp_path):
    records = [{k: v for k, v in r.items() if k not in ("answer", "level")} for r in math500_records()]
    for suffix in (".csv", ".json"):
        with pytest.raises(BenchmarkError, match=r"lacks 'answer', 'level'; expected schema"):
            load_benchmark("math500", str(write_records(tmp_path / f"m{suffix}", records)))


def test_unknown_benchmark_name():
    with pytest.raises(BenchmarkError, match=r"unknown benchmark 'math5000'.*math500, gpqa_diamond, mmlu_pro"):
        load_benchmark("math5000")
    assert benchmark_names() == ("math500", "gpqa_diamond", "mmlu_pro", "creative_writing_v3", "coverageqa")


@pytest.mark.parametrize("name", ["creative_writing_v3", "coverageqa"])
def test_local_only_benchmarks_need_a_file(name):
    with pytest.raises(BenchmarkError, match=rf"no hub release.*evaluate\.sources\.{name}"):
        load_benchmark(name)
    with pytest.raises(BenchmarkError, match=r"reads local files only"):
        load_benchmark(name, "someone/some-dataset")


def test_missing_file_bad_json_and_bad_limit(tmp_path):
    with pytest.raises(BenchmarkError, match=r"not found; fix evaluate\.sources\.mmlu_pro"):
        load_benchmark("mmlu_pro", str(tmp_path / "absent.parquet"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"1": {"writing_prompt": ')
    with pytest.raises(BenchmarkError, match=r"could not be read as JSON"):
        load_benchmark("creative_writing_v3", str(broken))
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text(json.dumps(math500_records()[0]) + "\nnot json\n")
    with pytest.raises(BenchmarkError, match=r"'math500'.*line 2 is not valid JSON"):
        load_benchmark("math500", str(bad_line))
    good = write_records(tmp_path / "m.jsonl", math500_records())
    with pytest.raises(BenchmarkError, match=r"limit=0"):
        load_benchmark("math500", str(good), limit=0)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(BenchmarkError, match=r"has no rows"):
        load_benchmark("math500", str(empty))
    assert issubclass(BenchmarkError, UserError)


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """Offline, with every Hugging Face cache in an empty folder: no hub id is cached."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-home" / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))


def test_offline_uncached_default_hub_id_is_one_user_error(empty_hf_cache):
    with pytest.raises(BenchmarkError) as info:
        load_benchmark("gpqa_diamond")
    message = str(info.value)
    assert "'gpqa_diamond'" in message and "'Idavidrein/gpqa'" in message and "'gpqa_diamond'" in message
    assert "machine with internet" in message and "evaluate.sources.gpqa_diamond" in message


def test_offline_uncached_custom_hub_id(empty_hf_cache):
    with pytest.raises(BenchmarkError, match=r"'math500': dataset 'powerflow-tests/no-such-benchmark'.*Offline"
                                             r".*evaluate\.sources\.math500"):
        load_benchmark("math500", "powerflow-tests/no-such-benchmark")


def test_gold_letters_spread_over_all_four_positions(tmp_path):
    """Over 200 questions every letter is gold sometimes and none dominates (a per-question shuffle)."""
    path = write_records(tmp_path / "gpqa.parquet", gpqa_records(200))
    counts = Counter(r["answer"] for r in load_benchmark("gpqa_diamond", str(path)).rows)
    assert set(counts) == set("ABCD") and max(counts.values()) < 100
