"""Public benchmarks as eval rows: MATH500, GPQA-Diamond, MMLU-Pro, EQ-Bench Creative Writing v3, CoverageQA.

`load_benchmark(name, source=None, limit=None, seed=0)` returns a `Benchmark` whose rows follow the
eval row contract of `powerflow.eval.evaluate` ({id, family, prompt, answer}) plus `meta`:

    id       str, unique within the benchmark
    family   the benchmark name ("math500", "gpqa_diamond", ...)
    prompt   the fully templated prompt text (plain text, no chat template)
    answer   math: the gold answer string; multiple_choice: the gold letter;
             open_qa: alias groups [[answer, alias, ...], ...]; creative: None
    meta     subject/level (MATH500), category (MMLU-Pro), domain (GPQA), options and
             n_options (multiple choice), seed modifier (creative), "source", ...

Benchmarks, their kind (the grading registry's answer kind: math, multiple_choice_4 for GPQA,
multiple_choice for MMLU-Pro, none, open_qa), and where they come from (`source`: a hub id for datasets.load_dataset,
or a local .jsonl/.json/.csv/.parquet file with the same fields; in a .csv file, list fields are
JSON-encoded strings):

    math500              math             HuggingFaceH4/MATH-500, split test
    gpqa_diamond         multiple_choice  Idavidrein/gpqa, config gpqa_diamond, split train
    mmlu_pro             multiple_choice  TIGER-Lab/MMLU-Pro, split test
    creative_writing_v3  creative         local file only (EQ-bench/creative-writing-bench,
                                          data/creative_writing_prompts_v3.json)
    coverageqa           open_qa          local file only (SimpleStrat, data/CoverageQA.json)

Prompt templates (module constants; `{...}` are filled per row):

    MATH_TEMPLATE             the problem, then "Please reason step by step, and put your final
                              answer within \\boxed{}."
    MULTIPLE_CHOICE_TEMPLATE  the question, the options one per line as "(A) text", then
                              "Answer with 'The answer is (X)' where X is the letter." (the grader
                              follows MMLU-Pro's cascade: 'answer is (X)', then 'Answer: X', then
                              the last letter A-J)
    OPEN_QA_TEMPLATE          the question, then "Give one answer."
    CREATIVE_TEMPLATE         the writing prompt with its seed modifier filled in

Rows keep the source's own order (the published order), so `limit=N` always takes the same N
rows. Creative rows are ordered seed-major (every prompt with its first modifier, then every
prompt with its second, ...), as the benchmark's iterations run, so a limit still covers all
prompts. Every problem a user can fix (unknown name, missing file or field, a hub id that is not
cached while HF_HUB_OFFLINE=1) is one `BenchmarkError` naming the benchmark and the fix.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from powerflow.errors import UserError
from powerflow.table_files import TableFileError, first_line, read_table_file, resolve_path

KINDS = ("math", "multiple_choice", "open_qa", "creative")
# MMLU-Pro has at most 10 options; its official answer extraction matches the letters A-J.
LETTERS = "ABCDEFGHIJ"
LOCAL_EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")

MATH_TEMPLATE = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
MULTIPLE_CHOICE_TEMPLATE = "{question}\n\n{options}\n\nAnswer with 'The answer is (X)' where X is the letter."
OPEN_QA_TEMPLATE = "{question}\nGive one answer."
CREATIVE_TEMPLATE = "{writing_prompt}"
# EQ-Bench Creative Writing v3 marks where a seed modifier goes; every occurrence is replaced
# (core/conversation.py: base_prompt.replace("<SEED>", seed_modifier)).
SEED_PLACEHOLDER = "<SEED>"
# MMLU-Pro pads some option lists with "N/A"; its evaluate_from_local.py drops them before lettering.
MMLU_PRO_PADDING = "N/A"


class BenchmarkError(UserError):
    """A benchmark cannot be loaded (unknown name, missing file or field, uncached hub id); says the fix."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's eval rows: each {id, family, prompt, answer, meta}.

    kind: what the benchmark is (math, multiple_choice, open_qa, creative); answer_kind: the
    registry's kind its rows are graded by (powerflow.eval.grading).
    """

    name: str
    kind: str
    rows: list[dict]
    answer_kind: str = "none"


@dataclass(frozen=True)
class _Spec:
    """How one benchmark is found and read: its kind, hub location, required fields, row builder."""

    kind: str
    answer_kind: str  # the grading registry's kind (powerflow.eval.grading)
    hub_id: str | None
    hub_config: str | None
    hub_split: str | None
    required: tuple[str, ...]
    schema: str
    # A .json file holding an object {key: {fields}} gives each record this field from its key.
    json_key_field: str
    build: Callable[..., list[dict]]


def load_benchmark(
    name: str,
    source: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    n_seeds: int | None = None,
    project_root: str | Path | None = None,
) -> Benchmark:
    """The rows of benchmark `name`, read from `source` (default: its hub release), templated.

    seed: GPQA's option order per question (other benchmarks are not shuffled).
    n_seeds: creative_writing_v3 only: the first n_seeds seed modifiers of each prompt (None: all).
    limit: the first `limit` rows in the source's order (creative: seed-major order).
    project_root: relative file paths resolve against it, as data.source does (None: the working directory).
    """
    spec = _spec(name)
    if limit is not None and limit < 1:
        raise BenchmarkError(f"benchmark {name!r}: limit={limit}; use an integer >= 1, or None for all rows.")
    if n_seeds is not None and n_seeds < 1:
        raise BenchmarkError(f"benchmark {name!r}: n_seeds={n_seeds}; use an integer >= 1, or None for all modifiers.")
    records, origin = _read_records(name, spec, source, project_root)
    if not records:
        raise BenchmarkError(f"benchmark {name!r}: {origin} has no rows; point evaluate.sources.{name} at a full copy.")
    for i, record in enumerate(records):
        missing = [f for f in spec.required if _is_missing(record.get(f))]
        if missing:
            raise BenchmarkError(
                f"benchmark {name!r}: {origin} row {i} lacks {', '.join(repr(m) for m in missing)}; "
                f"expected schema: {spec.schema}"
            )
    rows = spec.build(name, records, origin=origin, seed=seed, n_seeds=n_seeds)
    return Benchmark(name=name, kind=spec.kind, rows=rows[:limit] if limit is not None else rows,
                     answer_kind=spec.answer_kind)


def benchmark_names() -> tuple[str, ...]:
    """Every name `load_benchmark` knows."""
    return tuple(_SPECS)


# --- reading -------------------------------------------------------------------------------------


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        raise BenchmarkError(f"unknown benchmark {name!r}: use one of {', '.join(_SPECS)}.")
    return _SPECS[name]


def _read_records(
    name: str, spec: _Spec, source: str | None, project_root: str | Path | None
) -> tuple[list[dict], str]:
    """The benchmark's raw records as plain dicts, and a phrase naming where they came from."""
    if source is None:
        if spec.hub_id is None:
            raise BenchmarkError(
                f"benchmark {name!r} has no hub release to download: pass its file via evaluate.sources.{name}; "
                f"expected schema: {spec.schema}"
            )
        source = spec.hub_id
    if Path(source).suffix.lower() in LOCAL_EXTENSIONS:
        path = Path(source).expanduser()
        if project_root is not None:
            path = resolve_path(path, project_root)
        return _file_records(name, spec, path), f"file {path}"
    if spec.hub_id is None:
        raise BenchmarkError(
            f"benchmark {name!r} reads local files only, but evaluate.sources.{name}={source!r} is not a path "
            f"ending in {', '.join(LOCAL_EXTENSIONS)}: point it at the benchmark's file; expected schema: {spec.schema}"
        )
    return _hub_records(name, spec, source), f"dataset {source!r}"


def _hub_records(name: str, spec: _Spec, hub_id: str) -> list[dict]:
    """`datasets.load_dataset(hub_id, config, split=split)` as dicts; any failure is one BenchmarkError.

    With HF_HUB_OFFLINE=1 a dataset that is not in the Hugging Face cache fails here
    (datasets raises ConnectionError "Couldn't reach ... (OfflineModeIsEnabled)").
    """
    import datasets  # heavy-ish (pyarrow, fsspec): only hub sources pay for it

    config = spec.hub_config if hub_id == spec.hub_id else None
    try:
        loaded = datasets.load_dataset(hub_id, config, split=spec.hub_split)
    except Exception as err:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ValueError, ...)
        raise BenchmarkError(
            f"benchmark {name!r}: dataset {hub_id!r} (config {config!r}, split {spec.hub_split!r}) could not be "
            f"loaded ({first_line(err)}). Offline (HF_HUB_OFFLINE=1) only cached datasets load: download it on a "
            f"machine with internet (datasets.load_dataset) and copy the Hugging Face cache here, or pass a local "
            f"file via evaluate.sources.{name}; expected schema: {spec.schema}"
        ) from err
    return [_plain(dict(record)) for record in loaded]


def _file_records(name: str, spec: _Spec, path: Path) -> list[dict]:
    """A local .jsonl/.csv/.parquet file (read by powerflow.table_files) or .json file as dicts."""
    if not path.is_file():
        raise BenchmarkError(
            f"benchmark {name!r}: file {path} not found; fix evaluate.sources.{name} or create the file; "
            f"expected schema: {spec.schema}"
        )
    if path.suffix.lower() == ".json":
        return _json_records(name, spec, path)
    try:
        table = read_table_file(path)
    except TableFileError as err:
        raise BenchmarkError(f"benchmark {name!r}: {err}") from err
    return [_plain(record) for record in table.to_dict("records")]


def _json_records(name: str, spec: _Spec, path: Path) -> list[dict]:
    """A .json file: a list of records, or an object {key: {fields}} whose key fills spec.json_key_field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BenchmarkError(
            f"benchmark {name!r}: file {path} could not be read as JSON ({first_line(err)}); check that it is "
            "complete and valid JSON."
        ) from err
    if isinstance(data, dict):
        items = [{spec.json_key_field: key, **value} if isinstance(value, dict) else value
                 for key, value in data.items()]
    elif isinstance(data, list):
        items = data
    else:
        items = [data]
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BenchmarkError(
                f"benchmark {name!r}: file {path} entry {i} is a JSON {type(item).__name__}, not an object; "
                f"expected schema: {spec.schema}"
            )
    return items


def _plain(value: Any) -> Any:
    """numpy arrays/scalars (parquet, pandas) as Python lists/values; NaN (a missing pandas cell) as None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy array or scalar
        return _plain(value.tolist())
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _as_list(value: Any, name: str, field_name: str, row_id: str) -> list:
    """A list field; in a .csv file it is a JSON-encoded string."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise BenchmarkError(
                f"benchmark {name!r}: row {row_id!r} field {field_name!r} is text, not a list; in a .csv file write "
                f'list fields as JSON, e.g. ["first", "second"].'
            ) from err
    if not isinstance(value, list):
        raise BenchmarkError(
            f"benchmark {name!r}: row {row_id!r} field {field_name!r} is a {type(value).__name__}, not a list."
        )
    return value


def _text(value: Any) -> str:
    """A field as stripped text; whole floats (a pandas int column with gaps) lose their '.0'."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _index(value: Any) -> int | None:
    """An integer field that may be text ("3") or a float (3.0); None when it is neither."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def _stable_hash(*parts: object) -> str:
    """sha256 hex digest of the parts joined by NUL: stable across processes (unlike hash())."""
    return hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8")).hexdigest()


# --- templates -----------------------------------------------------------------------------------


def _format_options(options: list[str]) -> str:
    """Options one per line as "(A) text", lettered A, B, C, ... in the given order."""
    return "\n".join(f"({LETTERS[i]}) {text}" for i, text in enumerate(options))


def _multiple_choice_prompt(question: str, options: list[str]) -> str:
    return MULTIPLE_CHOICE_TEMPLATE.format(question=question, options=_format_options(options))


# --- row builders --------------------------------------------------------------------------------


def _math500_rows(name: str, records: list[dict], origin: str, **_) -> list[dict]:
    """MATH500 rows: the problem in MATH_TEMPLATE, gold = the `answer` string (LaTeX, unboxed).

    Schema (HuggingFaceH4/MATH-500 dataset card, features): problem, solution, answer, subject,
    level (int 1-5), unique_id (e.g. "test/precalculus/807.json"); `solution` is not used.
    """
    rows = []
    for record in records:
        rows.append({
            "id": _text(record["unique_id"]),
            "family": name,
            "prompt": MATH_TEMPLATE.format(problem=_text(record["problem"])),
            "answer": _text(record["answer"]),
            "meta": {"subject": _text(record["subject"]), "level": _level(record["level"]), "source": origin},
        })
    return rows


def _level(value: Any) -> int | str:
    """MATH difficulty as an int (1-5); "Level 5" (original MATH) and "5" (csv) parse too."""
    match = re.fullmatch(r"(?:level\s*)?(\d+)(?:\.0)?", _text(value), flags=re.IGNORECASE)
    return int(match.group(1)) if match else _text(value)


def _gpqa_rows(name: str, records: list[dict], origin: str, seed: int, **_) -> list[dict]:
    """GPQA rows: the correct and three incorrect answers, shuffled per question, lettered A-D.

    Schema (Idavidrein/gpqa, gpqa_diamond.csv; as read by inspect_evals' gpqa record_to_sample):
    Question, Correct Answer, Incorrect Answer 1, Incorrect Answer 2, Incorrect Answer 3,
    Record ID, High-level domain, Subdomain, and more columns (ignored). The id is "Record ID"
    when present, else a hash of the question. The option order of a question is
    `random.Random(sha256(seed, id)).shuffle`: the same for every run with this seed, and
    independent across questions, so gold letters are spread over A-D.
    """
    rows = []
    for record in records:
        question = _text(record["Question"])
        row_id = _text(record["Record ID"]) if not _is_missing(record.get("Record ID")) else (
            "gpqa-" + _stable_hash(question)[:16]
        )
        correct = _text(record["Correct Answer"])
        options = [correct] + [_text(record[f"Incorrect Answer {k}"]) for k in (1, 2, 3)]
        order = list(range(len(options)))
        random.Random(int(_stable_hash(seed, row_id)[:16], 16)).shuffle(order)
        presented = [options[i] for i in order]
        meta = {"options": presented, "n_options": len(presented), "source": origin, "shuffle_seed": seed}
        for field_name, key in (("High-level domain", "domain"), ("Subdomain", "subdomain")):
            if not _is_missing(record.get(field_name)):
                meta[key] = _text(record[field_name])
        rows.append({
            "id": row_id,
            "family": name,
            "prompt": _multiple_choice_prompt(question, presented),
            "answer": LETTERS[order.index(0)],
            "meta": meta,
        })
    return rows


def _mmlu_pro_rows(name: str, records: list[dict], origin: str, **_) -> list[dict]:
    """MMLU-Pro rows: the options in their published order (not shuffled), gold = the `answer` letter.

    Schema (TIGER-Lab/MMLU-Pro dataset card, features): question_id (int), question, options
    (list of 3-10 strings), answer (letter), answer_index (int), cot_content, category, src.
    "N/A" padding options are dropped as in the official evaluate_from_local.py; the gold letter
    is re-derived from the kept options and checked against `answer_index` when present.
    """
    rows = []
    for record in records:
        row_id = _text(record["question_id"])
        raw = [_text(o) for o in _as_list(record["options"], name, "options", row_id)]
        letter = _text(record["answer"]).upper()
        if len(letter) != 1 or letter not in LETTERS[: len(raw)]:
            raise BenchmarkError(
                f"benchmark {name!r}: question {row_id!r} answer {record['answer']!r} is not one of the letters "
                f"{LETTERS[: len(raw)]} of its {len(raw)} options; fix the row."
            )
        gold = LETTERS.index(letter)
        if not _is_missing(record.get("answer_index")) and _index(record["answer_index"]) != gold:
            raise BenchmarkError(
                f"benchmark {name!r}: question {row_id!r} has answer {letter!r} but answer_index "
                f"{record['answer_index']!r}; they must name the same option (A = 0)."
            )
        if raw[gold] == MMLU_PRO_PADDING:
            raise BenchmarkError(f"benchmark {name!r}: question {row_id!r} answer {letter!r} is an 'N/A' option.")
        kept = [i for i, text in enumerate(raw) if text != MMLU_PRO_PADDING]
        options = [raw[i] for i in kept]
        if not 2 <= len(options) <= len(LETTERS):
            raise BenchmarkError(
                f"benchmark {name!r}: question {row_id!r} has {len(options)} options; use 2 to {len(LETTERS)}."
            )
        meta = {"options": options, "n_options": len(options), "category": _text(record["category"]), "source": origin}
        if not _is_missing(record.get("src")):
            meta["src"] = _text(record["src"])
        rows.append({
            "id": row_id,
            "family": name,
            "prompt": _multiple_choice_prompt(_text(record["question"]), options),
            "answer": LETTERS[kept.index(gold)],
            "meta": meta,
        })
    return rows


def _creative_rows(name: str, records: list[dict], origin: str, n_seeds: int | None, **_) -> list[dict]:
    """Creative Writing v3 rows: each prompt once per seed modifier, seed-major; no gold answer.

    Schema (EQ-bench/creative-writing-bench, data/creative_writing_prompts_v3.json): a JSON object
    {prompt id: {category, title, writing_prompt, seed_modifiers: [str, ...]}}; the writing prompt
    holds "<SEED>" (sometimes twice), replaced by one modifier. The benchmark's iteration i uses
    modifier i-1 (core/benchmark.py: seed_mods[(i-1) % len(seed_mods)]); row j of a prompt here is
    modifier j, for the first n_seeds modifiers (all by default). The jsonl/csv/parquet form has
    the same fields with the key as `id`. A prompt without modifiers gives one row, placeholder removed.
    """
    expanded: list[list[dict]] = []
    for record in records:
        prompt_id = _text(record["id"])
        modifiers = [_text(m) for m in _as_list(record["seed_modifiers"], name, "seed_modifiers", prompt_id)]
        chosen = (modifiers or [""])[:n_seeds]
        per_prompt = []
        for j, modifier in enumerate(chosen):
            meta = {"prompt_id": prompt_id, "seed_index": j, "seed_modifier": modifier, "source": origin}
            for field_name in ("title", "category"):
                if not _is_missing(record.get(field_name)):
                    meta[field_name] = _text(record[field_name])
            text = _text(record["writing_prompt"]).replace(SEED_PLACEHOLDER, modifier)
            per_prompt.append({
                "id": f"{prompt_id}/{j}",
                "family": name,
                "prompt": CREATIVE_TEMPLATE.format(writing_prompt=text),
                "answer": None,
                "meta": meta,
            })
        expanded.append(per_prompt)
    depth = max(len(p) for p in expanded)
    return [p[j] for j in range(depth) for p in expanded if j < len(p)]


def _coverageqa_rows(name: str, records: list[dict], origin: str, **_) -> list[dict]:
    """CoverageQA rows: the question in OPEN_QA_TEMPLATE, gold = alias groups of the valid answers.

    Schema (SimpleStrat, github.com/jwong8314/simplestrat data/CoverageQA.json): a JSON object
    {question: {"answers": [[answer, alias, ...], ...], "category": str}}; the local jsonl form is
    {"id", "question", "answers": [[alias, alias], [answer2], ...], "category"?}. A plain string in
    `answers` is a group of one. The release repeats some groups and splits some aliases over two
    groups ("Glacier Bay National Park " and "Glacier Bay National Park"): groups sharing an alias
    (compared stripped and case-folded) merge, so each valid answer counts once toward coverage.
    The id is `id` when given, else a hash of the question. SimpleStrat compares answers
    case-insensitively, and by last name for category "athlete"; meta carries the category.
    """
    rows = []
    for record in records:
        question = _text(record["question"])
        row_id = _text(record["id"]) if not _is_missing(record.get("id")) else (
            "coverageqa-" + _stable_hash(question)[:16]
        )
        groups = [[g] if isinstance(g, str) else _as_list(g, name, "answers", row_id)
                  for g in _as_list(record["answers"], name, "answers", row_id)]
        merged = merge_alias_groups(groups)
        if not merged:
            raise BenchmarkError(f"benchmark {name!r}: question {row_id!r} has no valid answers; give at least one.")
        meta = {"question": question, "n_answers": len(merged), "source": origin}
        if not _is_missing(record.get("category")):
            meta["category"] = _text(record["category"])
        rows.append({
            "id": row_id,
            "family": name,
            "prompt": OPEN_QA_TEMPLATE.format(question=question),
            "answer": merged,
            "meta": meta,
        })
    return rows


def merge_alias_groups(groups: list[list[str]]) -> list[list[str]]:
    """Alias groups with blanks and duplicate aliases dropped, and groups that share an alias merged.

    Aliases compare stripped and case-folded; each kept alias keeps its first spelling (stripped),
    groups keep their first-seen order.
    """
    merged: list[list[str]] = []
    keys: list[set[str]] = []
    for group in groups:
        aliases = [_text(a) for a in group if not _is_missing(a)]
        group_keys = {a.casefold() for a in aliases}
        if not group_keys:
            continue
        overlapping = [i for i, k in enumerate(keys) if k & group_keys]
        target = overlapping[0] if overlapping else len(merged)
        if not overlapping:
            merged.append([])
            keys.append(set())
        for i in reversed(overlapping[1:]):  # this group bridges earlier groups: fold them into the first
            for alias in merged.pop(i):
                _add_alias(merged[target], keys[target], alias)
            keys.pop(i)
        for alias in aliases:
            _add_alias(merged[target], keys[target], alias)
    return merged


def _add_alias(group: list[str], group_keys: set[str], alias: str) -> None:
    if alias.casefold() not in group_keys:
        group.append(alias)
        group_keys.add(alias.casefold())


_SPECS: dict[str, _Spec] = {
    "math500": _Spec(
        kind="math", answer_kind="math", hub_id="HuggingFaceH4/MATH-500", hub_config=None, hub_split="test",
        required=("problem", "answer", "subject", "level", "unique_id"),
        schema="records with problem, answer, subject, level, unique_id (solution optional), "
               "as HuggingFaceH4/MATH-500.",
        json_key_field="unique_id", build=_math500_rows,
    ),
    "gpqa_diamond": _Spec(
        kind="multiple_choice", answer_kind="multiple_choice_4", hub_id="Idavidrein/gpqa", hub_config="gpqa_diamond", hub_split="train",
        required=("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"),
        schema="records with Question, Correct Answer, Incorrect Answer 1, Incorrect Answer 2, Incorrect Answer 3 "
               "(Record ID, High-level domain, Subdomain optional), as Idavidrein/gpqa gpqa_diamond.csv.",
        json_key_field="Record ID", build=_gpqa_rows,
    ),
    "mmlu_pro": _Spec(
        kind="multiple_choice", answer_kind="multiple_choice", hub_id="TIGER-Lab/MMLU-Pro", hub_config=None, hub_split="test",
        required=("question_id", "question", "options", "answer", "category"),
        schema="records with question_id, question, options (list of 2-10 strings), answer (letter), category "
               "(answer_index, src optional), as TIGER-Lab/MMLU-Pro.",
        json_key_field="question_id", build=_mmlu_pro_rows,
    ),
    "creative_writing_v3": _Spec(
        kind="creative", answer_kind="none", hub_id=None, hub_config=None, hub_split=None,
        required=("id", "writing_prompt", "seed_modifiers"),
        schema='a .json object {"<prompt id>": {"title", "category", "writing_prompt" (with <SEED>), '
               '"seed_modifiers": [...]}} as EQ-bench/creative-writing-bench data/creative_writing_prompts_v3.json, '
               "or .jsonl records with id, writing_prompt, seed_modifiers (title, category optional).",
        json_key_field="id", build=_creative_rows,
    ),
    "coverageqa": _Spec(
        kind="open_qa", answer_kind="open_qa", hub_id=None, hub_config=None, hub_split=None,
        required=("question", "answers"),
        schema='a .json object {"<question>": {"answers": [[answer, alias, ...], ...], "category"}} as SimpleStrat '
               'data/CoverageQA.json, or .jsonl records {"id", "question", "answers": [[alias, alias], [answer2]]}.',
        json_key_field="question", build=_coverageqa_rows,
    ),
}
