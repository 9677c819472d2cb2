"""Math answers: extract the final answer of a completion and grade it against a gold answer.

- extract_answer    the last `\\boxed{...}` of a completion, else an "answer is" phrase, else None
- MathVerifier      math-verify equivalence in a worker process, each item bounded in time
- is_equivalent     the same through one shared, lazily started verifier
- grade_math        extract + verify -> `Grade`

math-verify (`verify(parse(gold), parse(prediction))`, gold first: the comparison is not symmetric)
bounds its own time with SIGALRM, which raises off the main thread. Its timeouts are switched off
here (`parse(..., parsing_timeout=None)`, `verify(..., timeout_seconds=None)`) and each item runs in
a worker process instead: an item that outlives the timeout counts as not equivalent and its
worker is killed and replaced. A worker is a fresh interpreter of its own (`sys.executable -P -c`,
with the parent's `sys.path`; never a fork of a process that may hold torch threads) that talks
to its parent over a socket. Unlike a multiprocessing "spawn" child it never imports the
caller's `__main__`, so grading works from a plain script without an
`if __name__ == "__main__":` guard, from `python -c`, from stdin and from a notebook.

Importing this module starts no process and imports neither math-verify nor sympy.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Sequence
from multiprocessing.connection import Connection
from types import TracebackType

from powerflow.eval.grading import REASONING, AnswerKind, Grade

logger = logging.getLogger(__name__)

# A worker starts a Python interpreter and imports math-verify (sympy, the ANTLR LaTeX parser):
# 1–3 s on an idle machine; a generous bound so a loaded CI box does not fail a run.
WORKER_START_TIMEOUT_S = 120.0
# How long close() waits for a worker to exit by itself before killing it.
WORKER_EXIT_TIMEOUT_S = 5.0
# How long to wait for the exit code of a worker that hung up before it was ready.
WORKER_EXIT_CODE_WAIT_S = 5.0

# The worker's command line after `python -P -c`: argv[1] is the parent's sys.path (JSON), argv[2]
# the file descriptor of the worker's end of the socket. Only the standard library runs before
# sys.path is set, and the caller's `__main__` is never imported. Ctrl-C is ignored from the
# start: the parent owns the worker's life.
_WORKER_BOOTSTRAP = (
    "import json, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "sys.path[:] = json.loads(sys.argv[1]); "
    "from powerflow.eval.math import _worker_main; _worker_main(int(sys.argv[2]))"
)

# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------

# `\boxed` or `\fbox`, not a longer command such as `\boxedfoo`.
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# The three anchor phrases, case-insensitive; "is" may be followed by a colon.
_ANSWER_PHRASE = re.compile(
    r"\b(?:final\s+answer\s+is|the\s+answer\s+is)\b\s*:?|\banswer\s*:", re.IGNORECASE
)
# An unbraced box argument (`\boxed 5`): a run of characters up to a space or a math delimiter.
_UNBRACED_ARGUMENT = re.compile(r"[^\s$]+")
# End of the first sentence in an unquoted phrase answer: a period then a space or the end.
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
# Math delimiters that may enclose a phrase answer, longest first, with their closers.
_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _braced_group(text: str, open_index: int) -> str | None:
    """The content of the brace group opening at text[open_index] == "{", or None if unclosed.

    Escaped characters (`\\{`, `\\}`, `\\\\`) do not count as braces, so `\\{1,2\\}` stays inside.
    """
    depth = 0
    i = open_index
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : i]
        i += 1
    return None


def _last_box_content(text: str) -> str | None:
    """The argument of the last `\\boxed`/`\\fbox` in text, stripped; None when it is missing.

    `\\boxed{...}` takes the balanced brace group; `\\boxed 5` (no brace) takes the run of
    characters up to the next space or `$`, without a trailing `.`, `,` or `;`. An empty or
    unclosed box (a truncated completion) gives None: the last box decides, earlier ones are
    not consulted.
    """
    matches = list(_BOX_COMMAND.finditer(text))
    if not matches:
        return None
    after = matches[-1].end()
    rest = text[after:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        content = _braced_group(text, after + len(rest) - len(stripped))
    elif stripped and len(stripped) < len(rest):  # `\boxed 5`: a space, then the argument
        argument = _UNBRACED_ARGUMENT.match(stripped)
        content = argument.group(0).rstrip(".,;") if argument else None
    else:
        content = None
    if content is None or not content.strip():
        return None
    return content.strip()


def _phrase_answer(text: str) -> str | None:
    """The answer after the last "final answer is" / "the answer is" / "answer:" in text.

    The answer starts after the phrase (skipping spaces, line breaks and markdown `*`). If it
    opens a math span (`$$`, `$`, `\\(`, `\\[`), the span's content is the answer; otherwise the
    rest of the line up to the first sentence end (a period followed by a space). A trailing
    period and surrounding `$` are stripped. Nothing left gives None.
    """
    matches = list(_ANSWER_PHRASE.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :].lstrip(" \t\r\n*")
    answer = None
    for opener, closer in _MATH_DELIMITERS:
        if rest.startswith(opener):
            close_index = rest.find(closer, len(opener))
            if close_index != -1:
                answer = rest[len(opener) : close_index]
            break
    if answer is None:
        line = rest.split("\n", 1)[0]
        sentence_end = _SENTENCE_END.search(line)
        answer = line[: sentence_end.start()] if sentence_end else line
    answer = answer.strip().rstrip("*").strip().rstrip(".").strip().strip("$").strip()
    return answer or None


def extract_answer(text: str) -> str | None:
    """The final answer of a math completion, or None when it gives none.

    The cascade, first hit wins:

    1. The content of the LAST `\\boxed{...}` or `\\fbox{...}` (balanced braces, so
       `\\boxed{\\frac{1}{2}}` and `\\boxed{\\{1,2\\}}` work), or `\\boxed 5` without braces. When
       the last box is empty or unclosed the answer is None: the last box decides.
    2. With no box at all: the text after the last of the phrases "final answer is", "the answer
       is", "answer:" (case-insensitive), cut at the end of its sentence or math span, without a
       trailing period or surrounding `$`.
    3. Nothing: None (an extraction failure, graded invalid). There is deliberately no
       "last number in the text" fallback: a completion that states no answer gets no credit.
    """
    if _BOX_COMMAND.search(text):
        return _last_box_content(text)
    return _phrase_answer(text)


# ---------------------------------------------------------------------------------------------
# Equivalence (math-verify in a worker process)
# ---------------------------------------------------------------------------------------------

_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def _in_math_mode(answer: str) -> str:
    """`$answer$` for a bare answer, so math-verify's LaTeX extractor reads `\\frac{1}{2}`.

    math-verify only extracts LaTeX inside math delimiters or a box; without them a bare
    `\\frac{1}{2}` or `(1, 2]` parses to nothing. An answer that already holds an unescaped `$`
    is passed as it is (`\\$5`, an escaped dollar sign, is bare).
    """
    if _UNESCAPED_DOLLAR.search(answer):
        return answer
    return f"${answer}$"


class _DisabledTimeoutWarning(logging.Filter):
    """Drops math-verify's warning that its own timeout is off: the worker process bounds time."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


def _verify_in_worker(gold: str, prediction: str) -> bool:
    """math-verify's verdict, gold first, with its signal-based timeouts off (run in the worker)."""
    from math_verify import parse, verify

    try:
        gold_parsed = parse(_in_math_mode(gold), parsing_timeout=None)
        prediction_parsed = parse(_in_math_mode(prediction), parsing_timeout=None)
        return bool(verify(gold_parsed, prediction_parsed, timeout_seconds=None))
    except Exception:  # math-verify swallows its own errors; anything else is "not shown equal"
        logger.debug("math-verify failed on gold=%r prediction=%r", gold, prediction, exc_info=True)
        return False


def _worker_main(fd: int) -> None:
    """A worker interpreter's entry point: serve the parent over the socket at descriptor fd."""
    _serve(Connection(fd))


def _serve(connection: Connection) -> None:
    """Worker loop: import math-verify, warm it up, say "ready", then answer (gold, prediction).

    Replies True/False per request; a None request ends the loop. Ctrl-C is left to the parent,
    which owns the worker's life.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import math_verify  # noqa: F401  (the import is most of the start cost)

        for name in ("math_verify.parser", "math_verify.grader"):
            logging.getLogger(name).addFilter(_DisabledTimeoutWarning())
        _verify_in_worker("1", "1")  # first parse builds the ANTLR parser: pay it before "ready"
    except Exception:  # noqa: BLE001  (sent to the parent, which raises it with the traceback)
        connection.send(("error", traceback.format_exc()))
        return
    connection.send(("ready", None))
    while True:
        try:
            request = connection.recv()
        except EOFError:  # parent went away
            return
        if request is None:
            return
        gold, prediction = request
        connection.send(_verify_in_worker(gold, prediction))


class MathVerifier:
    """math-verify equivalence with a per-item time bound, in one reusable worker process.

        with MathVerifier(timeout_s=5.0) as verifier:
            verifier.equivalent("0.5", r"\\frac{1}{2}")          # True
            verifier.equivalent_many([("[1,2]", "(1,2]")])       # [False]

    The worker starts on the first item that needs it (not on construction) and is reused for
    every later item, in order. An item that takes longer than timeout_s counts as not
    equivalent, increments `timeouts`, and its worker is killed; the next item starts a new one.
    A worker that dies on an item (it should not) counts the item as not equivalent and
    increments `crashes`; a worker found dead between items is replaced without penalty.
    Thread-safe: items from several threads are served one at a time.

    Attributes:
        timeouts: items that ran out of time.
        crashes: items whose worker died.
        worker_starts: workers started so far.
        worker_start_s: seconds the last worker took to start (interpreter, imports, warm-up).
    """

    def __init__(self, timeout_s: float = 5.0) -> None:
        if not timeout_s > 0:
            raise ValueError(f"MathVerifier needs timeout_s > 0 seconds; got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.timeouts = 0
        self.crashes = 0
        self.worker_starts = 0
        self.worker_start_s: float | None = None
        self._process: subprocess.Popen | None = None
        self._connection: Connection | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def equivalent(self, prediction: str, gold: str, timeout_s: float | None = None) -> bool:
        """True when math-verify shows prediction equal to gold within timeout_s (default: ours).

        Fast paths without the worker: an empty side is not equivalent; strings identical after
        stripping whitespace are.
        """
        prediction, gold = prediction.strip(), gold.strip()
        if not prediction or not gold:
            return False
        if prediction == gold:
            return True
        with self._lock:
            limit_s = self.timeout_s if timeout_s is None else timeout_s
            return self._ask_worker(gold, prediction, limit_s)

    def equivalent_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """`equivalent` for each (prediction, gold) pair, in order, through the same worker."""
        return [self.equivalent(prediction, gold) for prediction, gold in pairs]

    def close(self) -> None:
        """Stop the worker (if any). The verifier stays usable: the next item starts a new one."""
        with self._lock:
            if self._process is None:
                return
            try:
                self._connection.send(None)
            except (BrokenPipeError, OSError):
                pass
            try:
                self._process.wait(WORKER_EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass  # killed below
            self._discard_worker()

    @property
    def worker_pid(self) -> int | None:
        """The process id of the current worker; None before the first item or after close()."""
        process = self._process
        return process.pid if process is not None else None

    def _ask_worker(self, gold: str, prediction: str, timeout_s: float) -> bool:
        if self._process is not None and self._process.poll() is not None:  # died while idle
            self._discard_worker()
        if self._process is None:
            self._start_worker()
        try:
            self._connection.send((gold, prediction))
            if not self._connection.poll(timeout_s):
                self.timeouts += 1
                logger.warning(
                    "math-verify took over %.3g s on gold=%r prediction=%r; counted as not equivalent",
                    timeout_s,
                    gold[:200],
                    prediction[:200],
                )
                self._discard_worker()
                return False
            return bool(self._connection.recv())
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.crashes += 1
            logger.warning(
                "math-verify worker died on gold=%r prediction=%r; counted as not equivalent",
                gold[:200],
                prediction[:200],
            )
            self._discard_worker()
            return False

    def _start_worker(self) -> None:
        """Start a worker interpreter and wait until it has imported and warmed up math-verify."""
        _require_math_verify()
        parent_socket, child_socket = socket.socketpair()
        started = time.perf_counter()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-P",  # no script directory or cwd on the path before sys.path is set
                    "-c",
                    _WORKER_BOOTSTRAP,
                    json.dumps(_worker_sys_path()),
                    str(child_socket.fileno()),
                ],
                stdin=subprocess.DEVNULL,
                pass_fds=(child_socket.fileno(),),
                close_fds=True,
            )
        except BaseException:
            parent_socket.close()
            raise
        finally:
            child_socket.close()
        parent_end = Connection(parent_socket.detach())
        self._process, self._connection = process, parent_end
        _live_workers.add(process)
        if not parent_end.poll(WORKER_START_TIMEOUT_S):
            self._discard_worker()
            raise RuntimeError(
                f"the math-verify worker did not start within {WORKER_START_TIMEOUT_S:.0f} s"
            )
        try:
            status, detail = parent_end.recv()
        except EOFError:
            try:
                exit_code = process.wait(WORKER_EXIT_CODE_WAIT_S)
            except subprocess.TimeoutExpired:
                exit_code = None
            status = "error"
            detail = (
                f"the worker exited with code {exit_code} before it was ready "
                "(its error, if any, is on standard error)"
            )
        if status != "ready":
            self._discard_worker()
            raise RuntimeError(f"the math-verify worker failed to start:\n{detail}")
        self.worker_start_s = time.perf_counter() - started
        self.worker_starts += 1
        logger.info("math-verify worker started in %.2f s", self.worker_start_s)

    def _discard_worker(self) -> None:
        """Kill the worker if it still runs and forget it."""
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if process is not None:
            _stop_process(process)
            _live_workers.discard(process)
        if connection is not None:
            connection.close()


def _worker_sys_path() -> list[str]:
    """The parent's sys.path for a worker, with "" (the current directory) made absolute."""
    cwd = os.getcwd()
    return [entry if entry else cwd for entry in sys.path]


def _stop_process(process: subprocess.Popen) -> None:
    """Kill process if it still runs, and reap it."""
    if process.poll() is None:
        try:
            process.kill()
        except ProcessLookupError:  # exited in between
            pass
    process.wait()


# Workers not yet discarded, so none outlives the interpreter (a multiprocessing daemon would
# have been killed at exit; a MathVerifier that was never closed leaves its worker here).
_live_workers: weakref.WeakSet[subprocess.Popen] = weakref.WeakSet()


@atexit.register
def _stop_live_workers() -> None:
    for process in list(_live_workers):
        _stop_process(process)


def _require_math_verify() -> None:
    """Raise a fixable error when math-verify is not installed (checked before spawning)."""
    import importlib.util

    if importlib.util.find_spec("math_verify") is None:
        from powerflow.errors import UserError

        raise UserError(
            "math answers are graded with math-verify, which is not installed; "
            "install it with: pip install 'math-verify[antlr4_9_3]==0.9.0'"
        )


_default_verifier: MathVerifier | None = None
_default_verifier_lock = threading.Lock()


def _shared_verifier() -> MathVerifier:
    """The module's verifier, created on first use and closed when the interpreter exits."""
    global _default_verifier
    with _default_verifier_lock:
        if _default_verifier is None:
            _default_verifier = MathVerifier()
            atexit.register(_default_verifier.close)
        return _default_verifier


def is_equivalent(prediction: str, gold: str, timeout_s: float = 5.0) -> bool:
    """math-verify equivalence, `verify(parse(gold), parse(prediction))`, within timeout_s.

    Uses one shared worker process (started on the first call that needs it); a timed-out item
    is not equivalent. Safe to call from any thread.
    """
    return _shared_verifier().equivalent(prediction, gold, timeout_s=timeout_s)


def grade_math(completion: str, gold: str, verifier: MathVerifier | None = None) -> Grade:
    """Grade a math completion against a bare gold answer (e.g. MATH500's `\\frac{14}{3}`).

    extracted = extract_answer(completion); valid = extracted is not None;
    correct = valid and extracted is math-verify-equivalent to gold (the shared verifier unless
    one is given).
    """
    extracted = extract_answer(completion)
    if extracted is None:
        return Grade(valid=False, correct=False, extracted=None)
    verifier = verifier if verifier is not None else _shared_verifier()
    return Grade(valid=True, correct=verifier.equivalent(extracted, gold), extracted=extracted)


class MathAnswers(AnswerKind):
    """Math answers (kind "math"): `extract_answer`, math-verify equivalence to the gold LaTeX.

    verifier: a MathVerifier to ask (None: the shared one, started on first use). A completion or
    gold answer math-verify cannot parse is not equivalent (wrong), never an exception; an item
    that outlives the verifier's timeout is not equivalent either.
    """

    name = "math"
    scoring = REASONING

    def __init__(self, verifier: "MathVerifier | None" = None) -> None:
        self.verifier = verifier

    def _verifier(self) -> "MathVerifier":
        return self.verifier if self.verifier is not None else _shared_verifier()

    def extract(self, completion: str) -> str | None:
        return extract_answer(completion)

    def is_correct(self, extracted: str, answer) -> bool:
        return self._verifier().equivalent(extracted, str(answer))

    def same(self, representative: str, answer: str) -> bool:
        return representative == answer or self._verifier().equivalent(answer, representative)

    def key_problem(self, answer) -> str | None:
        if answer is None or isinstance(answer, (list, tuple, dict)) or not str(answer).strip():
            return f"math keys are one non-empty answer (LaTeX text), got {answer!r}"
        return None
