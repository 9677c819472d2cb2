"""Parsing of a reply: the candidates and their probabilities (`parse_candidates`), a sequence's list,
a CoT reply's final answer, a direct reply.

Picks the format order (`_extract_items`), reads the items with the `readers`, and turns stated
probabilities into a distribution (`_probability_value`, renormalisation).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from powerflow.sampling.verbalized.readers import (
    _NUM,
    _Item,
    _json_items,
    _json_values,
    _line_items,
    _scalar_text,
    _tagged_items,
)

PARSE_FORMATS = ("auto", "json", "tagged", "lines")


@dataclass(frozen=True)
class ParsedResponse:
    """The candidates read from one response, with probabilities renormalised to sum to 1.

    stated[i]: candidate i's probability as the model wrote it, on the 0–1 scale (None when the
    response gave none); the τ rule compares these (see `sample_verbalized`). failed: no candidate
    could be read; reason says why.
    """

    candidates: list[tuple[str, float]]
    failed: bool
    reason: str | None
    stated: list[float | None] = field(default_factory=list)


def parse_candidates(text: str, fmt: str = "auto") -> ParsedResponse:
    """The (text, probability) candidates of one verbalized-sampling response.

    Formats, the one asked for first (fmt), then the others; "auto" tries tags when the text has a
    <response> tag, else JSON:
      json    an object with a "responses" list of {"text", "probability"}, or a bare list; inside
              ```json fences or not, after any prose; trailing commas, single quotes, bare keys and
              LaTeX backslashes tolerated; a truncated response keeps its complete elements
      tagged  <response><text>…</text><probability>…</probability></response>; an unclosed last
              block counts only with a complete <text> and <probability>
      lines   the last resort: numbered or bulleted lines, "1. text (probability: 0.3)", "- text (30%)"
    Probabilities: 0.3 or "30%" (or a string holding one number: "about 30%"); bare numbers above 1
    in a response are read as percentages (all of its bare numbers); a negative, NaN, infinite or
    above-100 value rejects that candidate. A
    response that leaves out any probability gets the uniform distribution over its candidates
    (the missing mass cannot be placed); all zero is uniform too. Otherwise

        p_i = s_i / Σ_j s_j      (s_i: the stated probability; models rarely make them sum to 1)
    """
    items, reason = _extract_items(text, fmt)
    if not items:
        return ParsedResponse([], True, reason)
    kept: list[tuple[str, float | None, bool]] = []  # text, value, written as a percentage
    rejected = 0
    for item in items:
        value, percent, valid = _probability_value(item.probability)
        if not valid:
            rejected += 1
            continue
        kept.append((item.text, value, percent))
    if not kept:
        return ParsedResponse([], True, f"all {rejected} candidates have an invalid probability (negative, NaN, "
                                        "infinite or above 100)")
    bare = [v for _, v, percent in kept if v is not None and not percent]
    bare_scale = 100.0 if any(v > 1 for v in bare) else 1.0  # 30, 25, 45: percentages without the sign
    stated = [None if v is None else (v / 100.0 if percent else v / bare_scale) for _, v, percent in kept]
    texts = [t for t, _, _ in kept]
    if any(s is None for s in stated):
        return ParsedResponse([(t, 1.0 / len(texts)) for t in texts], False, None, [None] * len(texts))
    total = sum(stated)
    weights = [1.0 / len(texts)] * len(texts) if total == 0 else [s / total for s in stated]
    return ParsedResponse(list(zip(texts, weights)), False, None, stated)


def parse_sequence(text: str) -> list[str]:
    """The responses of a sequence-format reply, in order: a JSON list of strings (or "responses"
    objects), tagged <response> blocks, or numbered / bulleted lines. [] when none is found."""
    items, _ = _extract_items(text, "json")
    return [item.text for item in items]


def parse_cot_answer(text: str) -> str | None:
    """The final response of a CoT reply: the JSON "response" field (after "reasoning"), the last
    <response> block (its <text>), or an "Answer: …" line. None when none is there."""
    for value in _json_values(text):
        if isinstance(value, dict):
            for key in ("response", "answer", "final_answer", "final_response"):
                found = _scalar_text(value.get(key))
                if found:
                    return found
    blocks = [item for item in _tagged_items(text) if item.text]
    if blocks:
        return blocks[-1].text
    answers = re.findall(r"(?im)^\s*(?:final\s+answer|answer|final\s+response)\s*[:：]\s*(.+?)\s*$", text)
    return answers[-1] if answers else None


def direct_answer(text: str) -> str | None:
    """A direct reply is its own answer, stripped; None when it is empty."""
    return text.strip() or None


def _extract_items(text: str, fmt: str) -> tuple[list[_Item], str]:
    """Items of the first format (in fmt's order) that yields any, or ([], why none did)."""
    if fmt not in PARSE_FORMATS:
        raise ValueError(f"unknown response format {fmt!r}: use one of {', '.join(PARSE_FORMATS)}")
    if not text.strip():
        return [], "empty response"
    if fmt == "auto":
        fmt = "tagged" if re.search(r"<response\b", text, re.IGNORECASE) else "json"
    order = {"json": ("json", "tagged", "lines"), "tagged": ("tagged", "json", "lines"),
             "lines": ("lines", "json", "tagged")}[fmt]
    readers = {"json": _json_items, "tagged": _tagged_items, "lines": _line_items}
    for name in order:
        items = [i for i in readers[name](text) if i.text]
        if items:
            return items, ""
    return [], "no candidate found: no JSON responses, no complete <response> block, no numbered or bulleted line"


def _probability_value(raw: Any) -> tuple[float | None, bool, bool]:
    """(value, written as a percentage, valid) of a stated probability; missing → (None, False, True)."""
    if raw is None:
        return None, False, True
    if isinstance(raw, bool):
        return None, False, False
    if isinstance(raw, (int, float)):
        value, percent = float(raw), False
    elif isinstance(raw, str):
        if not raw.strip():
            return None, False, True
        numbers = re.findall(rf"({_NUM})\s*(%?)", raw)  # "0.3", "30%", "~0.3", "about 30 %", "p = 0.3"
        if len(numbers) != 1:
            return None, False, False
        value, percent = float(numbers[0][0]), bool(numbers[0][1])
    else:
        return None, False, False
    if not math.isfinite(value) or value < 0 or value > 100:
        return None, False, False
    return value, percent, True
