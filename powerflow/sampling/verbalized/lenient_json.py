"""A forgiving JSON reader for model output (`_LenientJson`): truncated, trailing-comma, single-quoted,
bare-key and LaTeX-backslash JSON, read as far as it goes.

Used by `readers` to find JSON values in a reply; raises `_Incomplete` (the text ended inside a
value) or `_Malformed` (not JSON at this point) where nothing can be read.
"""

from __future__ import annotations

import re
from typing import Any

_MAX_DEPTH = 32


class _Incomplete(Exception):
    """The text ended inside a value."""


class _Malformed(Exception):
    """The text is not (lenient) JSON at this point."""


# After a backslash, these letters start a JSON escape (\b backspace ...), but in model output
# "\boxed", "\frac", "\right", "\text", "\neq" are LaTeX: read them as a literal backslash.
_LATEX_AFTER_N_OR_T = {"ne", "neq", "nabla", "not", "nu", "ni", "neg", "newline", "nmid", "nleq", "ngeq", "theta",
                       "tau", "tan", "tanh", "times", "text", "textbf", "textit", "textrm", "tfrac", "tilde", "to",
                       "top", "triangle", "tbinom"}
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LETTERS = re.compile(r"[A-Za-z]+")
_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None,
             "NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _LenientJson:
    """A forgiving JSON reader for model output.

    value() returns (value, complete). Containers end at the text's end or at the first error
    with what they hold so far (complete=False); an array drops an incomplete element, an
    object keeps a partial list (a truncated "responses" keeps its complete items). Strings take
    either quote, and a quote closes one only before , : } ] or the end (so "it's" survives).
    """

    def __init__(self, text: str, start: int):
        self.s, self.i, self.depth = text, start, 0

    def value(self) -> tuple[Any, bool]:
        self._skip_space()
        if self.i >= len(self.s):
            raise _Incomplete
        char = self.s[self.i]
        if char in "{[":
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise _Malformed
            try:
                return self._object() if char == "{" else self._array()
            finally:
                self.depth -= 1
        if char in "\"'":
            return self._string(), True
        return self._bare(), True

    def _skip_space(self):
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def _at_end(self) -> bool:
        self._skip_space()
        return self.i >= len(self.s)

    def _object(self) -> tuple[dict, bool]:
        self.i += 1
        out: dict = {}
        while True:
            if self._at_end():
                return out, False
            if self.s[self.i] == "}":
                self.i += 1
                return out, True
            try:
                key = self._key()
                if self._at_end():
                    return out, False
                if self.s[self.i] != ":":
                    return out, False
                self.i += 1
                value, complete = self.value()
            except (_Incomplete, _Malformed):
                return out, False
            if complete or isinstance(value, (list, dict)):
                out[key] = value
            if not complete or self._at_end():
                return out, False
            if self.s[self.i] == ",":
                self.i += 1
            elif self.s[self.i] == "}":
                self.i += 1
                return out, True
            else:
                return out, False

    def _array(self) -> tuple[list, bool]:
        self.i += 1
        out: list = []
        while True:
            if self._at_end():
                return out, False
            if self.s[self.i] == "]":
                self.i += 1
                return out, True
            try:
                value, complete = self.value()
            except (_Incomplete, _Malformed):
                return out, False
            if not complete:
                return out, False
            out.append(value)
            if self._at_end():
                return out, False
            if self.s[self.i] == ",":
                self.i += 1
            elif self.s[self.i] == "]":
                self.i += 1
                return out, True
            else:
                return out, False

    def _key(self) -> str:
        if self.s[self.i] in "\"'":
            return self._string()
        match = _KEY.match(self.s, self.i)
        if not match:
            raise _Malformed
        self.i = match.end()
        return match.group()

    def _string(self) -> str:
        quote = self.s[self.i]
        self.i += 1
        out: list[str] = []
        while self.i < len(self.s):
            char = self.s[self.i]
            if char == "\\":
                out.append(self._escape())
                continue
            if char == quote and self._closes(self.i + 1):
                self.i += 1
                return "".join(out)
            out.append(char)
            self.i += 1
        raise _Incomplete

    def _closes(self, j: int) -> bool:
        while j < len(self.s) and self.s[j].isspace():
            j += 1
        return j >= len(self.s) or self.s[j] in ",:}]"

    def _escape(self) -> str:
        """One escape at self.i (the backslash); LaTeX commands and unknown escapes stay literal."""
        if self.i + 1 >= len(self.s):
            raise _Incomplete
        char = self.s[self.i + 1]
        letters = _LETTERS.match(self.s, self.i + 1)
        run = letters.group() if letters else ""
        latex = (char in "bfr" and len(run) >= 2) or (char in "nt" and run in _LATEX_AFTER_N_OR_T)
        if char == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", self.s[self.i + 2:self.i + 6]):
            self.i += 6
            return chr(int(self.s[self.i - 4:self.i], 16))
        if char in _ESCAPES and not latex:
            self.i += 2
            return _ESCAPES[char]
        self.i += 1
        return "\\"

    def _bare(self) -> Any:
        """A number (with a trailing % kept as the string "30%") or a literal."""
        for word, value in _LITERALS.items():
            if self.s.startswith(word, self.i):
                self.i += len(word)
                return value
        rest = self.s[self.i:self.i + 10]
        if any(word.startswith(rest) for word in _LITERALS) and self.i + len(rest) >= len(self.s):
            raise _Incomplete  # a literal cut by the end of the text
        match = _NUMBER.match(self.s, self.i)
        if not match:
            raise _Malformed
        self.i = match.end()
        j = self.i
        while j < len(self.s) and self.s[j] == " ":
            j += 1
        if j < len(self.s) and self.s[j] == "%":
            self.i = j + 1
            return match.group() + "%"
        return float(match.group()) if re.search(r"[.eE]", match.group()) else int(match.group())
