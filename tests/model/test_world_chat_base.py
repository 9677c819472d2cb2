"""A small base pretrained with chat documents follows the chat formats it was taught.

One module fixture pretrains a small chat-heavy base (under a minute on one core; 800 steps: at 400 the
judge had not yet learned the response categories it compares); the tests
sample it through the project's own code: the verbalized sampler (VS-Standard, k = 5) must get
replies its parser reads, and the base as a short-scheme `TransformersJudge` must rate valid answers
above invalid ones. The default base's numbers are in docs/design.md §3.3 (scripts/chat_study.py).
"""

from __future__ import annotations

import pytest
import torch

from powerflow.world.config import PretrainConfig, WorldConfig

WORLD = WorldConfig(reasoning_fraction=0.1, chat_fraction=0.6, chat_mix=(0.2, 0.4, 0.4))
SMALL = PretrainConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, n_documents=6000,
                       steps=800, batch_size=32, warmup_steps=40, num_threads=1)


@pytest.fixture(scope="module")
def chat_base(tmp_path_factory):
    from powerflow.world.pretrain import pretrain_base

    directory = tmp_path_factory.mktemp("chat") / "base"
    torch.manual_seed(0)
    pretrain_base(WORLD, SMALL, directory, progress=lambda _: None)
    return directory


def eval_rows(family):
    from powerflow.world.teacher import world_prompt_rows

    return [r for r in world_prompt_rows(WORLD, families=(family,)) if r["split"] == "eval"]


@pytest.mark.slow
def test_verbalized_sampling_on_the_chat_base_gets_replies_its_parser_reads(chat_base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from powerflow.sampling.verbalized import VerbalizedConfig, verbalized_sampler
    from powerflow.world.grading import grade

    model, tokenizer = AutoModelForCausalLM.from_pretrained(chat_base).eval(), AutoTokenizer.from_pretrained(chat_base)
    rows = eval_rows("open_ended")
    sampler = verbalized_sampler(VerbalizedConfig(method="vs_standard", k=5, max_new_tokens=30), batch_size=16)
    batch = sampler(model, tokenizer, [r["prompt"] for r in rows], 10, 0)
    assert batch.stats["parse_failures"] <= 0.1
    assert batch.stats["candidates_per_response"] >= 4.5
    answers = [(row, c.text) for row, cs in zip(rows, batch.completions) for c in cs]
    validity = sum(grade("open_ended", row["answer"], text).valid for row, text in answers) / len(answers)
    assert validity >= 0.8


@pytest.mark.slow
def test_the_chat_base_as_a_short_judge_writes_parsable_scores_and_rates_valid_answers_higher(chat_base):
    from powerflow.eval.judge import SHORT_RUBRIC, TransformersJudge, parse_scores, short_judge_prompt
    from powerflow.world.config import CATEGORY_ANSWERS

    judge = TransformersJudge(str(chat_base), max_new_tokens=16, batch_size=64)  # the reply is 13 words
    items, truth = [], []
    for row in eval_rows("open_ended")[:8]:
        category = row["prompt"].split()[-2]
        for word in CATEGORY_ANSWERS[category][:5] + ("thing", "stuff", "carrot", "robin", "soda"):
            items.append(short_judge_prompt(SHORT_RUBRIC, row["prompt"], word))
            truth.append(word in CATEGORY_ANSWERS[category])
    scores = [parse_scores(text, SHORT_RUBRIC) for text in judge.complete(items)]
    assert sum(s is not None for s in scores) / len(scores) >= 0.9
    mean = {flag: sum(s["Score"] for s, t in zip(scores, truth) if s is not None and t == flag)
            / max(1, sum(s is not None and t == flag for s, t in zip(scores, truth))) for flag in (True, False)}
    assert mean[True] >= mean[False] + 2  # on 0..10
