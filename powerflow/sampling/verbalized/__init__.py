"""Verbalized sampling: the model is asked for k answers with their probabilities, and one is drawn.

Zhang, Yu, Chong, Sicilia, Tomz, Manning & Shi (2025), "Verbalized Sampling: How to Mitigate Mode
Collapse and Unlock LLM Diversity" (arXiv:2510.01171; code: github.com/CHATS-lab/verbalized-sampling).
An aligned model asked once answers with its mode; asked for a distribution ("k responses, each
with a probability") it lists several, and sampling from the listed distribution recovers some of
the diversity of the base model. The prompt families (the paper's §4 and its repository, file
verbalized_sampling/methods/prompt.py, `get_format_prompt`; the README's quickstart for tags):

    direct       one response, nothing else
    cot          reasoning first, then one response (the repository's "direct_cot": a JSON object
                 with "reasoning" then "response")
    sequence     k responses as a list of strings, no probabilities
    multi_turn   one response per turn; later turns ask for a different one (`turns` turns)
    vs_standard  k responses, each with a probability: JSON {"responses": [{"text", "probability"}]}
                 or tags <response><text>…</text><probability>…</probability></response>
    vs_cot       VS-Standard preceded by a "reasoning" field (tags: a <reasoning> element)
    vs_multi     VS-Standard over `turns` turns, k new responses per turn

Probability threshold τ (the paper's diversity tuning, §5 and the README's quickstart): the prompt
asks to sample from the tails of the distribution, every response's probability below τ; lower τ,
more diverse answers. The draw then keeps to the candidates the model put below τ (see
`sample_verbalized`). (The repository's `verbalize(tau=...)` helper uses its `tau` differently, as a
post-hoc filter that keeps candidates at or above it; here τ always means the tail prompt.)

The prompt wording (module `prompts`) is ours, written from those formats. It needs an instruction-following
chat model: a tokenizer without a chat template (the embedded world's base model) is refused by
`render_prompt`, and `requires_instruction_model` lets the pipeline report "not applicable".

Modules, each importing only those above it (all names below are re-exported here, so
`from powerflow.sampling.verbalized import verbalized_sampler` works):
    config        VerbalizedConfig (params.yaml `baselines.verbalized`) and its validation; METHODS,
                  VS_METHODS, MULTI_TURN_METHODS, FORMATS, SECTION
    prompts       the chat messages of each method and turn, and their rendering in the chat template:
                  build_messages, system_prompt, followup_message, continue_conversation, render_prompt,
                  requires_instruction_model, ChatModelRequired
    lenient_json  the forgiving JSON reader for model output
    readers       the raw items of one reply format each (JSON, <response> tags, numbered lines)
    parsing       a reply's candidates and probabilities (parse_candidates, ParsedResponse), a sequence's
                  list, a CoT answer, a direct answer; PARSE_FORMATS
    draw          sample_verbalized: one candidate from the verbalized distribution, τ keeping to the tails
    sampler       verbalized_sampler (a Sampler for evaluate_model) and answers_per_response

Importing the package loads no torch or transformers (generation imports them when it runs).
"""

from __future__ import annotations

from powerflow.sampling.verbalized.config import (
    FORMATS,
    METHODS,
    MULTI_TURN_METHODS,
    SECTION,
    VS_METHODS,
    VerbalizedConfig,
)
from powerflow.sampling.verbalized.draw import sample_verbalized
from powerflow.sampling.verbalized.parsing import (
    PARSE_FORMATS,
    ParsedResponse,
    direct_answer,
    parse_candidates,
    parse_cot_answer,
    parse_sequence,
)
from powerflow.sampling.verbalized.prompts import (
    ChatModelRequired,
    build_messages,
    continue_conversation,
    followup_message,
    render_prompt,
    requires_instruction_model,
    system_prompt,
)
from powerflow.sampling.verbalized.sampler import answers_per_response, verbalized_sampler

__all__ = [
    "FORMATS",
    "METHODS",
    "MULTI_TURN_METHODS",
    "PARSE_FORMATS",
    "SECTION",
    "VS_METHODS",
    "ChatModelRequired",
    "ParsedResponse",
    "VerbalizedConfig",
    "answers_per_response",
    "build_messages",
    "continue_conversation",
    "direct_answer",
    "followup_message",
    "parse_candidates",
    "parse_cot_answer",
    "parse_sequence",
    "render_prompt",
    "requires_instruction_model",
    "sample_verbalized",
    "system_prompt",
    "verbalized_sampler",
]
