"""Verbalized sampling: prompts, the tolerant response parser, the draw, and the sampler end to end.

Parser and draw are tested on response texts written here; the sampler runs on tiny real Qwen2
models: one fitted to answer with two tagged candidates (the success path) and one with random
weights (gibberish: every response fails to parse).
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from powerflow.config.parse import section_from_dict
from powerflow.errors import ConfigError, UserError
from powerflow.eval.config import EvalConfig
from powerflow.eval.evaluate import Scoring, evaluate_model
from powerflow.eval.grading import Grade
from powerflow.sampling.verbalized import (
    METHODS,
    ChatModelRequired,
    VerbalizedConfig,
    build_messages,
    continue_conversation,
    direct_answer,
    followup_message,
    parse_candidates,
    parse_cot_answer,
    parse_sequence,
    render_prompt,
    requires_instruction_model,
    sample_verbalized,
    verbalized_sampler,
)
from powerflow.world.enumerable import build_model, fit_to_distribution, random_base

# A template that shows every non-system message, and one that shows the user's only (keeps
# prompts inside the tiny models' 64 positions).
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")
USER_ONLY_TEMPLATE = "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }} {% endif %}{% endfor %}"
NO_SYSTEM_TEMPLATE = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                      "{% endif %}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")


def probabilities(parsed) -> dict[str, float]:
    return dict(parsed.candidates)


# ----------------------------------------------------------------------------------- config


def test_config_loads_from_params_and_names_the_key_in_errors():
    cfg = section_from_dict(VerbalizedConfig, {"method": "vs_cot", "k": 3, "threshold": 0.1, "format": "tagged"},
                            "baselines.verbalized")
    assert (cfg.method, cfg.k, cfg.threshold, cfg.format) == ("vs_cot", 3, 0.1, "tagged")
    bad = [({"method": "vs"}, "baselines.verbalized.method"), ({"k": 0}, "baselines.verbalized.k"),
           ({"threshold": 1.5}, "baselines.verbalized.threshold"), ({"turns": 0}, "baselines.verbalized.turns"),
           ({"temperature": 0.0}, "baselines.verbalized.temperature"),
           ({"format": "xml"}, "baselines.verbalized.format"),
           ({"max_new_tokens": 0}, "baselines.verbalized.max_new_tokens"),
           ({"method": "direct", "threshold": 0.1}, "baselines.verbalized.threshold")]
    for values, key in bad:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            VerbalizedConfig(**values)


# ----------------------------------------------------------------------------------- prompts


def test_build_messages_states_k_and_threshold_per_method():
    cfg = VerbalizedConfig(k=7, threshold=0.08, turns=3)
    for method in METHODS:
        messages = build_messages(method, "Name a colour.", VerbalizedConfig(method=method, k=7, turns=3))
        assert [m["role"] for m in messages] == ["system", "user"]
        assert messages[1]["content"] == "Name a colour."
    for method in ("vs_standard", "vs_cot", "vs_multi"):
        system = build_messages(method, "q", cfg)[0]["content"]
        assert "7 different responses" in system and "probability" in system
        assert "below 0.08" in system and "tails" in system
        assert '"responses"' in system and '"text"' in system
    assert "full distribution" in build_messages("vs_standard", "q", VerbalizedConfig(k=7))[0]["content"]
    assert '"reasoning"' in build_messages("vs_cot", "q", cfg)[0]["content"]
    assert '"reasoning"' not in build_messages("vs_standard", "q", cfg)[0]["content"]
    tagged = build_messages("vs_standard", "q", VerbalizedConfig(k=4, format="tagged"))[0]["content"]
    assert "<response>" in tagged and "<text>" in tagged and "<probability>" in tagged and "4 different" in tagged
    assert "<reasoning>" in build_messages("vs_cot", "q", VerbalizedConfig(format="tagged"))[0]["content"]
    sequence = build_messages("sequence", "q", cfg)[0]["content"]
    assert "7 different responses" in sequence and "JSON list of 7 strings" in sequence
    assert "probability" not in sequence
    direct = build_messages("direct", "q", cfg)[0]["content"]
    assert "7" not in direct and "probability" not in direct
    assert '"response"' in build_messages("cot", "q", cfg)[0]["content"]


def test_followup_messages_of_multi_turn_methods():
    vs_multi = VerbalizedConfig(method="vs_multi", k=4, threshold=0.2, turns=3)
    message = followup_message(1, vs_multi)
    assert message["role"] == "user" and "4 more responses" in message["content"] and "below 0.2" in message["content"]
    assert "another response" in followup_message(2, VerbalizedConfig(method="multi_turn", turns=3))["content"]
    with pytest.raises(ValueError, match="turn 3"):
        followup_message(3, vs_multi)
    with pytest.raises(ValueError, match="one turn"):
        followup_message(1, VerbalizedConfig(method="vs_standard"))
    first = build_messages("vs_multi", "q", vs_multi)
    second = continue_conversation(first, "earlier reply", 1, vs_multi)
    assert second[:2] == first and second[2] == {"role": "assistant", "content": "earlier reply"}
    assert second[3] == followup_message(1, vs_multi)


def word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer over the words (EOS "</s>" id 0, "<unk>" id 1); no chat template."""
    vocab = {w: i for i, w in enumerate(dict.fromkeys(["</s>", "<unk>", *words]))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="</s>", unk_token="<unk>",
                                   padding_side="left")


def test_render_prompt_needs_a_chat_template():
    tokenizer = word_tokenizer(["q"])
    assert requires_instruction_model(tokenizer)
    messages = build_messages("vs_standard", "Name a colour.", VerbalizedConfig())
    with pytest.raises(ChatModelRequired, match="instruction-following chat model") as err:
        render_prompt(tokenizer, messages)
    assert isinstance(err.value, UserError) and "model.name_or_path" in str(err.value)
    tokenizer.chat_template = CHAT_TEMPLATE
    assert not requires_instruction_model(tokenizer)
    rendered = render_prompt(tokenizer, messages)
    assert rendered.startswith("system: Give 5 different responses") and rendered.endswith(
        "user: Name a colour.\nassistant:")


def test_render_prompt_moves_instructions_into_the_user_turn_when_the_template_has_no_system_role():
    tokenizer = word_tokenizer(["q"])
    tokenizer.chat_template = NO_SYSTEM_TEMPLATE
    rendered = render_prompt(tokenizer, build_messages("vs_standard", "Name a colour.", VerbalizedConfig()))
    assert rendered.startswith("user: Give 5 different responses") and "\n\nName a colour." in rendered
    assert "system:" not in rendered


# ----------------------------------------------------------------------------------- parser


def test_clean_json():
    parsed = parse_candidates('{"responses": [{"text": "red", "probability": 0.5}, {"text": "blue", "probability": '
                              '0.3}, {"text": "green", "probability": 0.2}]}')
    assert not parsed.failed and parsed.reason is None
    assert probabilities(parsed) == pytest.approx({"red": 0.5, "blue": 0.3, "green": 0.2})
    assert [t for t, _ in parsed.candidates] == ["red", "blue", "green"]  # order kept


def test_fenced_json_after_prose_with_trailing_commas():
    text = ('Here you go:\n```json\n{\n  "responses": [\n    {"text": "red", "probability": 0.6,},\n'
            '    {"text": "blue", "probability": 0.4},\n  ],\n}\n```\nAnything else?')
    assert probabilities(parse_candidates(text)) == pytest.approx({"red": 0.6, "blue": 0.4})


def test_single_quotes_and_apostrophes():
    text = "{'responses': [{'text': 'It's red', 'probability': 0.7}, {'text': \"blue\", 'probability': 0.3}]}"
    assert probabilities(parse_candidates(text)) == pytest.approx({"It's red": 0.7, "blue": 0.3})


def test_truncated_last_item_keeps_the_complete_ones():
    complete = '{"responses": [{"text": "red", "probability": 0.5}, {"text": "blue", "probability": 0.25}, '
    for cut in ['{"text": "gre', '{"text": "green", "probab', '{"text": "green", "probability": 0.2', '']:
        parsed = parse_candidates(complete + cut)
        assert not parsed.failed
        assert probabilities(parsed) == pytest.approx({"red": 2 / 3, "blue": 1 / 3}), cut
        assert parsed.stated == [0.5, 0.25]


def test_percent_probabilities():
    text = '{"responses": [{"text": "red", "probability": "60%"}, {"text": "blue", "probability": 20 %}]}'
    parsed = parse_candidates(text)
    assert parsed.stated == pytest.approx([0.6, 0.2])
    assert probabilities(parsed) == pytest.approx({"red": 0.75, "blue": 0.25})
    worded = parse_candidates("<response><text>a</text><probability>about 30 %</probability></response>"
                              "<response><text>b</text><probability>p = 0.1</probability></response>")
    assert worded.stated == pytest.approx([0.3, 0.1])
    bare = parse_candidates('{"responses": [{"text": "a", "probability": 30}, {"text": "b", "probability": 10}]}')
    assert bare.stated == pytest.approx([0.3, 0.1])  # numbers above 1: percentages without the sign


def test_missing_probabilities_give_the_uniform_distribution():
    parsed = parse_candidates('{"responses": [{"text": "red"}, {"text": "blue", "probability": 0.9}, '
                              '{"text": "green"}]}')
    assert probabilities(parsed) == pytest.approx({"red": 1 / 3, "blue": 1 / 3, "green": 1 / 3})
    assert parsed.stated == [None, None, None]


def test_renormalisation_by_hand():
    # stated 0.4, 0.2, 0.2 (sum 0.8) -> 0.4/0.8, 0.2/0.8, 0.2/0.8
    parsed = parse_candidates('{"responses": [{"text": "a", "probability": 0.4}, {"text": "b", "probability": 0.2}, '
                              '{"text": "c", "probability": 0.2}]}')
    assert probabilities(parsed) == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.25})
    assert math.isclose(sum(p for _, p in parsed.candidates), 1.0)
    zeros = parse_candidates('{"responses": [{"text": "a", "probability": 0}, {"text": "b", "probability": 0}]}')
    assert probabilities(zeros) == pytest.approx({"a": 0.5, "b": 0.5})


def test_invalid_probabilities_are_rejected():
    parsed = parse_candidates('{"responses": [{"text": "a", "probability": -0.2}, {"text": "b", "probability": NaN}, '
                              '{"text": "c", "probability": 0.3}, {"text": "d", "probability": "lots"}]}')
    assert probabilities(parsed) == pytest.approx({"c": 1.0})
    failed = parse_candidates('{"responses": [{"text": "a", "probability": -1}, {"text": "b", "probability": "nan"}]}')
    assert failed.failed and failed.candidates == [] and "invalid probability" in failed.reason


def test_tagged_format_with_a_truncated_last_block():
    text = ("<response>\n<text>A bear found honey.</text>\n<probability>0.4</probability>\n</response>\n"
            "<response><text> A bear slept. </text><probability>10%</probability></response>\n"
            "<response><text>A bear danced</text><probability>0.0")
    parsed = parse_candidates(text)
    assert probabilities(parsed) == pytest.approx({"A bear found honey.": 0.8, "A bear slept.": 0.2})
    assert parse_candidates(text, fmt="tagged").candidates == parsed.candidates


def test_json_inside_reasoning_and_latex_backslashes():
    text = ('{"reasoning": "Either \\boxed{4} or \\frac{8}{2}, and 4 \\neq 5.\\nSo:", "responses": '
            '[{"text": "\\boxed{4}", "probability": 0.9}, {"text": "$\\text{four}$", "probability": 0.1}]}')
    assert [t for t, _ in parse_candidates(text).candidates] == ["\\boxed{4}", "$\\text{four}$"]


def test_line_fallback():
    text = ("Here are my guesses:\n1. Paris (probability: 0.5)\n2) Lyon [p=0.3]\n- **Nice** (20%)\n"
            "* Marseille - probability: 0.1")
    parsed = parse_candidates(text)
    assert parsed.stated == pytest.approx([0.5, 0.3, 0.2, 0.1])
    assert [t for t, _ in parsed.candidates] == ["Paris", "Lyon", "Nice", "Marseille"]
    # a number that ends an answer is not a probability: no probability -> uniform
    numbers = parse_candidates("1. The total is 42\n2. The total is 40")
    assert probabilities(numbers) == {"The total is 42": 0.5, "The total is 40": 0.5}


@pytest.mark.parametrize("text", ["", "   \n", "a b c d a a", "I cannot help with that.", '{"responses": []}',
                                  "{{{{[[[[", '{"responses": [{"text": "cut off'])
def test_garbage_fails_with_a_reason(text):
    parsed = parse_candidates(text)
    assert parsed.failed and parsed.candidates == [] and parsed.reason


def test_sequence_cot_and_direct_parsers():
    assert parse_sequence('["red", "blue", "green"]') == ["red", "blue", "green"]
    assert parse_sequence("Sure: ['red', 'blue',]") == ["red", "blue"]
    assert parse_sequence("1. red\n2. blue\n3. green") == ["red", "blue", "green"]
    assert parse_sequence('{"responses": [{"text": "red"}, {"text": "blue"}]}') == ["red", "blue"]
    assert parse_sequence("no list here") == []
    assert parse_cot_answer('{"reasoning": "2 + 2 = 4", "response": "\\boxed{4}"}') == "\\boxed{4}"
    assert parse_cot_answer("<reasoning>2 + 2</reasoning>\n<response><text>4</text></response>") == "4"
    assert parse_cot_answer("2 + 2 is four.\nFinal answer: 4") == "4"
    assert parse_cot_answer('{"reasoning": "2 + 2 is') is None
    assert direct_answer("  Paris \n") == "Paris" and direct_answer(" \n") is None


# ----------------------------------------------------------------------------------- draw

# 10 000 draws: a frequency's standard error is sqrt(p(1 - p) / 10 000) <= 0.005, so 0.02 is at least
# four standard errors for every candidate (and the seed fixes the draws).
N_DRAWS = 10_000
TOLERANCE = 0.02


def test_draw_frequencies_match_the_verbalized_probabilities():
    candidates = [("a", 0.5), ("b", 0.3), ("c", 0.15), ("d", 0.05)]
    rng = random.Random(0)
    counts = Counter(sample_verbalized(candidates, rng) for _ in range(N_DRAWS))
    for text, p in candidates:
        assert abs(counts[text] / N_DRAWS - p) < TOLERANCE, (text, counts[text])
    assert sample_verbalized([], rng) is None


def test_threshold_draws_from_the_tail_below_tau():
    candidates = [("a", 0.6), ("b", 0.25), ("c", 0.1), ("d", 0.05)]
    rng = random.Random(1)
    counts = Counter(sample_verbalized(candidates, rng, threshold=0.2) for _ in range(N_DRAWS))
    assert set(counts) == {"c", "d"}  # only candidates below τ, in proportion 0.1 : 0.05
    assert abs(counts["c"] / N_DRAWS - 2 / 3) < TOLERANCE
    # nothing below τ: the full verbalized distribution
    counts = Counter(sample_verbalized(candidates, rng, threshold=0.01) for _ in range(N_DRAWS))
    assert abs(counts["a"] / N_DRAWS - 0.6) < TOLERANCE and set(counts) == {"a", "b", "c", "d"}


def test_threshold_compares_the_stated_probabilities():
    # stated 0.08, 0.05, 0.5 (sum 0.63): renormalised 0.127, 0.079, 0.794; τ = 0.1 keeps the two stated tails
    parsed = parse_candidates('{"responses": [{"text": "x", "probability": 0.08}, {"text": "y", "probability": '
                              '0.05}, {"text": "z", "probability": 0.5}]}')
    rng = random.Random(2)
    with_stated = Counter(sample_verbalized(parsed.candidates, rng, 0.1, parsed.stated) for _ in range(2000))
    assert set(with_stated) == {"x", "y"}
    renormalised_only = Counter(sample_verbalized(parsed.candidates, rng, 0.1) for _ in range(200))
    assert set(renormalised_only) == {"y"}


# ----------------------------------------------------------------------------------- sampler

REPLY = ("<response> <text> red </text> <probability> 0.7 </probability> </response> "
         "<response> <text> blue </text> <probability> 0.3 </probability> </response>")


@pytest.fixture(scope="module")
def fitted():
    """A tiny Qwen2 fitted to answer the prompt "q" with REPLY (two tagged candidates), and its tokenizer."""
    tokenizer = word_tokenizer(["q", *REPLY.split()])
    tokenizer.chat_template = USER_ONLY_TEMPLATE
    model = build_model(len(tokenizer), seed=0)
    prompt = render_prompt(tokenizer, build_messages("vs_standard", "q", VerbalizedConfig()))
    reply = tuple(tokenizer(REPLY, add_special_tokens=False)["input_ids"]) + (tokenizer.eos_token_id,)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    fit_to_distribution(model, prompt_ids, {reply: 1.0}, steps=60, lr=3e-2)  # loss about 0.01: REPLY nearly always
    return model, tokenizer, len(reply)


def test_sampler_draws_from_the_parsed_candidates(fitted):
    model, tokenizer, reply_tokens = fitted
    cfg = VerbalizedConfig(method="vs_standard", k=2, format="tagged", max_new_tokens=24, temperature=0.5)
    batch = verbalized_sampler(cfg)(model, tokenizer, ["q", "q"], 20, 0)
    assert batch.stats == {"parse_failures": 0.0, "candidates_per_response": 2.0, "responses_per_prompt": 10.0}
    for answers in batch.completions:
        assert len(answers) == 20
        assert {c.text for c in answers} == {"red", "blue"}
        # each response's tokens split over its k = 2 answers
        assert [c.n_tokens for c in answers[:2]] == [math.ceil(reply_tokens / 2), reply_tokens // 2]
        assert not any(c.truncated for c in answers)
    assert batch.generated_tokens == 2 * 10 * reply_tokens
    assert batch.generated_tokens == sum(c.n_tokens for answers in batch.completions for c in answers)


def test_sampler_threshold_keeps_to_the_tail(fitted):
    model, tokenizer, _ = fitted
    cfg = VerbalizedConfig(method="vs_standard", k=2, threshold=0.5, format="tagged", max_new_tokens=24,
                           temperature=0.5)
    batch = verbalized_sampler(cfg)(model, tokenizer, ["q"], 6, 0)
    assert [c.text for c in batch.completions[0]] == ["blue"] * 6  # the one candidate stated below 0.5


def test_sampler_sequence_takes_items_in_order_and_trims_to_n(fitted):
    model, tokenizer, reply_tokens = fitted
    cfg = VerbalizedConfig(method="sequence", k=2, format="tagged", max_new_tokens=24, temperature=0.5)
    batch = verbalized_sampler(cfg)(model, tokenizer, ["q"], 3, 0)
    assert [c.text for c in batch.completions[0]] == ["red", "blue", "red"]
    assert batch.stats["responses_per_prompt"] == 2.0
    assert batch.generated_tokens == 2 * reply_tokens  # the trimmed slot's response was still generated


def test_sampler_multi_turn_counts_turns_as_responses(fitted):
    model, tokenizer, _ = fitted
    cfg = VerbalizedConfig(method="vs_multi", k=2, turns=2, format="tagged", max_new_tokens=24, temperature=0.5)
    batch = verbalized_sampler(cfg)(model, tokenizer, ["q", "q"], 7, 3)
    assert batch.stats["responses_per_prompt"] == 4.0  # ceil(7 / 2) responses: 2 conversations of 2 turns
    assert [len(answers) for answers in batch.completions] == [7, 7]
    multi = VerbalizedConfig(method="multi_turn", turns=3, max_new_tokens=8)
    batch = verbalized_sampler(multi)(model, tokenizer, ["q"], 4, 0)
    assert batch.stats["responses_per_prompt"] == 4.0 and len(batch.completions[0]) == 4


def test_sampler_counts_parse_failures_and_never_guesses():
    model, tokenizer = random_base(seed=0)  # random weights: letters, never a candidate list
    tokenizer.chat_template = USER_ONLY_TEMPLATE
    cfg = VerbalizedConfig(method="vs_standard", k=2, max_new_tokens=8)
    batch = verbalized_sampler(cfg)(model, tokenizer, ["a b", "c"], 4, 0)
    assert batch.stats["parse_failures"] == 1.0 and batch.stats["candidates_per_response"] == 0.0
    assert all(c.text == "" for answers in batch.completions for c in answers)
    assert [len(answers) for answers in batch.completions] == [4, 4]
    assert batch.generated_tokens == sum(c.n_tokens for answers in batch.completions for c in answers) > 0
    with pytest.raises(ChatModelRequired):
        verbalized_sampler(cfg)(model, random_base(seed=0)[1], ["a"], 2, 0)


def test_sampler_plugs_into_evaluate_model(fitted):
    model, tokenizer, reply_tokens = fitted
    cfg = VerbalizedConfig(method="vs_standard", k=2, format="tagged", max_new_tokens=24, temperature=0.5)

    def grade(family, answer, completion):
        text = completion.strip()
        return Grade(valid=text in answer, correct=text in answer, extracted=text if text in answer else None)

    rows = [{"id": "colour", "family": "colours", "prompt": "q", "answer": ["red", "blue"]}]
    metrics, _ = evaluate_model(model, tokenizer, rows, grade, EvalConfig(n_samples=8, max_new_tokens=24),
                                progress=False, scoring=Scoring(kinds={"colours": "open_ended"},
                                                                sampler=verbalized_sampler(cfg)))
    assert metrics["sampler/parse_failures"] == 0.0 and metrics["sampler/candidates_per_response"] == 2.0
    assert metrics["colours/validity"] == 1.0 and metrics["colours/coverage"] == 1.0
    assert metrics["colours/inference_tokens_per_answer"] == pytest.approx(reply_tokens / 2)


def test_the_pipeline_asks_verbalized_sampling_the_open_ended_requests_when_there_are_some():
    from powerflow.pipeline.evaluate import verbalized_rows

    rows = [{"id": "r", "family": "reasoning", "prompt": "Q 3 5 =", "request": "Q 3 5 ="},
            {"id": "c", "family": "chat", "prompt": "user: name a fruit : assistant:", "request": "name a fruit :"},
            {"id": "w", "family": "writing", "prompt": "write a poem"}]  # no request: the prompt is asked
    kinds = {"reasoning": "reasoning", "chat": "open_ended", "writing": "creative"}
    chosen = verbalized_rows(rows, kinds)
    assert [(r["id"], r["prompt"]) for r in chosen] == [("c", "name a fruit :"), ("w", "write a poem")]
    assert rows[1]["prompt"] == "user: name a fruit : assistant:"  # the caller's rows are left as they were
    # a dataset with no open-ended family (math only): every row, asked by its request
    math = [{"id": "m", "family": "math", "prompt": "<|user|> Solve x + 1 = 2 <|assistant|>", "request": "Solve x + 1 = 2"}]
    assert [r["prompt"] for r in verbalized_rows(math, {"math": "reasoning"})] == ["Solve x + 1 = 2"]
