"""The embedded world: tokenizer, prompt rows and splits, teacher statistics, grading, configs."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from collections import Counter

import pytest

from powerflow.config.parse import section_from_dict
from powerflow.errors import ConfigError
from powerflow.world.config import PretrainConfig, WorldConfig
from powerflow.world.grading import Grade, grade
from powerflow.world.teacher import (
    correct_worked_completion,
    is_chat_document,
    open_answer_distribution,
    reasoning_split,
    sample_reasoning_completion,
    teacher_corpus,
    world_prompt_rows,
)
from powerflow.world.tokenizer import build_tokenizer

CFG = WorldConfig()


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(CFG)


@pytest.fixture(scope="module")
def corpus():
    return teacher_corpus(CFG, 4000, seed=0)


# --- package --------------------------------------------------------------------------------


def test_importing_the_world_package_is_light_and_configs_do_not_pull_in_transformers():
    code = ("import sys, powerflow.world; print('torch' in sys.modules, 'transformers' in sys.modules); "
            "import powerflow.world.config, powerflow.world.teacher, powerflow.world.grading; "
            "print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


# --- tokenizer ------------------------------------------------------------------------------


def test_tokenizer_round_trips_every_corpus_document_and_prompt_without_unknown_words(tokenizer, corpus):
    texts = corpus + [r["prompt"] for r in world_prompt_rows(CFG)]
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids, text
        assert tokenizer.decode(ids) == text


def test_tokenizer_special_tokens_and_add_special_tokens_adds_nothing(tokenizer):
    assert tokenizer.eos_token == "</s>" and tokenizer.eos_token_id == 0
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    assert tokenizer.padding_side == "left"
    with_special = tokenizer("Q 1 + 2 + 3 =", add_special_tokens=True)["input_ids"]
    assert with_special == tokenizer("Q 1 + 2 + 3 =", add_special_tokens=False)["input_ids"]
    assert len(with_special) == 7
    ids = tokenizer("work 1 + 2 = 3 , answer 3")["input_ids"] + [tokenizer.eos_token_id]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "work 1 + 2 = 3 , answer 3"
    assert tokenizer("banana zebra")["input_ids"][1] == tokenizer.unk_token_id


def test_tokenizer_is_deterministic_and_numbers_are_single_tokens(tokenizer):
    again = build_tokenizer(CFG)
    assert again.get_vocab() == tokenizer.get_vocab()
    assert len(tokenizer("27")["input_ids"]) == 1


def test_tokenizer_reloads_with_autotokenizer_even_beside_a_model_config(tokenizer, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig

    text = "Q 9 + 9 + 9 = work 9 + 9 = 18 , 18 + 9 = 27 , answer 27"
    tokenizer.save_pretrained(tmp_path / "tok")
    # A saved model's config.json sits beside the tokenizer in the base directory; AutoTokenizer
    # must still load the world's word-level tokenizer, not the architecture's default one.
    LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2).save_pretrained(tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded.decode(reloaded(text)["input_ids"]) == text
    assert (reloaded.eos_token, reloaded.pad_token, reloaded.padding_side) == ("</s>", "</s>", "left")


# --- prompt rows and splits -----------------------------------------------------------------


def test_prompt_rows_are_deterministic_with_unique_ids_and_the_documented_fields():
    rows = world_prompt_rows(CFG)
    assert rows == world_prompt_rows(WorldConfig())
    assert len({r["id"] for r in rows}) == len(rows)
    counts = Counter((r["family"], r["split"]) for r in rows)
    n_categories = len(CFG.categories)
    assert counts == {
        ("reasoning", "train"): CFG.n_reasoning_train,
        ("reasoning", "eval"): CFG.n_reasoning_eval,
        ("open_ended", "train"): n_categories * len(CFG.open_train_templates),
        ("open_ended", "eval"): n_categories * len(CFG.open_eval_templates),
    }
    for r in rows:
        assert set(r) == {"id", "family", "split", "prompt", "request", "answer"}
        if r["family"] == "reasoning":
            digits = [int(d) for d in re.findall(r"\d", r["prompt"])]
            assert r["answer"] == str(sum(digits)) and len(digits) == CFG.n_operands
        else:
            assert isinstance(r["answer"], list) and 8 <= len(r["answer"]) <= 12


def test_a_different_seed_gives_a_different_reasoning_split():
    assert reasoning_split(WorldConfig(seed=1))[1] != reasoning_split(CFG)[1]


def test_splits_are_disjoint_and_prompts_are_short(tokenizer):
    rows = world_prompt_rows(CFG)
    train = {r["prompt"] for r in rows if r["split"] == "train"}
    eval_ = {r["prompt"] for r in rows if r["split"] == "eval"}
    assert train and eval_ and not train & eval_
    assert max(len(tokenizer(r["prompt"])["input_ids"]) for r in rows) <= 12


def test_eval_reasoning_problems_are_absent_from_the_teacher_corpus(corpus):
    eval_prompts = {r["prompt"] for r in world_prompt_rows(CFG) if r["family"] == "reasoning" and r["split"] == "eval"}
    corpus_prompts = {d.split(" = ", 1)[0] + " =" for d in corpus if d.startswith("Q ")}
    assert len(corpus_prompts) > 500  # the corpus does cover the rest of the problem space
    assert not eval_prompts & corpus_prompts


def test_corpus_is_seeded_and_mixes_the_families_as_configured(corpus):
    assert teacher_corpus(CFG, 200, seed=0) == corpus[:200]
    assert teacher_corpus(CFG, 200, seed=1) != corpus[:200]
    share = sum(d.startswith("Q ") for d in corpus) / len(corpus)
    assert share == pytest.approx(CFG.reasoning_fraction, abs=0.03)


def test_reasoning_completions_are_short(tokenizer, corpus):
    lengths = [len(tokenizer(d.split(" = ", 1)[1])["input_ids"]) for d in corpus if d.startswith("Q ")]
    assert max(lengths) + 1 <= 20  # + EOS


# --- teacher statistics ---------------------------------------------------------------------


def teacher_samples(digits=(3, 5, 2), n=6000):
    rng = random.Random(0)
    return [sample_reasoning_completion(CFG, digits, rng) for _ in range(n)]


def test_teacher_guesses_at_p_guess_and_guesses_are_never_right():
    samples = teacher_samples()
    guesses = [s for s in samples if s.startswith("guess")]
    assert len(guesses) / len(samples) == pytest.approx(CFG.p_guess, abs=0.02)
    assert not any(grade("reasoning", "10", g).correct for g in guesses)
    assert all(grade("reasoning", "10", g).valid for g in guesses)
    assert len(set(guesses)) == len(CFG.guess_offsets)  # guesses scatter


def test_the_most_frequent_complete_teacher_sequence_is_the_correct_worked_solution():
    samples = teacher_samples()
    counts = Counter(samples)
    mode, count = counts.most_common(1)[0]
    assert mode == correct_worked_completion((3, 5, 2)) == "work 3 + 5 = 8 , 8 + 2 = 10 , answer 10"
    assert count > 3 * counts.most_common(2)[1][1]  # by a wide margin over any single guess
    # ... while the most frequent first token is the guess marker
    first = Counter(s.split()[0] for s in samples)
    assert first.most_common(1)[0][0] == "guess"
    accuracy = sum(grade("reasoning", "10", s).correct for s in samples) / len(samples)
    expected = (1 - CFG.p_guess) * (1 - CFG.step_error) ** (CFG.n_operands - 1)
    assert accuracy == pytest.approx(expected, abs=0.02)


def test_teacher_step_errors_propagate_to_the_final_answer():
    wrong_work = [s for s in teacher_samples(n=20000) if s.startswith("work") and not grade("reasoning", "10", s).correct]
    assert wrong_work
    for s in wrong_work:
        steps = re.findall(r"(\d+) \+ (\d+) = (\d+)", s)
        assert any(int(a) + int(b) != int(c) for a, b, c in steps)
        assert s.endswith(f"answer {steps[-1][2]}")


def test_guesses_never_go_negative():
    rng = random.Random(0)
    for _ in range(500):
        answer = grade("reasoning", "0", sample_reasoning_completion(CFG, (0, 0, 0), rng)).extracted
        assert int(answer) >= 0


def test_open_answer_distribution_is_skewed_with_a_little_concentrated_noise():
    for category in CFG.categories:
        dist = open_answer_distribution(CFG, category)
        assert sum(dist.values()) == pytest.approx(1.0)
        valid = [dist[a] for a in world_answers(category)]
        assert max(valid) == valid[0] > 0.40
        assert sorted(valid, reverse=True) == valid
        assert sum(dist[w] for w in CFG.invalid_words) == pytest.approx(CFG.invalid_rate)


def world_answers(category):
    from powerflow.world.teacher import CATEGORY_ANSWERS

    return CATEGORY_ANSWERS[category]


# --- grading --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("work 3 + 5 = 8 , 8 + 2 = 10 , answer 10", Grade(True, True, "10")),
        (" work 3 + 5 = 8 , 8 + 2 = 10 , answer 10</s>", Grade(True, True, "10")),
        ("guess answer 12", Grade(True, False, "12")),
        ("work 3 + 5 = 9 , 9 + 2 = 11 , answer 11", Grade(True, False, "11")),
        ("answer 7 , answer 10", Grade(True, True, "10")),  # the last answer counts
        ("answer 010", Grade(True, True, "10")),
        ("work 3 + 5 = 8 , 8 + 2 = 10", Grade(False, False, None)),  # truncated before the answer
        ("10", Grade(False, False, None)),
        ("answers 10", Grade(False, False, None)),
        ("answer ten", Grade(False, False, None)),
        ("", Grade(False, False, None)),
    ],
)
def test_grade_reasoning(completion, expected):
    assert grade("reasoning", "10", completion) == expected


def test_grade_reasoning_accepts_an_integer_gold():
    assert grade("reasoning", 10, "guess answer 10").correct


FRUITS = ["apple", "banana", "kiwi"]


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("apple", Grade(True, True, "apple")),
        (" Apple.", Grade(True, True, "apple")),
        ("KIWI!</s>", Grade(True, True, "kiwi")),
        ("banana \n", Grade(True, True, "banana")),
        ("thing", Grade(False, False, "thing")),
        ("apple banana", Grade(False, False, "apple banana")),
        ("carrot", Grade(False, False, "carrot")),
        ("  ", Grade(False, False, None)),
    ],
)
def test_grade_open_ended(completion, expected):
    assert grade("open_ended", FRUITS, completion) == expected


def test_grade_rejects_an_unknown_family_and_a_string_answer_key():
    with pytest.raises(ValueError, match="open_ended"):
        grade("poetry", "x", "y")
    with pytest.raises(TypeError):
        grade("open_ended", "apple", "apple")


def test_every_teacher_document_grades_valid_against_its_prompt_row():
    rows = {r["prompt"]: r for r in world_prompt_rows(CFG)}
    docs = teacher_corpus(CFG, 2000, seed=3)
    open_valid = []
    for doc in docs:
        if doc.startswith("Q "):
            prompt, completion = doc.split(" = ", 1)
            assert grade("reasoning", "0", completion).valid
        elif is_chat_document(doc):
            continue  # tests/unit/test_world_chat.py reads them back
        else:
            prompt, completion = doc.rsplit(" : ", 1)
            row = rows[prompt + " :"]
            open_valid.append(grade("open_ended", row["answer"], completion).valid)
    assert sum(open_valid) / len(open_valid) == pytest.approx(1 - CFG.invalid_rate, abs=0.03)


# --- configs --------------------------------------------------------------------------------


def test_configs_load_from_params_sections():
    world = section_from_dict(WorldConfig, {"seed": 3, "categories": ["fruit", "bird"], "guess_offsets": [-1, 1]}, "world")
    assert world.categories == ("fruit", "bird") and world.guess_offsets == (-1, 1)
    base = section_from_dict(PretrainConfig, {"steps": 10, "warmup_steps": 2}, "base")
    assert base.steps == 10


@pytest.mark.parametrize(
    ("cls", "kwargs", "key"),
    [
        (WorldConfig, {"p_guess": 1.5}, "world.p_guess"),
        (WorldConfig, {"guess_offsets": (0, 1)}, "world.guess_offsets"),
        (WorldConfig, {"categories": ("fruit", "planet")}, "world.categories"),
        (WorldConfig, {"n_operands": 5}, "world.n_operands"),
        (WorldConfig, {"n_reasoning_train": 600}, "n_reasoning_train"),
        (WorldConfig, {"open_eval_templates": ("name a {category} :",)}, "world"),
        (WorldConfig, {"open_train_templates": ("name a thing :",)}, "world.open_train_templates"),
        (WorldConfig, {"invalid_words": ("apple",)}, "world.invalid_words"),
        (PretrainConfig, {"num_heads": 3}, "base.num_heads"),
        (PretrainConfig, {"warmup_steps": 5000}, "base.warmup_steps"),
        (PretrainConfig, {"n_documents": 10}, "base.n_documents"),
        (PretrainConfig, {"learning_rate": 0.0}, "base.learning_rate"),
    ],
)
def test_config_errors_name_the_key(cls, kwargs, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        cls(**kwargs)


def test_other_operand_counts_build_consistent_worlds():
    for n in (2, 4):
        cfg = WorldConfig(n_operands=n, n_reasoning_train=20, n_reasoning_eval=10)
        tok = build_tokenizer(cfg)
        for doc in teacher_corpus(cfg, 300, seed=0):
            assert tok.unk_token_id not in tok(doc)["input_ids"]
        row = next(r for r in world_prompt_rows(cfg) if r["family"] == "reasoning")
        assert grade("reasoning", row["answer"], correct_worked_completion(
            [int(d) for d in re.findall(r"\d", row["prompt"])])).correct
