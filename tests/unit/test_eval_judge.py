"""The creative-writing judge without a model: rubric checks, prompt, score parsing, the quality
formula, and the OpenAI-compatible client against a small HTTP server started in the test.

That server (http.server on 127.0.0.1, in a thread) stands in for an external endpoint such as
vLLM: it returns a fixed judge text, so these tests check the client (request body, headers,
retries, errors) and the scoring pipeline around it, not the judgement of any model.
"""

from __future__ import annotations

import json
import math
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from powerflow.errors import ConfigError, UserError
from powerflow.eval.judge import (
    CREATIVE_WRITING_RUBRIC,
    SHORT_RUBRIC,
    JudgeUnavailable,
    OpenAICompatibleJudge,
    Rubric,
    criterion_key,
    judge_from_config,
    judge_prompt,
    judge_quality,
    judge_scheme,
    parse_scores,
    quality_from_scores,
    short_judge_prompt,
)

# A small rubric for hand computation: 4 criteria, one of them negative, at least 2 must parse.
SMALL = Rubric(criteria=("Imagery", "Voice", "Tell-Don't-Show", "Coherence"), negative=("Tell-Don't-Show",))


def full_scores_text(rubric: Rubric, score: float) -> str:
    return "Scores:\n" + "\n".join(f"{c}: {score:g}" for c in rubric.criteria)


# ---------------------------------------------------------------------------------------------
# Rubric


def test_default_rubric_has_positive_and_negative_criteria():
    r = CREATIVE_WRITING_RUBRIC
    assert len(r.criteria) == 12 and len(r.negative) == 4
    assert set(r.negative) < set(r.criteria)
    assert r.max_score == 20.0 and r.min_parsed == 6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"criteria": ()}, "empty"),
        ({"criteria": ("Imagery", "imagery!")}, "differ only"),
        ({"criteria": ("Imagery", "???")}, "letters or digits"),
        ({"criteria": ("Imagery, Voice",)}, "','"),
        ({"criteria": ("Imagery",), "negative": ("Cliches",)}, "not in Rubric.criteria"),
        ({"criteria": ("Imagery", "Cliches"), "negative": ("Cliches", "Cliches")}, "repeats"),
        ({"criteria": ("Imagery",), "max_score": 0.0}, "positive finite"),
        ({"criteria": ("Imagery",), "max_score": math.inf}, "positive finite"),
    ],
)
def test_rubric_rejects_bad_definitions(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Rubric(**kwargs)


def test_criterion_key_ignores_case_and_punctuation():
    assert criterion_key("**Tell-Don't-Show**") == criterion_key("tell don’t  show") == "tell don t show"


# ---------------------------------------------------------------------------------------------
# Prompt


def test_judge_prompt_lists_every_criterion_and_marks_the_negative_ones():
    text = judge_prompt(CREATIVE_WRITING_RUBRIC, "Write a poem about rain.", "Drops on tin, a drum.")
    lines = text.splitlines()
    for criterion in CREATIVE_WRITING_RUBRIC.criteria:
        assert criterion in lines  # each on its own line, spelled exactly, so it can be echoed back
    fault_line = next(line for line in lines if "faults" in line)
    assert all(n in fault_line for n in CREATIVE_WRITING_RUBRIC.negative)
    assert "Write a poem about rain." in text and "Drops on tin, a drum." in text
    assert "0 to 20" in text and "Criterion: number" in text


def test_judge_prompt_follows_the_rubric_scale():
    text = judge_prompt(Rubric(criteria=("Imagery",), max_score=10), "p", "r")
    assert "0 to 10" in text and "0 to 20" not in text


# ---------------------------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Imagery: 15\nVoice: 12\nTell-Don't-Show: 4\nCoherence: 18",
         {"Imagery": 15, "Voice": 12, "Tell-Don't-Show": 4, "Coherence": 18}),
        # markdown bold, list markers, headings, lower case
        ("## Scores\n- **Imagery**: 15\n* **voice:** 12\n1. `Coherence` - 18",
         {"Imagery": 15, "Voice": 12, "Coherence": 18}),
        # dashes as separators, also inside a hyphenated name
        ("Imagery - 15\nTell-Don't-Show - 6\nCoherence — 9", {"Imagery": 15, "Tell-Don't-Show": 6, "Coherence": 9}),
        # x/20, decimals, brackets, "Score", trailing commentary
        ("Imagery: 15/20\nVoice: 12.5 / 20 (a touch flat)\nCoherence: [17]\nTell-Don't-Show: Score 3.",
         {"Imagery": 15, "Voice": 12.5, "Coherence": 17, "Tell-Don't-Show": 3}),
        # all on one line, and a markdown table
        ("Imagery: 11, Voice: 10; Coherence: 9", {"Imagery": 11, "Voice": 10, "Coherence": 9}),
        ("| Criterion | Score |\n|---|---|\n| Imagery | 14 |\n| Voice | 13 |", {"Imagery": 14, "Voice": 13}),
        # a heading before the first criterion on the same line
        ("Scores: Imagery: 7\nVoice: 8", {"Imagery": 7, "Voice": 8}),
        # analysis mentions a score, the score list comes later: the last one wins
        ("Analysis: Imagery: 5 at first glance, but it grows.\nScores:\nImagery: 13\nVoice: 11",
         {"Imagery": 13, "Voice": 11}),
        # unknown names and other numbers are ignored
        ("Plot: 19\nWord count: 350\nImagery: 0\nCoherence: 20", {"Imagery": 0, "Coherence": 20}),
    ],
)
def test_parse_scores_reads_many_judge_styles(text, expected):
    assert parse_scores(text, SMALL) == pytest.approx(expected)


def test_parse_scores_allows_missing_criteria_down_to_half():
    assert parse_scores("Imagery: 10\nVoice: 9", SMALL) == {"Imagery": 10, "Voice": 9}  # 2 of 4: enough
    assert parse_scores("Imagery: 10", SMALL) is None  # 1 of 4: a failure
    odd = Rubric(criteria=("A", "B", "C"))
    assert parse_scores("A: 1", odd) is None and parse_scores("A: 1\nC: 2", odd) == {"A": 1, "C": 2}  # ceil(3/2)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot evaluate this piece.",
        "a b c d a b c answer 12 guess",
        "Imagery Voice Coherence 15 12 18",  # numbers not attached to names
        "Imagery: high\nVoice: good\nCoherence: fine",
    ],
)
def test_parse_scores_returns_none_on_garbage(text):
    assert parse_scores(text, SMALL) is None


def test_parse_scores_rejects_out_of_range_and_wrong_scale():
    text = "Imagery: 25\nVoice: -3\nCoherence: 7/10\nTell-Don't-Show: 150"
    assert parse_scores(text, SMALL) is None  # nothing valid is left
    kept = parse_scores("Imagery: 25\nVoice: 12\nCoherence: 14/20\nTell-Don't-Show: 2024", SMALL)
    assert kept == {"Voice": 12, "Coherence": 14}
    # an out-of-range repeat cancels an earlier valid score rather than keeping a stale one
    assert parse_scores("Imagery: 12\nVoice: 10\nCoherence: 9\nImagery: 40", SMALL) == {"Voice": 10, "Coherence": 9}


def test_parse_scores_of_the_default_rubric_round_trips_the_prompt_names():
    text = full_scores_text(CREATIVE_WRITING_RUBRIC, 10)
    assert parse_scores(text, CREATIVE_WRITING_RUBRIC) == {c: 10.0 for c in CREATIVE_WRITING_RUBRIC.criteria}


# ---------------------------------------------------------------------------------------------
# Quality


def test_quality_inverts_negative_criteria_by_hand():
    # (15 + 12 + (20 − 4) + 18) / 4 / 20 = 61 / 80
    scores = {"Imagery": 15, "Voice": 12, "Tell-Don't-Show": 4, "Coherence": 18}
    assert quality_from_scores(scores, SMALL) == pytest.approx(61 / 80)
    # only the parsed criteria count: (10 + (20 − 20)) / 2 / 20 = 0.25
    assert quality_from_scores({"Imagery": 10, "Tell-Don't-Show": 20}, SMALL) == pytest.approx(0.25)


def test_quality_extremes_are_zero_and_one():
    best = {c: (0.0 if c in SMALL.negative else 20.0) for c in SMALL.criteria}
    worst = {c: (20.0 if c in SMALL.negative else 0.0) for c in SMALL.criteria}
    assert quality_from_scores(best, SMALL) == 1.0 and quality_from_scores(worst, SMALL) == 0.0


def test_quality_uses_the_rubric_maximum():
    ten = Rubric(criteria=("A", "B"), negative=("B",), max_score=10)
    assert quality_from_scores({"A": 8, "B": 4}, ten) == pytest.approx((8 + 6) / 2 / 10)


@pytest.mark.parametrize("scores", [{}, {"Plot": 3}, {"Imagery": 21}, {"Imagery": -1}])
def test_quality_rejects_bad_scores(scores):
    with pytest.raises(ValueError):
        quality_from_scores(scores, SMALL)


# ---------------------------------------------------------------------------------------------
# judge_quality with a judge written here (a list of fixed outputs)


class FixedJudge:
    def __init__(self, outputs):
        self.outputs = outputs
        self.prompts = None

    def complete(self, prompts):
        self.prompts = prompts
        return self.outputs[: len(prompts)]


def test_judge_quality_counts_failures_and_averages_the_rest():
    outputs = ["Imagery: 20\nVoice: 20", "no scores here", "Imagery: 10\nTell-Don't-Show: 20"]
    judge = FixedJudge(outputs)
    items = [("prompt one", "story one"), ("prompt two", "story two"), ("prompt three", "story three")]
    result = judge_quality(judge, SMALL, items)
    assert result.qualities == [1.0, None, 0.25]
    assert result.n_failures == 1 and result.raw == outputs
    assert result.mean == pytest.approx(0.625)
    assert result.se == pytest.approx(math.sqrt(((1 - 0.625) ** 2 + (0.25 - 0.625) ** 2) / 1 / 2))
    assert "story two" in judge.prompts[1] and "prompt three" in judge.prompts[2]


def test_judge_quality_with_no_parsed_output_is_nan():
    result = judge_quality(FixedJudge(["?", "?"]), SMALL, [("p", "r"), ("p", "s")])
    assert result.n_failures == 2 and result.qualities == [None, None]
    assert math.isnan(result.mean) and math.isnan(result.se)


def test_judge_quality_needs_items_and_one_output_each():
    with pytest.raises(ValueError):
        judge_quality(FixedJudge([]), SMALL, [])
    with pytest.raises(RuntimeError, match="1 outputs for 2"):
        judge_quality(FixedJudge(["x"]), SMALL, [("p", "r"), ("p", "s")])


# ---------------------------------------------------------------------------------------------
# The short scheme (evaluate.judge_scheme: short)


def test_short_prompt_holds_the_request_the_response_and_the_one_line_answer_format():
    text = short_judge_prompt(SHORT_RUBRIC, "  name a fruit :\n", " apple ")
    lines = text.splitlines()
    assert len(lines) == 4 and "from 0 to 10" in lines[0]
    assert lines[1:] == ["Request: name a fruit :", "Response: apple", "Reply with one line: Score: <number>"]
    assert len(text.split()) < 40  # short enough for a small model's context


@pytest.mark.parametrize(
    ("text", "quality"),
    [("Score: 10", 1.0), ("score : 0", 0.0), ("**Score:** 7", 0.7), ("Score: 8/10", 0.8), ("The answer fits.\nScore: 9", 0.9)],
)
def test_short_scores_parse_into_a_quality(text, quality):
    scores = parse_scores(text, SHORT_RUBRIC)
    assert quality_from_scores(scores, SHORT_RUBRIC) == pytest.approx(quality)


@pytest.mark.parametrize("text", ["Score: 11", "Score: 8/20", "ten", ""])
def test_short_scores_refuse_out_of_range_or_missing(text):
    assert parse_scores(text, SHORT_RUBRIC) is None


def test_judge_quality_with_the_short_scheme_sends_its_prompt_and_reads_its_line():
    judge = FixedJudge(["Score: 10", "Score: 0", "no"])
    scheme = judge_scheme("short")
    items = [("name a fruit :", "apple"), ("name a fruit :", "carrot"), ("name a fruit :", "kiwi")]
    result = judge_quality(judge, scheme.rubric, items, prompt=scheme.prompt)
    assert result.qualities == [1.0, 0.0, None] and result.n_failures == 1
    assert judge.prompts[1] == short_judge_prompt(SHORT_RUBRIC, "name a fruit :", "carrot")


def test_judge_schemes_by_name_and_the_default_stays_creative_writing():
    from powerflow.eval.config import EvalConfig

    assert judge_scheme("creative_writing").rubric == CREATIVE_WRITING_RUBRIC
    assert EvalConfig().judge_scheme == "creative_writing"
    with pytest.raises(ConfigError, match="evaluate.judge_scheme"):
        judge_scheme("poetry")
    with pytest.raises(ConfigError, match="evaluate.judge_scheme"):
        EvalConfig(judge_scheme="poetry")


def test_the_suite_hands_the_short_scheme_to_scoring():
    from powerflow.eval.config import EvalConfig
    from powerflow.eval.suite import _judge_scheme

    assert _judge_scheme(EvalConfig()) == {}
    assert _judge_scheme(EvalConfig(judge_scheme="short")) == {"rubric": SHORT_RUBRIC, "judge_prompt": short_judge_prompt}


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible client against a local stand-in server

JUDGE_TEXT = "The piece is vivid but loose.\nScores:\nImagery: 16\nVoice: 14\nTell-Don't-Show: 6\nCoherence: 12"
JUDGE_QUALITY = (16 + 14 + (20 - 6) + 12) / 4 / 20


class StandInServer:
    """POST /v1/chat/completions on 127.0.0.1; answers with `statuses` in turn, then 200 + JUDGE_TEXT."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = server.statuses.pop(0) if server.statuses else 200
                if self.path != "/v1/chat/completions":
                    status = 404
                payload = (
                    {"choices": [{"index": 0, "message": {"role": "assistant", "content": JUDGE_TEXT}}]}
                    if status == 200 else {"error": {"message": f"status {status}"}}
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        # a short poll interval: shutdown() waits up to one interval
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def client(base_url, **kwargs):
    return OpenAICompatibleJudge(base_url, "judge-model", api_key_env="POWERFLOW_TEST_JUDGE_KEY",
                                 timeout_s=5, backoff_s=0.01, **kwargs)


def test_openai_client_sends_a_greedy_chat_request_and_scores_the_reply(monkeypatch):
    monkeypatch.setenv("POWERFLOW_TEST_JUDGE_KEY", "sk-test-123")
    with StandInServer() as server:
        judge = client(server.base_url + "/", max_tokens=77)  # a trailing slash is tolerated
        result = judge_quality(judge, SMALL, [("Write about rain.", "Drops on tin."), ("Write about snow.", "Hush.")])
    assert result.qualities == pytest.approx([JUDGE_QUALITY, JUDGE_QUALITY]) and result.n_failures == 0
    assert len(server.requests) == 2
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test-123"
    body = request["body"]
    assert body["model"] == "judge-model" and body["temperature"] == 0 and body["max_tokens"] == 77
    assert [m["role"] for m in body["messages"]] == ["user"]
    sent = sorted(r["body"]["messages"][0]["content"] for r in server.requests)
    assert sent == sorted([judge_prompt(SMALL, "Write about rain.", "Drops on tin."),
                           judge_prompt(SMALL, "Write about snow.", "Hush.")])


def test_openai_client_sends_no_key_when_the_variable_is_unset(monkeypatch):
    monkeypatch.delenv("POWERFLOW_TEST_JUDGE_KEY", raising=False)
    with StandInServer() as server:
        assert client(server.base_url).complete(["p"]) == [JUDGE_TEXT]
    assert "Authorization" not in server.requests[0]["headers"]


def test_openai_client_retries_a_server_error():
    with StandInServer(statuses=[500]) as server:
        assert client(server.base_url).complete(["p"]) == [JUDGE_TEXT]
    assert len(server.requests) == 2


def test_openai_client_gives_up_after_three_server_errors():
    with StandInServer(statuses=[503, 503, 503, 200]) as server, pytest.raises(
        JudgeUnavailable, match="after 3 tries.*HTTP 503"
    ):
        client(server.base_url).complete(["p"])
    assert len(server.requests) == 3


def test_openai_client_client_error_is_a_user_error_without_retry():
    with StandInServer(statuses=[404]) as server, pytest.raises(UserError, match=r"HTTP 404.*evaluate\.judge") as info:
        client(server.base_url).complete(["p"])
    assert server.base_url in str(info.value)
    assert len(server.requests) == 1


def test_openai_client_unreachable_port_is_a_user_error():
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UserError, match=rf"127\.0\.0\.1:{port}/v1/chat/completions failed after 3 tries"):
        client(f"http://127.0.0.1:{port}/v1").complete(["p"])


# ---------------------------------------------------------------------------------------------
# judge_from_config


def test_judge_from_config_builds_a_served_judge():
    judge = judge_from_config("openai:http://localhost:8000/v1#Qwen/Qwen2.5-7B-Instruct")
    assert isinstance(judge, OpenAICompatibleJudge)
    assert judge.url == "http://localhost:8000/v1/chat/completions"
    assert judge.model == "Qwen/Qwen2.5-7B-Instruct" and judge.max_tokens == 600


@pytest.mark.parametrize("spec", ["", "  ", "openai:localhost:8000#m", "openai:http://localhost:8000/v1", "openai:http://x/v1#"])
def test_judge_from_config_rejects_malformed_specs(spec):
    with pytest.raises(ConfigError, match=r"evaluate\.judge"):
        judge_from_config(spec)


def test_judge_from_config_missing_local_model_is_a_user_error(tmp_path):
    missing = str(tmp_path / "no-such-judge")
    with pytest.raises(JudgeUnavailable, match="no-such-judge"):
        judge_from_config(missing)


# ---------------------------------------------------------------------------------------------
# The judge on a family with an answer key: its scores and its agreement with the key


class KeyedJudge:
    """Says "Score: 10" when the response is in `likes`, else "Score: 0"; counts the prompts it is asked."""

    def __init__(self, likes):
        self.likes, self.asked = set(likes), []

    def complete(self, prompts):
        self.asked += prompts
        return ["Score: 10" if p.split("Response: ")[1].split("\n")[0] in self.likes else "Score: 0" for p in prompts]


def graded(completion, valid):
    return {"completion": completion, "valid": valid, "correct": valid, "extracted": completion if valid else None}


def test_judged_quality_and_agreement_with_the_answer_key_on_an_open_ended_family():
    from powerflow.eval.evaluate import Scoring, judged_open_ended_quality

    rows = [{"prompt": "name a fruit"}, {"prompt": "name a colour"}]
    sampled = [[graded("apple", True), graded("apple", True), graded("rock", False)],
               [graded("red", True), graded("blue", True), graded("", False)]]
    judge = KeyedJudge({"apple", "red", "rock"})  # wrong on "rock" (valid to it) and on "blue" (invalid to it)
    scoring = Scoring(judge=judge, rubric=SHORT_RUBRIC, judge_prompt=short_judge_prompt)
    out = judged_open_ended_quality(rows, sampled, scoring)
    assert out["judged_quality"] == pytest.approx(4 / 6) and out["judge_failures"] == 0
    assert out["judge_agreement"] == pytest.approx(4 / 6)
    assert len(judge.asked) == 5  # the two identical (request, response) pairs are asked once
    assert judged_open_ended_quality(rows, sampled, Scoring()) == {}  # no judge: no judged numbers
