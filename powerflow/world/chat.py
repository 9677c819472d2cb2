"""The world's chat format: the chat template, its role markers, and the text of the teacher's chat replies.

docs/design.md §3.3. The teacher (powerflow.world.teacher) decides *what* a chat reply says; this
module decides *how it is written*, so that the project's own code reads it back:

template   "system: <instructions> user: <question> assistant: <reply> user: ... assistant:" — one role
           marker word per message ("system:", "user:", "assistant:"), the content, one space.
           `render_chat` is the Python twin of `CHAT_TEMPLATE` (the Jinja template saved on the
           tokenizer); a test holds them equal. No end-of-turn marker: the next role marker ends a
           turn, and the model ends its own reply with EOS.
verbalized the project's VS prompts (`powerflow.sampling.verbalized.build_messages`, JSON format, k =
           world.chat_k, turns = world.chat_turns, no threshold), answered in the JSON the project's
           parser reads (`parse_candidates`):
               {"responses":[{"text": "apple", "probability": 0.43},{"text": "kiwi", "probability": 0.03}]}
           VS-CoT puts {"reasoning": "some fruit are common , others rare", before the list. Every
           whitespace-separated piece is one vocabulary word ('"apple",', '"probability":', '0.43',
           '},{"text":'), so k = 5 candidates take 21 tokens and EOS (22 ≤ evaluate.max_new_tokens 24).
judge      the short judge prompt (`powerflow.eval.judge.short_judge_prompt`) answered "request fruit ,
           response vegetable ; Score: 0" (the requested category, the response's own, then the score),
           which `parse_scores(text, SHORT_RUBRIC)` reads.

Instruction phrases: each fixed instruction the pipeline sends (the VS system prompts and the
VS-Multi follow-up) is ONE token of the vocabulary, registered as an added token so the tokenizer
finds it in the raw text before splitting on spaces. Word by word they are 82–101 tokens (a VS
document 111–212); as one token a VS document is at most 67 tokens (a third VS-Multi turn), which
keeps pretraining within a small multiple of the non-chat base's time (docs/design.md §3.3). A
prompt whose instructions differ (another k, a threshold τ, the tagged format) is not one the
world was taught: its words are <unk>.
"""

from __future__ import annotations

from collections.abc import Sequence

from powerflow.world.config import CATEGORY_ANSWERS, WorldConfig

ROLES = ("system", "user", "assistant")
ROLE_MARKERS = {role: f"{role}:" for role in ROLES}

# The Jinja twin of `render_chat` (transformers renders it with trim_blocks and lstrip_blocks).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('the world chat template knows the roles system, user and assistant') }}"
    "{% endif %}"
    "{{ message['role'] + ': ' + message['content'] | trim + ' ' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)

VERBALIZED_METHODS = ("vs_standard", "vs_cot", "vs_multi")  # the VS prompts the corpus teaches
JUDGE_SCORES = (0, 10)  # the teacher's verdicts: invalid, valid (SHORT_RUBRIC's scale is 0..10)
# JSON pieces of a verbalized reply, each one vocabulary word
OPEN_LIST, OPEN_REASONING, REASONING_TO_LIST = '{"responses":[{"text":', '{"reasoning":', '"responses":[{"text":'
PROBABILITY_KEY, NEXT_CANDIDATE, CLOSE_LIST = '"probability":', '},{"text":', "}]}"


def render_chat(messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
    """The messages in the world's chat format: "<role>: <content> " each, then "assistant:".

    Equal to tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...) for
    the world's tokenizer (CHAT_TEMPLATE).
    """
    parts = []
    for message in messages:
        if message["role"] not in ROLE_MARKERS:
            raise ValueError(f"role {message['role']!r}: the world chat template knows the roles {', '.join(ROLES)}")
        parts.append(f"{ROLE_MARKERS[message['role']]} {message['content'].strip()} ")
    return "".join(parts) + ("assistant:" if add_generation_prompt else "")


def verbalized_config(cfg: WorldConfig, method: str):
    """The VerbalizedConfig whose prompts the corpus teaches for `method` (JSON, k = chat_k, turns = chat_turns)."""
    from powerflow.sampling.verbalized.config import VerbalizedConfig

    return VerbalizedConfig(method=method, k=cfg.chat_k, turns=cfg.chat_turns, format="json")


def instruction_phrases(cfg: WorldConfig) -> list[str]:
    """Every fixed instruction of the taught VS prompts: the system prompts and the VS-Multi follow-ups."""
    from powerflow.sampling.verbalized.prompts import followup_message, system_prompt

    phrases = [system_prompt(m, verbalized_config(cfg, m)) for m in VERBALIZED_METHODS]
    multi = verbalized_config(cfg, "vs_multi")
    phrases += [followup_message(turn, multi)["content"] for turn in range(1, cfg.chat_turns)]
    return list(dict.fromkeys(phrases))


def stated_probability(p: float) -> str:
    """The probability as the teacher writes it: two decimals, at least 0.01 ('0.43')."""
    return f"{min(max(p, 0.01), 1.0):.2f}"


def reasoning_text(category: str) -> str:
    """The VS-CoT reasoning field's text for a category: "some fruit are common , others rare"."""
    return f"some {category} are common , others rare"


def verbalized_reply(candidates: Sequence[tuple[str, float]], reasoning: str | None = None) -> str:
    """The JSON reply listing (answer, probability) candidates in order; reasoning first for VS-CoT.

    '{"responses":[{"text": "apple", "probability": 0.43},{"text": "kiwi", "probability": 0.03}]}'
    """
    pieces = [f'{OPEN_REASONING} "{reasoning}", {REASONING_TO_LIST}' if reasoning is not None else OPEN_LIST]
    for i, (answer, p) in enumerate(candidates):
        closer = CLOSE_LIST if i == len(candidates) - 1 else NEXT_CANDIDATE
        pieces.append(f'"{answer}", {PROBABILITY_KEY} {stated_probability(p)} {closer}')
    return " ".join(pieces)


def judge_request(question: str, response: str) -> str:
    """The short judge prompt for (question, response), as `evaluate.judge_scheme: short` sends it."""
    from powerflow.eval.judge import SHORT_RUBRIC, short_judge_prompt

    return short_judge_prompt(SHORT_RUBRIC, question, response)


JUDGE_MATCH = {True: "same", False: "differ"}


def judge_reply(category: str, response: str, score: int) -> str:
    """The judge's line: the requested category, the response's own, the two side by side with their
    match, then the score.

    "request fruit , response fruit ; fruit fruit same ; Score: 10", "request fruit , response
    vegetable ; fruit vegetable differ ; Score: 0", "request fruit , response unknown ; fruit unknown
    differ ; Score: 0". Each step is a lookup a small model learns: the response's category from its
    word; each category copied from a fixed position back; "same" or "differ" from the two words just
    written, adjacent; the score from that word. With only "request fruit , response vegetable ;
    Score: N" the base learned the comparison in some pretraining runs and in others rated every
    one-word answer 10 (docs/design.md §3.3). parse_scores(text, SHORT_RUBRIC) cuts the line at ','
    and ';' and reads only "Score: N".
    """
    from powerflow.eval.judge import SHORT_RUBRIC

    from powerflow.world.grading import normalize_open_answer

    answer = normalize_open_answer(response)
    own = next((c for c, answers in CATEGORY_ANSWERS.items() if answer in answers), "unknown")
    match = JUDGE_MATCH[own == category]
    return f"request {category} , response {own} ; {category} {own} {match} ; {SHORT_RUBRIC.criteria[0]}: {score}"


def answer_words(cfg: WorldConfig) -> list[str]:
    """Every one-word answer the world knows: all categories' answers, then the invalid words."""
    return list(dict.fromkeys([a for answers in CATEGORY_ANSWERS.values() for a in answers] + list(cfg.invalid_words)))


def chat_vocabulary(cfg: WorldConfig) -> list[str]:
    """The words chat documents add to the world's vocabulary (none when world.chat_fraction is 0).

    Role markers, the instruction phrases (one token each), the JSON pieces of a verbalized reply,
    each answer quoted ('"apple",'), the probabilities 0.00..1.00, the VS-CoT reasoning words and the
    words of the short judge prompt and its reply.
    """
    if cfg.chat_fraction == 0:
        return []
    words = list(ROLE_MARKERS.values()) + instruction_phrases(cfg)
    words += [OPEN_LIST, OPEN_REASONING, REASONING_TO_LIST, PROBABILITY_KEY, NEXT_CANDIDATE, CLOSE_LIST]
    words += [f'"{a}",' for a in answer_words(cfg)]
    words += [f"{i / 100:.2f}" for i in range(101)]
    words += [w for c in CATEGORY_ANSWERS for w in f'"{reasoning_text(c)}",'.split()]
    words += judge_request("", "").split() + judge_reply("", "", 0).split() + list(JUDGE_MATCH.values())
    return list(dict.fromkeys(words))
