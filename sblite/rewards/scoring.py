"""The reward's arithmetic: scalar cores and the scoring of one completion, pure and total.

Owns ``alpha_at`` (the tolerance schedule), ``budget_penalty`` (P_B), ``score_budget`` (PreB),
``approx_token_count`` (the tokenizer-free length estimate), ``score_completion`` (one completion →
``RewardBreakdown``) and ``summarize`` (a batch of breakdowns → ``sblite/`` metrics). Each formula is stated
in its docstring with a ``>>>`` example.

Must not: import torch/transformers/trl, touch a tokenizer, do I/O or keep state. The budget format is
``sblite.protocol``'s (``parse_completion``, ``prefill``, ``parse_b_max``, ``solution_text``): no tag
parsing or b_max conversion of its own. Correctness goes through ``sblite.verify``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sblite.config import RewardConfig
from sblite.protocol import (
    ParsedCompletion,
    parse_b_max,
    parse_completion,
    parse_gold,
    prefill,
    solution_text,
)
from sblite.verify import is_equivalent

__all__ = [
    "METRIC_PREFIX",
    "RewardBreakdown",
    "alpha_at",
    "approx_token_count",
    "budget_penalty",
    "score_budget",
    "score_completion",
    "summarize",
]

_DEFAULT = RewardConfig()
METRIC_PREFIX = "sblite/"

# ------------------------------------------------------------------------------------------ scalar cores


def alpha_at(step: float | None, total_steps: float | None, config: RewardConfig | None = None) -> float:
    """The tolerance α after ``step`` of ``total_steps`` optimizer steps.

    ``linear``: ``alpha_start - (alpha_start - alpha_end) * step / total_steps``, clamped to
    ``[alpha_end, alpha_start]``; ``constant``: ``alpha_start``. An unknown length (``total_steps`` 0 or None)
    gives ``alpha_start``.

    >>> alpha_at(0, 100), alpha_at(50, 100), alpha_at(100, 100), alpha_at(500, 100), alpha_at(3, None)
    (6.0, 3.05, 0.1, 0.1, 6.0)
    """
    cfg = config or _DEFAULT
    start, end = float(cfg.alpha_start), float(cfg.alpha_end)
    if cfg.alpha_schedule == "constant" or not total_steps or step is None:
        return start
    try:
        progress = min(max(float(step) / float(total_steps), 0.0), 1.0)
    except (TypeError, ValueError, ZeroDivisionError):
        return start
    if progress != progress:
        return start
    value = start - (start - end) * progress
    return min(max(value, min(start, end)), max(start, end))


def budget_penalty(budget: float, b_max: float, config: RewardConfig | None = None) -> float:
    """P_B: ``r_b`` when the stated budget exceeds ``b_max``, else 0 (never a penalty when ``b_max`` is inf).

    >>> budget_penalty(300, 200), budget_penalty(200, 200), budget_penalty(10**6, float("inf"))
    (-0.5, 0.0, 0.0)
    """
    cfg = config or _DEFAULT
    return float(cfg.r_b) if budget > b_max else 0.0


def score_budget(
    length: float, budget: float, alpha: float, correct: bool, config: RewardConfig | None = None
) -> float:
    """PreB: how well a solution of ``length`` tokens honours its ``budget``, with tolerance ``alpha``.

    ``b_best = (1 - α) b`` if correct else ``(1 + α) b``; ``s_min`` when ``|l - b| > α b``, otherwise
    ``s_min + (s_max - s_min) (1 + cos(π |l - b_best| / (2 α b))) / 2``, with ``(s_min, s_max)`` =
    ``(sC_min, sC_max)`` if correct else ``(sW_min, sW_max)``. A budget below 1 counts as 1, and α ≤ 0 (or NaN) as
    the limit α → 0: only ``l = b`` is inside, half way between s_min and s_max (the protocol guarantees
    b ≥ 1 and the schedule α > 0).

    >>> score_budget(90, 100, 0.1, True), score_budget(110, 100, 0.1, False)  # at b_best: s_max
    (1.0, 0.0)
    >>> score_budget(100, 100, 0.1, True), score_budget(200, 100, 0.1, True)  # half way, out of tolerance
    (0.75, 0.5)
    """
    cfg = config or _DEFAULT
    s_min, s_max = (cfg.sC_min, cfg.sC_max) if correct else (cfg.sW_min, cfg.sW_max)
    b = max(float(budget), 1.0)
    a = float(alpha) if alpha == alpha and alpha > 0 else 0.0
    length = float(length)
    if not math.isfinite(length) or abs(length - b) > a * b:
        return float(s_min)
    if a == 0.0:  # the limit α → 0 of the formula at l = b
        return float(s_min + (s_max - s_min) / 2.0)
    b_best = (1.0 - a) * b if correct else (1.0 + a) * b
    x = min(abs(length - b_best) / (2.0 * a * b), 1.0)
    return float(s_min + (s_max - s_min) * (1.0 + math.cos(math.pi * x)) / 2.0)


_APPROX_TOKEN_RE = re.compile(r"\d{1,3}|[^\W\d_]{1,6}|[^\w\s]|_", re.UNICODE)


def approx_token_count(text: str) -> int:
    """A tokenizer-free length estimate: digit runs in groups of 3, letter runs in pieces of up to 6, and
    each other non-space character count one token (how Qwen2/Llama-3 BPEs split numbers, roughly how they
    split words). The fallback when neither ``solution_tokens`` nor a tokenizer is given; typically within
    ±30% of a real BPE count on English maths.

    >>> approx_token_count("So 12345 apples, i.e. x^2!")
    13
    """
    if not isinstance(text, str) or not text:
        return 0
    return sum(1 for _ in _APPROX_TOKEN_RE.finditer(text))


# ----------------------------------------------------------------------------------------- one completion


@dataclass(frozen=True, slots=True)
class RewardBreakdown:
    """Everything ``score_completion`` decided. ``reason`` is ``"ok"`` or the protocol's ``Reason`` value.

    ``budget_penalty`` and ``preb`` are 0.0 when the format fails (the total is then ``r_f``); ``correct`` is
    still measured on the last ``\\boxed{}`` anywhere, so accuracy can be logged for malformed output too.
    """

    total: float
    format_ok: bool
    correct: bool
    budget: int | None
    length: int
    budget_penalty: float
    preb: float
    reason: str
    detail: str = ""
    b_max: float = math.inf
    alpha: float = 0.0
    answer: str | None = None
    forced_budget: int | None = None  # the pre-filled budget the completion was generated after, if any

    @property
    def over_budget(self) -> bool:
        return self.budget_penalty < 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_completion(
    completion: str,
    gold_answer: str | None,
    *,
    b_max: Any = math.inf,
    alpha: float,
    solution_tokens: int | None = None,
    config: RewardConfig | None = None,
    correct: bool | None = None,
    forced_budget: int | None = None,
) -> RewardBreakdown:
    """The SelfBudgeter reward of one completion, with its components; never raises on model output.

    ``R = r_f`` if the ``<budget>INT</budget><solution>…</solution>`` format fails, else
    ``R = P_B(b, b_max) + PreB(l, b, α, C)``. ``solution_tokens`` is ``l``, the token count after
    ``</budget>`` (``protocol.count_solution_tokens``); when None it is estimated with
    ``approx_token_count(solution_text(completion))``. ``correct`` overrides the answer check (for callers that
    already verified). ``b_max`` follows ``protocol.parse_b_max`` (a bad value raises: it is input, not output).

    ``forced_budget`` says the completion was generated after ``prefill(forced_budget)``: it is scored as
    the pre-fill plus the completion, so the budget is the one the model was given, and a second
    ``<budget>`` of its own is a format failure (``r_f``).

    >>> text = "<budget>100</budget><solution>... \\\\boxed{7}</solution>"
    >>> r = score_completion(text, "7", b_max=50, alpha=0.1, solution_tokens=90)
    >>> r.total, r.budget_penalty, r.preb  # correct, at b_best, but budget 100 > b_max 50
    (0.5, -0.5, 1.0)
    >>> score_completion(text, "8", alpha=0.1, solution_tokens=110).total  # wrong, at (1 + α) b
    0.0
    >>> score_completion("<budget>-5</budget><solution>x</solution>", "8", alpha=1.0).reason
    'budget_not_positive'
    >>> r = score_completion("<budget>500</budget><solution>\\\\boxed{7}</solution>", "7", alpha=1.0,
    ...                      forced_budget=20)
    >>> r.total, r.reason, r.budget  # given 20, wrote its own 500: a format failure, not "budget 500"
    (-1.0, 'multiple_budget', None)
    """
    cfg = config or _DEFAULT
    text = completion if isinstance(completion, str) else ""
    if forced_budget is not None:
        text = prefill(forced_budget) + text
    parsed = parse_completion(text)
    cap = parse_b_max(b_max)
    a = float(alpha)
    if correct is None:
        gold = gold_answer if isinstance(gold_answer, str) or gold_answer is None else parse_gold(gold_answer)
        correct = is_equivalent(parsed.answer, gold)
    if (
        solution_tokens is None
        or not isinstance(solution_tokens, int | float)
        or solution_tokens != solution_tokens
    ):
        length = approx_token_count(solution_text(text))
    else:
        length = int(max(min(solution_tokens, 2**62), 0))
    return dataclasses.replace(
        _breakdown(parsed, bool(correct), length, cap, a, cfg), forced_budget=forced_budget
    )


def _breakdown(
    parsed: ParsedCompletion, correct: bool, length: int, cap: float, alpha: float, cfg: RewardConfig
) -> RewardBreakdown:
    common = {"b_max": cap, "alpha": alpha, "answer": parsed.answer, "detail": parsed.detail}
    if not parsed.ok or parsed.budget is None:
        return RewardBreakdown(
            total=float(cfg.r_f),
            format_ok=False,
            correct=correct,
            budget=parsed.budget,
            length=length,
            budget_penalty=0.0,
            preb=0.0,
            reason=parsed.reason or "format",
            **common,
        )
    pb = budget_penalty(parsed.budget, cap, cfg)
    preb = score_budget(length, parsed.budget, alpha, correct, cfg)
    return RewardBreakdown(
        total=pb + preb,
        format_ok=True,
        correct=correct,
        budget=parsed.budget,
        length=length,
        budget_penalty=pb,
        preb=preb,
        reason="ok",
        **common,
    )


def summarize(breakdowns: Sequence[RewardBreakdown]) -> dict[str, float]:
    """Batch metrics, keys prefixed ``sblite/``: ``format_rate``, ``accuracy``, ``length_mean`` and
    ``prefilled_share`` (completions generated after a forced budget) over all completions;
    ``budget_penalty_rate``, ``preb_mean`` and ``budget_mean`` over well-formed ones; ``prefill_abs_err``, the
    mean ``|length - forced budget|`` over forced ones (each absent when there are none); ``alpha``.

    >>> summarize([score_completion("<budget>4</budget><solution>\\\\boxed{1}</solution>", "1",
    ...                             alpha=1.0, solution_tokens=0), score_completion("x", "1", alpha=1.0)])
    ... # doctest: +NORMALIZE_WHITESPACE
    {'sblite/format_rate': 0.5, 'sblite/accuracy': 0.5, 'sblite/length_mean': 0.5, 'sblite/alpha': 1.0,
     'sblite/prefilled_share': 0.0, 'sblite/budget_penalty_rate': 0.0, 'sblite/preb_mean': 1.0,
     'sblite/budget_mean': 4.0}
    """
    n = len(breakdowns)
    if not n:
        return {}
    ok = [b for b in breakdowns if b.format_ok]
    forced = [b for b in breakdowns if b.forced_budget is not None]
    out = {
        "format_rate": len(ok) / n,
        "accuracy": sum(b.correct for b in breakdowns) / n,
        "length_mean": sum(b.length for b in breakdowns) / n,
        "alpha": breakdowns[0].alpha,
        "prefilled_share": len(forced) / n,
    }
    if ok:
        out["budget_penalty_rate"] = sum(b.over_budget for b in ok) / len(ok)
        out["preb_mean"] = sum(b.preb for b in ok) / len(ok)
        out["budget_mean"] = sum(b.budget for b in ok) / len(ok)
    if forced:
        out["prefill_abs_err"] = sum(abs(b.length - b.forced_budget) for b in forced) / len(forced)
    return {METRIC_PREFIX + k: float(v) for k, v in out.items()}
