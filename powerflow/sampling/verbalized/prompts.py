"""Prompt construction and rendering: the chat messages of each method, turn by turn, in the chat template.

`build_messages` (first turn: system instructions and the question), `followup_message` and
`continue_conversation` (later turns of multi-turn methods), `system_prompt` (the wording of each
method), and `render_prompt` (the tokenizer's chat template; refuses a model without one, see
`requires_instruction_model` and `ChatModelRequired`).
"""

from __future__ import annotations

from powerflow.errors import UserError
from powerflow.sampling.verbalized.config import METHODS, MULTI_TURN_METHODS, VerbalizedConfig


class ChatModelRequired(UserError):
    """Verbalized sampling was asked of a model that does not follow chat instructions."""


def requires_instruction_model(tokenizer) -> bool:
    """True when the tokenizer has no chat template: verbalized sampling is not applicable to its model."""
    return not getattr(tokenizer, "chat_template", None)


def build_messages(method: str, question: str, cfg: VerbalizedConfig) -> list[dict]:
    """Chat messages of the first turn: the method's instructions (system) and the question (user).

    Multi-turn methods continue with `followup_message(turn, cfg)` after each assistant reply.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    return [{"role": "system", "content": system_prompt(method, cfg)}, {"role": "user", "content": question}]


def system_prompt(method: str, cfg: VerbalizedConfig) -> str:
    """The instructions of `method` for k = cfg.k, τ = cfg.threshold, in cfg.format."""
    k, tagged = cfg.k, cfg.format == "tagged"
    plural = "response" if k == 1 else "responses"
    if method in ("direct", "multi_turn"):
        return "Respond to the user's request. Write only the response, with no explanation or commentary."
    if method == "cot":
        if tagged:
            layout = ("First write your step-by-step reasoning inside a <reasoning> element, then your final response "
                      "inside <response><text>…</text></response>.")
        else:
            layout = ("Answer with a JSON object: first a \"reasoning\" field holding your step-by-step thinking, then "
                      "a \"response\" field holding your final response. Write only the JSON object.")
        return f"Respond to the user's request, reasoning step by step before you answer. {layout}"
    if method == "sequence":
        if tagged:
            layout = ("Put each response inside its own <response> element holding a <text> element, and write "
                      "nothing else.")
        else:
            layout = f"Write them as a JSON list of {k} strings, [\"...\", \"...\"], and nothing else."
        return (f"Give {k} different {plural} to the user's request, each one complete and following any answer "
                f"format the request asks for. {layout}")
    opening = {
        "vs_standard": f"Give {k} different {plural} to the user's request, each with its probability.",
        "vs_cot": f"Think step by step about the range of possible responses to the user's request, then give {k} "
                  f"different {plural}, each with its probability.",
        "vs_multi": f"Give {k} different {plural} to the user's request, each with its probability."
                    + (" You will be asked for more in later turns." if cfg.turns > 1 else ""),
    }[method]
    return f"{opening} {_verbalized_layout(k, tagged, reasoning=method == 'vs_cot')} {_distribution_sentence(cfg)}"


def followup_message(turn: int, cfg: VerbalizedConfig) -> dict:
    """The user message of turn `turn` (1 .. cfg.turns - 1) of a multi-turn method."""
    if cfg.method not in MULTI_TURN_METHODS:
        raise ValueError(f"method {cfg.method!r} has one turn; follow-ups exist for {', '.join(MULTI_TURN_METHODS)}")
    if not 1 <= turn < cfg.turns:
        raise ValueError(f"turn {turn} is outside 1..{cfg.turns - 1} (turn 0 is build_messages)")
    if cfg.method == "multi_turn":
        return {"role": "user", "content": "Give another response to the original request, different from your "
                                           "earlier ones. Write only the response."}
    plural = "response" if cfg.k == 1 else "responses"
    return {"role": "user", "content": f"Give {cfg.k} more {plural} to the original request, different from your "
                                       f"earlier ones, in the same format. {_distribution_sentence(cfg)}"}


def continue_conversation(messages: list[dict], reply: str, turn: int, cfg: VerbalizedConfig) -> list[dict]:
    """The messages of turn `turn`: the conversation so far, the model's last reply, the follow-up."""
    return [*messages, {"role": "assistant", "content": reply}, followup_message(turn, cfg)]


def _verbalized_layout(k: int, tagged: bool, reasoning: bool) -> str:
    """How the k candidates and their probabilities are written (JSON or tags)."""
    meaning = ("a number between 0 and 1 estimating how likely that response is among all the responses you could "
               "give")
    if tagged:
        first = "Begin with your step-by-step thinking inside a <reasoning> element. " if reasoning else ""
        return (f"{first}Put each response inside its own <response> element, holding a <text> element with the "
                f"response itself (complete, following any answer format the request asks for) and a <probability> "
                f"element with {meaning}. Write nothing else.")
    first = "a \"reasoning\" field with your step-by-step thinking, then " if reasoning else ""
    return (f"Answer with a JSON object holding {first}a \"responses\" list of {k} objects; each object has a \"text\" "
            f"field, the response itself (complete, following any answer format the request asks for), and a "
            f"\"probability\" field, {meaning}. Write only the JSON object.")


def _distribution_sentence(cfg: VerbalizedConfig) -> str:
    """Sample from the full distribution, or (τ set) from its tails with every probability below τ."""
    if cfg.threshold is None:
        return "Choose the responses at random from the full distribution of possible responses."
    return (f"Choose the responses at random from the tails of the distribution: the probability of every response "
            f"must be below {cfg.threshold:g}.")


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The messages in the tokenizer's chat template, ending with the assistant's turn opening.

    A template that refuses the system role (some models have none) gets the instructions at the
    top of the first user message instead.
    """
    if requires_instruction_model(tokenizer):
        raise ChatModelRequired(
            "verbalized sampling needs an instruction-following chat model, and this tokenizer has no chat template "
            "(the embedded world's base model is not one): set model.name_or_path to an instruct model with a chat "
            "template in the local cache (e.g. Qwen/Qwen2.5-0.5B-Instruct), or leave verbalized sampling out of "
            "the baselines."
        )
    # transformers renders chat templates with jinja2; a template may refuse the system role
    from jinja2.exceptions import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except TemplateError:
        if not messages or messages[0]["role"] != "system" or len(messages) < 2:
            raise
        merged = {"role": messages[1]["role"], "content": f"{messages[0]['content']}\n\n{messages[1]['content']}"}
        return tokenizer.apply_chat_template([merged, *messages[2:]], tokenize=False, add_generation_prompt=True)
