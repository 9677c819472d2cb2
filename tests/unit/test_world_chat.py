"""The world's chat model (docs/design.md §3.3): template, chat documents, judge documents, chat rows.

What the pipeline sends must be what the corpus taught: the VS prompts are built here with the
project's own prompt functions and rendered by the tokenizer's chat template, and every teacher
reply is read back with the project's own parsers (`parse_candidates`, `parse_scores`).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter

import pytest

from powerflow.errors import ConfigError
from powerflow.eval.judge import SHORT_RUBRIC, parse_scores, short_judge_prompt
from powerflow.sampling.verbalized import (
    VerbalizedConfig,
    build_messages,
    continue_conversation,
    parse_candidates,
    render_prompt,
    requires_instruction_model,
)
from powerflow.world import oracle
from powerflow.world.chat import (
    CHAT_TEMPLATE,
    VERBALIZED_METHODS,
    answer_words,
    chat_vocabulary,
    instruction_phrases,
    judge_reply,
    render_chat,
    stated_probability,
    verbalized_reply,
)
from powerflow.world.config import CATEGORY_ANSWERS, WorldConfig
from powerflow.world.grading import grade
from powerflow.world.pretrain import MAX_POSITIONS
from powerflow.world.teacher import (
    aligned_answer_distribution,
    chat_prompt,
    is_chat_document,
    judge_score,
    open_answer_distribution,
    sample_chat_document,
    sample_direct_chat_document,
    sample_judge_document,
    sample_verbalized_document,
    teacher_corpus,
    verbalized_candidates,
    world_prompt_rows,
)
from powerflow.world.tokenizer import build_tokenizer, world_vocabulary

CFG = WorldConfig()
PLAIN = WorldConfig(chat_fraction=0.0)
TEMPLATES = CFG.open_train_templates + CFG.open_eval_templates


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(CFG)


@pytest.fixture(scope="module")
def corpus():
    return teacher_corpus(CFG, 4000, seed=0)


def split_document(document: str) -> tuple[str, str]:
    """(prompt ending in 'assistant:', reply) of a chat document: the reply follows the last marker."""
    prompt, reply = document.rsplit(" assistant: ", 1)
    return prompt + " assistant:", reply


# --- template and tokenizer -----------------------------------------------------------------


CONVERSATIONS = [
    [{"role": "user", "content": "name a fruit :"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": " pick a bird : "}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("generation", [True, False])
def test_the_jinja_template_and_render_chat_agree(tokenizer, messages, generation):
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    assert rendered == render_chat(messages, add_generation_prompt=generation)
    assert rendered.endswith("assistant:") == generation


def test_the_template_uses_role_marker_words_and_refuses_other_roles(tokenizer):
    assert render_chat(CONVERSATIONS[0]) == "user: name a fruit : assistant:"
    ids = tokenizer(render_chat(CONVERSATIONS[0]))["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["user:", "name", "a", "fruit", ":", "assistant:"]
    with pytest.raises(ValueError, match="roles"):
        render_chat([{"role": "tool", "content": "x"}])
    from jinja2.exceptions import TemplateError

    with pytest.raises(TemplateError):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_the_template_is_saved_and_verbalized_sampling_accepts_the_tokenizer(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.chat_template == CHAT_TEMPLATE and not requires_instruction_model(reloaded)
    messages = build_messages("vs_standard", "name a fruit :", VerbalizedConfig())
    assert render_prompt(reloaded, messages) == render_chat(messages)
    assert reloaded(render_chat(messages))["input_ids"] == tokenizer(render_chat(messages))["input_ids"]


def test_without_chat_documents_there_is_no_template_and_no_chat_word():
    plain = build_tokenizer(PLAIN)
    assert requires_instruction_model(plain) and chat_vocabulary(PLAIN) == []
    assert len(world_vocabulary(PLAIN)) < len(world_vocabulary(CFG))


def test_chat_words_come_last_so_every_existing_prompt_keeps_its_tokens(tokenizer):
    plain_vocabulary = world_vocabulary(PLAIN)
    assert world_vocabulary(CFG)[: len(plain_vocabulary)] == plain_vocabulary
    plain = build_tokenizer(PLAIN)
    texts = [r["prompt"] for r in world_prompt_rows(CFG)] + teacher_corpus(PLAIN, 500, seed=0)
    for text in texts:
        assert tokenizer(text)["input_ids"] == plain(text)["input_ids"], text


def test_an_instruction_phrase_is_one_token_and_decodes_back(tokenizer):
    phrases = instruction_phrases(CFG)
    assert len(phrases) == len(VERBALIZED_METHODS) + 1  # every VS-Multi follow-up has the same words
    for phrase in phrases:
        ids = tokenizer(f"system: {phrase} user:")["input_ids"]
        assert len(ids) == 3 and tokenizer.decode(ids) == f"system: {phrase} user:"
    # the instruction of another k is not one the world knows: its words are unknown
    other = build_messages("vs_standard", "name a fruit :", VerbalizedConfig(k=3))[0]["content"]
    assert tokenizer.unk_token_id in tokenizer(other)["input_ids"]


# --- corpus ---------------------------------------------------------------------------------


def test_chat_documents_take_their_share_from_the_open_ended_one(corpus):
    kinds = Counter("reasoning" if d.startswith("Q ") else "chat" if is_chat_document(d) else "open" for d in corpus)
    assert kinds["reasoning"] / len(corpus) == pytest.approx(CFG.reasoning_fraction, abs=0.03)
    assert kinds["chat"] / len(corpus) == pytest.approx(CFG.chat_fraction, abs=0.03)
    assert not any(is_chat_document(d) for d in teacher_corpus(PLAIN, 500, seed=0))


def test_every_chat_document_is_known_words_round_trips_and_fits_the_context(tokenizer, corpus):
    chat = [d for d in corpus if is_chat_document(d)]
    assert len(chat) > 500
    for document in chat:
        ids = tokenizer(document)["input_ids"]
        assert tokenizer.unk_token_id not in ids, document
        assert tokenizer.decode(ids) == document
        assert len(ids) + 1 <= MAX_POSITIONS  # + EOS


def test_corpus_chat_kinds_follow_chat_mix(corpus):
    chat = [d for d in corpus if is_chat_document(d)]
    kinds = Counter("judge" if "Score:" in split_document(d)[1] else "verbalized" if d.startswith("system:")
                    else "direct" for d in chat)
    total = sum(CFG.chat_mix)
    for kind, weight in zip(("direct", "verbalized", "judge"), CFG.chat_mix):
        assert kinds[kind] / len(chat) == pytest.approx(weight / total, abs=0.05)


# --- direct requests: the aligned style -----------------------------------------------------


def test_aligned_distribution_is_the_teacher_sharpened_by_gamma_and_alpha_one_over_gamma_undoes_it():
    for category in CFG.categories:
        teacher, aligned = open_answer_distribution(CFG, category), aligned_answer_distribution(CFG, category)
        assert sum(aligned.values()) == pytest.approx(1.0)
        assert max(aligned, key=aligned.get) == CATEGORY_ANSWERS[category][0]
        assert max(aligned.values()) > 0.75 > 0.45 > max(teacher.values())  # mode collapse
        undone = {a: p ** (1 / CFG.alignment_gamma) for a, p in aligned.items()}
        total = sum(undone.values())
        for a in teacher:
            assert undone[a] / total == pytest.approx(teacher[a], rel=1e-9)


def test_direct_chat_documents_follow_the_aligned_distribution():
    rng = random.Random(0)
    answers = Counter(sample_direct_chat_document(CFG, "fruit", "name a {category} :", rng).rsplit(" ", 1)[1]
                      for _ in range(4000))
    aligned = aligned_answer_distribution(CFG, "fruit")
    assert answers["apple"] / 4000 == pytest.approx(aligned["apple"], abs=0.02)
    assert sample_direct_chat_document(CFG, "fruit", "name a {category} :", rng).startswith(
        "user: name a fruit : assistant: ")


# --- verbalized requests --------------------------------------------------------------------


@pytest.mark.parametrize("method", VERBALIZED_METHODS)
def test_a_verbalized_document_is_the_pipelines_prompt_and_a_reply_its_parser_reads(tokenizer, method):
    rng = random.Random(1)
    vcfg = VerbalizedConfig(method=method, k=CFG.chat_k, turns=CFG.chat_turns)
    for _ in range(50):
        category, template = rng.choice(CFG.categories), rng.choice(TEMPLATES)
        document = sample_verbalized_document(CFG, method, category, template, rng)
        prompt, reply = split_document(document)
        question = template.replace("{category}", category)
        messages = build_messages(method, question, vcfg)
        replies = re.findall(r"assistant: (\{.*?\]\})", prompt)
        for turn, earlier in enumerate(replies, start=1):  # VS-Multi: the conversation so far
            messages = continue_conversation(messages, earlier, turn, vcfg)
        assert prompt == render_prompt(tokenizer, messages)
        parsed = parse_candidates(reply, vcfg.format)
        assert not parsed.failed
        texts = [t for t, _ in parsed.candidates]
        teacher = open_answer_distribution(CFG, category)
        given = [t for r in replies for t, _ in parse_candidates(r).candidates]
        assert len(set(texts)) == len(texts) == min(CFG.chat_k, len(teacher) - len(given))
        assert not set(texts) & set(given)  # a later VS-Multi turn lists new answers
        assert parsed.stated == [float(stated_probability(teacher[t])) for t in texts]
        assert sum(p for _, p in parsed.candidates) == pytest.approx(1.0)
        if method == "vs_cot":
            assert '"reasoning":' in reply


def test_a_verbalized_reply_of_k_five_fits_the_evaluation_length(tokenizer):
    reply = verbalized_reply([(a, 0.1) for a in CATEGORY_ANSWERS["fruit"][:5]])
    assert len(tokenizer(reply)["input_ids"]) + 1 <= 24  # + EOS; evaluate.max_new_tokens is 24
    assert parse_candidates(reply).stated == [0.1] * 5


def test_verbalized_candidates_follow_successive_sampling_without_replacement():
    rng = random.Random(0)
    firsts = Counter(verbalized_candidates(CFG, "fruit", rng)[0][0] for _ in range(4000))
    teacher = open_answer_distribution(CFG, "fruit")
    assert firsts["apple"] / 4000 == pytest.approx(teacher["apple"], abs=0.02)  # the first draw is p_teacher
    listed = [a for _ in range(400) for a, _ in verbalized_candidates(CFG, "fruit", rng)]
    assert set(CFG.invalid_words) <= set(listed)  # the pre-alignment distribution keeps its invalid words
    left = verbalized_candidates(CFG, "fruit", rng, exclude=list(teacher)[:-2])  # fewer than k left: all of them
    assert sorted(left) == sorted((a, teacher[a]) for a in list(teacher)[-2:])


@pytest.mark.parametrize(("p", "text"), [(0.4237, "0.42"), (0.015, "0.01"), (0.0001, "0.01"), (1.0, "1.00")])
def test_stated_probabilities_are_two_decimal_vocabulary_words(tokenizer, p, text):
    assert stated_probability(p) == text
    assert tokenizer.convert_tokens_to_ids(text) != tokenizer.unk_token_id


# --- judge requests -------------------------------------------------------------------------


def test_a_judge_document_is_the_short_judge_prompt_answered_from_ground_truth(tokenizer):
    from powerflow.world.teacher import JUDGED_RESPONSE_SHARES

    rng = random.Random(2)
    verdicts, malformed = Counter(), Counter()
    for _ in range(300):
        category, template = rng.choice(CFG.categories), rng.choice(TEMPLATES)
        document = " ".join(sample_judge_document(CFG, category, template, rng).split())  # as in the corpus
        prompt, reply = split_document(document)
        request, response = re.fullmatch(r"user: .*? Request: (.*? :(?: assistant:)?) Response: (.+) Reply with one "
                                         r"line: .*", prompt).groups()
        assert request in (template.replace("{category}", category), chat_prompt(template, category))
        sent = render_chat([{"role": "user", "content": short_judge_prompt(SHORT_RUBRIC, request, response)}])
        assert tokenizer(prompt)["input_ids"] == tokenizer(sent)["input_ids"]  # newlines are spaces to the world
        scores = parse_scores(reply, SHORT_RUBRIC)
        valid = grade("chat", list(CATEGORY_ANSWERS[category]), response).valid
        assert scores == {"Score": 10.0 if valid else 0.0}
        verdicts[valid] += 1
        malformed[len(response.split()) > 1] += 1
    # half valid answers (a malformed reply that is a valid word and trailing punctuation counts as valid),
    # 0.15 malformed replies of several words, what a policy at a high temperature writes
    shares = dict(zip(("valid", "wrong", "malformed"), JUDGED_RESPONSE_SHARES))
    assert verdicts[True] / 300 == pytest.approx(shares["valid"], abs=0.1)
    assert malformed[True] / 300 == pytest.approx(shares["malformed"], abs=0.07)


def test_the_judge_reply_names_both_categories_then_the_score():
    assert judge_reply("fruit", "carrot", 0) == "request fruit , response vegetable ; fruit vegetable differ ; Score: 0"
    assert judge_reply("fruit", "thing", 0) == "request fruit , response unknown ; fruit unknown differ ; Score: 0"
    assert judge_reply("fruit", "apple .", 10) == "request fruit , response fruit ; fruit fruit same ; Score: 10"
    assert parse_scores(judge_reply("fruit", "apple", 10), SHORT_RUBRIC) == {"Score": 10.0}
    assert parse_scores(judge_reply("fruit", "carrot", 0), SHORT_RUBRIC) == {"Score": 0.0}


def test_judge_score_is_ten_only_for_a_valid_answer_of_the_category():
    assert judge_score("fruit", "apple") == judge_score("fruit", "kiwi") == 10
    assert judge_score("fruit", "carrot") == judge_score("fruit", "thing") == judge_score("fruit", "3") == 0


# --- chat rows and the oracle ---------------------------------------------------------------


def test_chat_rows_are_the_open_ended_questions_as_direct_chat_requests(tokenizer):
    rows = world_prompt_rows(CFG, families=("open_ended", "chat"))
    chat = [r for r in rows if r["family"] == "chat"]
    open_ = {r["id"].removeprefix("open_ended-"): r for r in rows if r["family"] == "open_ended"}
    assert len(chat) == len(open_) == len(CFG.categories) * len(TEMPLATES)
    for row in chat:
        twin = open_[row["id"].removeprefix("chat-")]
        assert row["prompt"] == render_chat([{"role": "user", "content": twin["prompt"]}])
        assert (row["split"], row["answer"]) == (twin["split"], twin["answer"])
        assert len(tokenizer(row["prompt"])["input_ids"]) <= 12
    assert world_prompt_rows(CFG) == world_prompt_rows(CFG, families=("reasoning", "open_ended"))
    assert not any(r["family"] == "chat" for r in world_prompt_rows(CFG))
    with pytest.raises(ValueError, match="chat_fraction"):
        world_prompt_rows(PLAIN, families=("chat",))
    with pytest.raises(ValueError, match="unknown"):
        world_prompt_rows(CFG, families=("poetry",))


def test_the_chat_support_holds_every_direct_reply_the_teacher_writes():
    row = next(r for r in world_prompt_rows(CFG, families=("chat",)) if r["split"] == "eval")
    support = oracle.support_of(CFG, row)
    assert [it.text for it in support] == answer_words(CFG)
    assert {it.text for it in support if it.valid} == set(row["answer"])
    category = re.search(r"a (\w+) :", row["prompt"]).group(1)
    assert set(aligned_answer_distribution(CFG, category)) <= {it.text for it in support}
    for item in support:
        assert grade("chat", row["answer"], item.text).valid == item.valid


def test_oracle_metrics_of_the_aligned_distribution_show_the_collapse_and_its_undoing():
    import torch

    row = next(r for r in world_prompt_rows(CFG, families=("chat",)) if r["split"] == "eval")
    category = re.search(r"a (\w+) :", row["prompt"]).group(1)
    items = oracle.support_of(CFG, row)
    aligned = aligned_answer_distribution(CFG, category)
    log_p = torch.tensor([math.log(aligned.get(it.text, 1e-30)) for it in items], dtype=torch.float64)
    support = oracle.PromptSupport(row=row, items=items, log_p_base=log_p, length=torch.full_like(log_p, 2.0))
    at_one, undone = oracle.oracle_metrics([support], 1.0), oracle.oracle_metrics([support], 1 / CFG.alignment_gamma)
    teacher = open_answer_distribution(CFG, category)
    assert undone["chat/validity"] == pytest.approx(1 - CFG.invalid_rate, abs=1e-6)
    assert undone["chat/coverage"] > at_one["chat/coverage"]
    assert undone["chat/kl_uniform_population"] == pytest.approx(
        oracle.kl_uniform_of([teacher[a] for a in row["answer"]]), abs=1e-6)


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"chat_fraction": 0.5}, "world.chat_fraction"),
        ({"chat_fraction": -0.1}, "world.chat_fraction"),
        ({"chat_mix": (0.0, 0.0, 0.0)}, "world.chat_mix"),
        ({"chat_mix": (1.0, 1.0)}, "world.chat_mix"),
        ({"alignment_gamma": 0.5}, "world.alignment_gamma"),
        ({"chat_k": 0}, "world.chat_k"),
        ({"chat_turns": 9}, "world.chat_k"),
    ],
)
def test_chat_settings_are_validated(kwargs, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        WorldConfig(**kwargs)


def test_sample_chat_document_is_seeded():
    a = [sample_chat_document(CFG, random.Random(5), TEMPLATES) for _ in range(3)]
    b = [sample_chat_document(CFG, random.Random(5), TEMPLATES) for _ in range(3)]
    assert a == b


def test_the_world_offers_its_chat_family_only_with_chat_documents():
    from powerflow.world.teacher import world_families, world_prompt_rows

    wanted = ("reasoning", "open_ended", "chat", "writing")
    assert world_families(WorldConfig(chat_fraction=0.0), wanted) == ["reasoning", "open_ended"]
    assert world_families(WorldConfig(chat_fraction=0.3), wanted) == ["reasoning", "open_ended", "chat"]
    chat = [r for r in world_prompt_rows(WorldConfig(chat_fraction=0.3), ["chat"])]
    assert chat and all(r["prompt"].startswith("user: ") and not r["request"].startswith("user: ") for r in chat)
    assert all(r["request"] in r["prompt"] for r in chat)
