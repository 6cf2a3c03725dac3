"""Answer checking: is a predicted final answer the gold one? Fast, cached, bounded in time, never raising.

The reward calls this on every GRPO completion and evaluation on every sample, so it is built for speed first:

1. A **fast path** decides most answers in microseconds without sympy: a normalised exact string match
   (spaces, ``$``, ``\\left``/``\\right``, ``\\dfrac``, ``\\text{}`` wrappers and units, ``^\\circ``), and an
   exact numeric match (``1,000`` = ``1000``, ``\\$18`` = ``18``, ``72.0`` = ``72``,
   ``\\frac{1}{2}`` = ``1/2`` = ``0.5``). Two plain numbers that differ are a fast "no".
2. Everything else goes to **math-verify** (``parse`` + ``verify``) with the gold answer parsed once per
   process (``functools.lru_cache``) and verdicts cached per ``(predicted, gold)`` pair: a GRPO group
   repeats the same few answers many times.
3. math-verify's own timeout uses ``signal.alarm``, which raises in any thread but the main one, and TRL may
   call reward functions from worker threads. sblite switches it off (``parsing_timeout=None``,
   ``timeout_seconds=None``) and enforces ``timeout_s`` itself: in the main thread with a sub-second
   ``setitimer`` alarm (no overhead), elsewhere by running math-verify in one persistent helper process that
   is killed and restarted when it overruns (about 0.1 ms per call, about 1 s to start once). A timeout is a
   "no". Answers longer than ``MAX_ANSWER_CHARS`` skip math-verify (no real final answer is that long).

``extract_answer`` reads the final answer of free-form text (base-model samples that ignore the budget format):
the last ``\\boxed{}``, else a trailing "the answer is X" or "#### X", else the last number.

>>> is_equivalent("0.5", r"\\frac{1}{2}")
True
>>> is_equivalent(r"\\$1,000", "1000")
True
>>> is_equivalent("71", "72")
False
>>> extract_answer("She makes 9 * 2 = $18 every day.\\n#### 18")
'18'
>>> is_correct(r"so the answer is \\boxed{\\dfrac{3}{4}}.", r"\\frac{3}{4}")
True
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import select
import signal
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

from sblite.protocol import extract_boxed

__all__ = ["DEFAULT_TIMEOUT_S", "MAX_ANSWER_CHARS", "extract_answer", "is_correct", "is_equivalent"]

DEFAULT_TIMEOUT_S = 3.0
#: Answers longer than this are judged by the fast path only: sympy on pages of LaTeX is slow and pointless.
MAX_ANSWER_CHARS = 1000
_CACHE_SIZE = 1 << 16


class _Timeout(BaseException):
    """Raised by the alarm. A BaseException so math-verify's broad ``except Exception`` cannot swallow it."""


# ------------------------------------------------------------------------------------------------ public


def is_equivalent(predicted: str | None, gold: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether ``predicted`` and ``gold`` are the same mathematical answer; never raises.

    None, empty strings and non-strings are never equivalent. A math-verify check that runs past
    ``timeout_s`` seconds counts as not equivalent (and is retried next time rather than cached).

    >>> is_equivalent("1/2", r"\\dfrac{1}{2}"), is_equivalent(r"5 \\text{ cm}", "5")
    (True, True)
    >>> is_equivalent(r"\\left( 3, \\frac{\\pi}{2} \\right)", r"(3, \\frac{\\pi}{2})")
    True
    >>> is_equivalent(None, "3"), is_equivalent("", "3")
    (False, False)
    """
    try:
        if not isinstance(predicted, str) or not isinstance(gold, str):
            return False
        pred, ref = predicted.strip(), gold.strip()
        if not pred or not ref:
            return False
        fast = fast_verdict(pred, ref)
        if fast is not None:
            return fast
        if len(pred) > MAX_ANSWER_CHARS or len(ref) > MAX_ANSWER_CHARS:
            return False
        return _cached_slow_verdict(pred, ref, float(timeout_s))
    except _Timeout:
        return False
    except Exception:  # a checker must never take the training loop down
        return False


def is_correct(completion_text: str, gold: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether the final answer of a free-form completion (``extract_answer``) equals ``gold``.

    >>> is_correct("2 + 3 = 5. The answer is 5.", "5")
    True
    """
    return is_equivalent(extract_answer(completion_text), gold, timeout_s=timeout_s)


_ANSWER_IS_RE = re.compile(r"answer\s*(?:is|:|=)\s*:?\s*([^\n]{1,200})", re.IGNORECASE)
_HASHES_RE = re.compile(r"####\s*([^\n]{1,200})")
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_TAIL_CHARS = 2000  # "the answer is" and "####" count only near the end of the text


def extract_answer(text: str) -> str | None:
    """The final answer of a free-form completion; None when there is none.

    The last brace-matched ``\\boxed{}``, else the last "answer is X" / "#### X" in the final 2,000
    characters, else the last number in the text (commas removed).

    >>> extract_answer(r"first \\boxed{1}, then \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> extract_answer("So the final answer is $42$.")
    '42'
    >>> extract_answer("We get 1,250 apples and 3 pears")
    '3'
    >>> extract_answer("no numbers here") is None
    True
    """
    try:
        if not isinstance(text, str) or not text:
            return None
        boxed = extract_boxed(text)
        if boxed:
            return boxed
        tail = text[-_TAIL_CHARS:]
        hits = [m for rx in (_ANSWER_IS_RE, _HASHES_RE) for m in rx.finditer(tail)]
        if hits:
            raw = max(hits, key=lambda m: m.start()).group(1)
            ans = raw.strip().rstrip(".").strip().strip("$").strip()
            if ans:
                return ans
        numbers = _NUMBER_RE.findall(text)
        return numbers[-1].replace(",", "") if numbers else None
    except Exception:
        return None


# --------------------------------------------------------------------------------------------- fast path

_STRIP_TOKENS = (r"\left", r"\right", r"\!", r"\,", r"\;", r"\:", r"\ ", r"\displaystyle", "$", "~")
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|mathbf)\s*\{([^{}]*)\}")
_SQRT_SHORT_RE = re.compile(r"\\sqrt(\d)")
_DEGREE_RE = re.compile(r"\^\s*\{?\\circ\}?")
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_SLASH_RE = re.compile(r"([+-]?\d+)/(\d+)")
_FRAC_RE = re.compile(r"([+-]?)\\frac\{([+-]?\d+(?:\.\d+)?)\}\{([+-]?\d+(?:\.\d+)?)\}")
_UNIT_WORDS = (
    "dollars|dollar|cents|cent|units|unit|cm|mm|km|m|meters|meter|inches|inch|feet|foot|ft|miles|mile|"
    "hours|hour|minutes|minute|seconds|second|days|day|weeks|week|years|year|degrees|degree|pounds|pound|"
    "kg|g|grams|gram|liters|liter|mph|sq|square|cubic|people|students|pages|points|percent"
)
_TRAILING_UNITS_RE = re.compile(rf"^(.*?\d)\s+(?:(?:{_UNIT_WORDS})\b\.?\s*)+$")


_FRAC_DIGIT_NUM_RE = re.compile(r"\\frac(\d)")
_FRAC_DIGIT_DEN_RE = re.compile(r"(\\frac\{[^{}]*\})(\d)")
_BASE_RE = re.compile(r"([0-9A-Za-z]+)_(?:(\d+)|\{(\d+)\})")
_NEWLINE = "\x00"  # stands in for LaTeX's "\\" while "\ " (a spacing command) is removed


def _normalise(s: str) -> str:
    s = s.replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac").replace("\\\\", _NEWLINE)
    s = s.replace(r"\$", "").replace(r"\%", "%").replace("{,}", ",")
    s = _DEGREE_RE.sub("", s)
    s = _TEXT_RE.sub(lambda m: " " + m.group(1).strip() + " ", s)
    for token in _STRIP_TOKENS:
        s = s.replace(token, "")
    s = s.replace(_NEWLINE, "\\\\").strip().rstrip(".").strip()
    unit = _TRAILING_UNITS_RE.match(s)
    if unit:
        s = unit.group(1)
    s = "".join(s.split())
    s = _FRAC_DIGIT_NUM_RE.sub(r"\\frac{\1}", s)  # \frac59, \frac9{19}, \frac{9}5 → braced
    s = _FRAC_DIGIT_DEN_RE.sub(r"\1{\2}", s)
    return _SQRT_SHORT_RE.sub(r"\\sqrt{\1}", s)


def _as_number(s: str) -> Fraction | None:
    """An exact value for a normalised plain number, decimal, ``a/b`` or ``\\frac{a}{b}``; else None."""
    if len(s) > 64:
        return None
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    try:
        if _DECIMAL_RE.fullmatch(s):
            return Fraction(s)
        m = _SLASH_RE.fullmatch(s)
        if m and int(m.group(2)):
            return Fraction(int(m.group(1)), int(m.group(2)))
        m = _FRAC_RE.fullmatch(s)
        if m and Fraction(m.group(3)):
            value = Fraction(m.group(2)) / Fraction(m.group(3))
            return -value if m.group(1) == "-" else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


def fast_verdict(predicted: str, gold: str) -> bool | None:
    """The cheap verdict: True/False when it is certain, None when math-verify must decide.

    >>> fast_verdict("72.00", "72"), fast_verdict("73", "72"), fast_verdict("x+1", "1+x")
    (True, False, None)
    """
    p, g = _normalise(predicted), _normalise(gold)
    if p == g and p:
        return True
    pb, gb = _BASE_RE.fullmatch(p), _BASE_RE.fullmatch(g)
    if pb and gb:  # "204_5" vs "204_7": math-verify drops the base subscript and calls them equal
        return (pb.group(1).lstrip("0") or "0", pb.group(2) or pb.group(3)) == (
            gb.group(1).lstrip("0") or "0",
            gb.group(2) or gb.group(3),
        )
    percent = "%" in p or "%" in g
    pv, gv = _as_number(p.rstrip("%")), _as_number(g.rstrip("%"))
    if pv is None or gv is None:
        return None
    if pv == gv and not ("%" in p) ^ ("%" in g):
        return True
    if percent:
        return None  # "10%" may mean 0.1: math-verify knows the conventions
    if pv.denominator == 1 and gv.denominator == 1:
        return False
    scale = max(abs(gv), Fraction(1))
    if abs(pv - gv) <= scale * Fraction(1, 10**5):
        return None  # 0.33333 vs 1/3: math-verify rounds floats, let it judge
    return False


# --------------------------------------------------------------------------------------------- slow path


def _quiet_math_verify() -> None:
    # parsing_timeout=None makes math-verify warn once that we must time out ourselves; we do.
    for name in ("math_verify", "math_verify.parser", "math_verify.grader", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _latex_wrap(s: str) -> str:
    return "\\boxed{" + s.replace("$", "") + "}"


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parse_gold(gold: str) -> tuple:
    from math_verify import parse

    _quiet_math_verify()
    return tuple(parse(_latex_wrap(gold), parsing_timeout=None))


def _math_verify_equal(predicted: str, gold: str) -> bool:
    """math-verify's verdict with no timeout of its own (the caller bounds it)."""
    from math_verify import parse, verify

    gold_parsed = list(_parse_gold(gold))
    if not gold_parsed:
        return False
    pred_parsed = parse(_latex_wrap(predicted), parsing_timeout=None)
    if not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_slow_verdict(predicted: str, gold: str, timeout_s: float) -> bool:
    # A _Timeout propagates out, so lru_cache does not store it: a slow answer is retried next time.
    return _bounded(predicted, gold, timeout_s)


def _bounded(predicted: str, gold: str, timeout_s: float) -> bool:
    if timeout_s <= 0 or timeout_s != timeout_s:
        raise _Timeout
    if _alarm_usable():
        return _with_alarm(predicted, gold, timeout_s)
    return _WORKER.check(predicted, gold, timeout_s)


def _alarm_usable() -> bool:
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return False
    # Someone else's alarm is pending (pytest-timeout, an outer math-verify call): do not clobber it.
    return signal.getitimer(signal.ITIMER_REAL)[0] == 0.0


def _raise_timeout(signum, frame):
    raise _Timeout


def _with_alarm(predicted: str, gold: str, timeout_s: float) -> bool:
    old = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return _math_verify_equal(predicted, gold)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class _HelperProcess:
    """One persistent ``python`` child running math-verify, one JSON line in, one verdict line out.

    A plain subprocess (not multiprocessing), so it never re-imports the caller's ``__main__`` and never forks
    a CUDA process. Killed and restarted when a check overruns; a fork of the parent starts its own.
    """

    STARTUP_S = 60.0

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.failed = False  # cannot start a child here: fall back to a waited-on thread

    def check(self, predicted: str, gold: str, timeout_s: float) -> bool:
        if os.getpid() != self._pid:  # we are a fork: the pipes belong to the parent
            self.__init__()
        if self.failed or os.name != "posix":
            return _with_thread(predicted, gold, timeout_s)
        with self._lock:
            try:
                proc = self._ensure()
            except Exception:
                self.failed = True
                return _with_thread(predicted, gold, timeout_s)
            import json

            try:
                proc.stdin.write((json.dumps([predicted, gold]) + "\n").encode())
                proc.stdin.flush()
                reply = self._read_line(proc, timeout_s)
            except (OSError, ValueError):
                reply = None
            if reply is None:
                self._kill()
                raise _Timeout
            return reply == b"1"

    def _ensure(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(
            os.environ,
            OMP_NUM_THREADS="1",
            PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from sblite.verify import _helper_main; _helper_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            bufsize=0,
        )
        if self._read_line(self._proc, self.STARTUP_S) != b"ready":
            self._kill()
            raise RuntimeError("math-verify helper process did not start")
        return self._proc

    @staticmethod
    def _read_line(proc: subprocess.Popen, timeout_s: float) -> bytes | None:
        import time

        fd = proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout_s
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 256)
            if not chunk:
                return None
            buf += chunk
        return buf.strip()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        with self._lock:
            self._kill()


def _helper_main() -> None:
    """The helper process's loop: keep stdout for verdicts only, whatever the libraries print."""
    import json

    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    _quiet_math_verify()
    import math_verify  # noqa: F401  (import before "ready", so the first check is not charged for it)

    out.write(b"ready\n")
    for line in sys.stdin.buffer:
        try:
            predicted, gold = json.loads(line)
            verdict = _math_verify_equal(predicted, gold)
        except Exception:
            verdict = False
        out.write(b"1\n" if verdict else b"0\n")


def _with_thread(predicted: str, gold: str, timeout_s: float) -> bool:
    """Last resort: a daemon thread we stop waiting for (it cannot be killed, but the caller moves on)."""
    result: list[bool] = []

    def run() -> None:
        try:
            result.append(_math_verify_equal(predicted, gold))
        except Exception:
            result.append(False)

    worker = threading.Thread(target=run, daemon=True, name="sblite-verify")
    worker.start()
    worker.join(timeout_s)
    if not result:
        raise _Timeout
    return result[0]


_WORKER = _HelperProcess()
atexit.register(_WORKER.close)


def clear_caches() -> None:
    """Forget cached gold parses and verdicts (benchmarks use it to time a cold start)."""
    _parse_gold.cache_clear()
    _cached_slow_verdict.cache_clear()
