"""Readers of one reply format each: the raw (text, probability as written) items of JSON, tags or lines.

`_json_items` (a "responses"-like list or a bare list, in fences or after prose), `_tagged_items`
(<response> blocks), `_line_items` (numbered or bulleted lines with an optional trailing
probability). No probability is interpreted here; `parsing` does that and picks the format order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from powerflow.sampling.verbalized.lenient_json import _Incomplete, _LenientJson, _Malformed


@dataclass(frozen=True)
class _Item:
    """One candidate as read from the reply, before its probability is interpreted."""

    text: str
    probability: Any  # as written: a number, a string ("30%"), or None when absent


# JSON ------------------------------------------------------------------------------------

_TEXT_KEYS = ("text", "response", "answer", "content", "output")
_PROBABILITY_KEYS = ("probability", "prob", "p", "likelihood", "weight", "confidence")
_LIST_KEYS = ("responses", "candidates", "answers", "samples", "items", "outputs")
# Start positions of a JSON value tried per text: a reply has a few braces; garbage can have many.
_MAX_JSON_STARTS = 16


def _json_items(text: str) -> list[_Item]:
    """Items of the first JSON value in the text that holds any."""
    for value in _json_values(text):
        items = _items_of_json(value)
        if items:
            return items
    return []


def _json_values(text: str):
    """Lenient JSON values found in the text: inside ``` fences first, then at each { or [."""
    sources = [m.group(1) for m in re.finditer(r"```[A-Za-z]*[ \t]*\n?(.*?)(?:```|\Z)", text, re.DOTALL)] + [text]
    for source in sources:
        starts = [m.start() for m in re.finditer(r"[\[{]", source)][:_MAX_JSON_STARTS]
        for start in starts:
            try:
                value, _ = _LenientJson(source, start).value()
            except (_Incomplete, _Malformed):
                continue
            yield value


def _items_of_json(value: Any) -> list[_Item]:
    """Candidates of a parsed JSON value: a "responses"-like list, a bare list, or one {"text"} object."""
    if isinstance(value, dict):
        for key in _LIST_KEYS:
            if isinstance(value.get(key), list):
                return _items_of_list(value[key])
        single = _items_of_list([value])
        return single
    if isinstance(value, list):
        return _items_of_list(value)
    return []


def _items_of_list(elements: list) -> list[_Item]:
    """Items of a JSON list: strings (no probability) and objects with a text key."""
    items = []
    for element in elements:
        if isinstance(element, str):
            items.append(_Item(element.strip(), None))
        elif isinstance(element, dict):
            text = next((_scalar_text(element[k]) for k in _TEXT_KEYS if k in element), None)
            if text:
                probability = next((element[k] for k in _PROBABILITY_KEYS if k in element), None)
                items.append(_Item(text, probability))
    return items


def _scalar_text(value: Any) -> str | None:
    """A JSON string or number as answer text (stripped); None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value).strip() or None
    return None


# tags ------------------------------------------------------------------------------------

_BLOCK = re.compile(r"<response\b[^>]*>(.*?)(</response\s*>|(?=<response\b)|\Z)", re.DOTALL | re.IGNORECASE)
_TEXT_TAG = re.compile(r"<text\b[^>]*>(.*?)</text\s*>", re.DOTALL | re.IGNORECASE)
_PROBABILITY_TAG = re.compile(r"<probability\b[^>]*>(.*?)</probability\s*>", re.DOTALL | re.IGNORECASE)


def _tagged_items(text: str) -> list[_Item]:
    """<response> blocks; a block without </response> needs a complete <text> and <probability>."""
    items = []
    for match in _BLOCK.finditer(text):
        body, closed = match.group(1), bool(match.group(2))
        inner = _TEXT_TAG.search(body)
        probability = _PROBABILITY_TAG.search(body)
        if not closed and not (inner and probability):
            continue
        if inner:
            answer = inner.group(1)
        elif re.search(r"<(?:text|probability)\b", body, re.IGNORECASE):
            continue  # a <text> opened and never closed
        else:
            answer = body
        items.append(_Item(answer.strip(), probability.group(1).strip() if probability else None))
    return items


# lines -----------------------------------------------------------------------------------

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_LIST_LINE = re.compile(r"^[ \t]*(?:\(?\d{1,3}[.):]|[-*•])[ \t]+(?P<body>.+?)[ \t]*$", re.MULTILINE)
# A probability at the end of a line needs its keyword or a percent sign in brackets, so an answer
# ending in a number ("1. The total is 42") is not read as one.
_TRAILING_PROBABILITY = re.compile(
    rf"(?:[\(\[]\s*(?:probability|prob|p)\s*[:=]?\s*(?P<a>{_NUM}\s*%?)\s*[\)\]]"
    rf"|[\(\[]\s*(?P<b>{_NUM}\s*%)\s*[\)\]]"
    rf"|[,;:–—-]?\s*(?:probability|prob)\s*[:=]?\s*(?P<c>{_NUM}\s*%?))\s*$",
    re.IGNORECASE,
)


def _line_items(text: str) -> list[_Item]:
    """Numbered or bulleted lines, each with an optional trailing probability."""
    items = []
    for match in _LIST_LINE.finditer(text):
        body = match.group("body")
        found = _TRAILING_PROBABILITY.search(body)
        probability = None
        if found:
            probability = found.group("a") or found.group("b") or found.group("c")
            body = body[:found.start()]
        answer = body.strip().strip("*").strip().strip("\"'").strip().rstrip(":–—-").strip()
        items.append(_Item(answer, probability))
    return items
