"""The SelfBudgeter reward (METHOD.md, Phase 2) and the comparison rewards, as pure functions and TRL callables.

GRPO learns only what the reward says, so everything here is small, exact and total: any string a model can
write scores a finite float with a reason, lengths are real tokens of the solution part (the protocol's
``count_solution_tokens``), and correctness goes through ``sblite.verify`` (fast path, cached math-verify,
a timeout that works in worker threads).

Layers, from the inside out:

- scalar cores: ``budget_penalty`` (P_B), ``score_budget`` (PreB), ``alpha_at`` (the tolerance schedule);
- ``score_completion``: one completion → ``RewardBreakdown`` (``total`` plus every component);
- callable classes with TRL's reward signature, one per ``REWARDS`` name, each with a fixed ``__name__`` so
  TRL logs ``rewards/<name>/mean``; ``build_reward_funcs(section, tokenizer)`` builds a recipe's list;
- per-component metrics (format rate, accuracy, budget-penalty rate, PreB, mean budget and length) go to
  TRL's ``log_metric`` when the trainer passes it (TRL >= 1.16), and are always accumulated on the callable
  for ``RewardMetricsCallback`` (older TRL).

>>> cfg = RewardConfig()
>>> r = score_completion("<budget>10</budget><solution>1+1 = \\\\boxed{2}</solution>", "2",
...                      alpha=0.5, solution_tokens=5)
>>> r.format_ok, r.correct, r.budget_penalty, round(r.preb, 4), round(r.total, 4)
(True, True, 0.0, 1.0, 1.0)
>>> score_completion("just 2", "2", alpha=0.5).total  # format failure: r_f
-1.0
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sblite.config import RewardConfig
from sblite.protocol import (
    ParsedCompletion,
    count_solution_tokens,
    encode_completion,
    parse_b_max,
    parse_completion,
    parse_gold,
    prefill,
    solution_text,
    split_prefill,
)
from sblite.verify import is_equivalent

__all__ = [
    "REWARDS",
    "RewardBreakdown",
    "RewardConfig",
    "RewardMetricsCallback",  # noqa: F822 (built on first access, see __getattr__)
    "SelfBudgeterReward",
    "alpha_at",
    "approx_token_count",
    "budget_penalty",
    "build_reward_funcs",
    "score_budget",
    "score_completion",
    "summarize",
]

_DEFAULT = RewardConfig()
METRIC_PREFIX = "sblite/"
log = logging.getLogger(__name__)


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
    return dataclasses.replace(_breakdown(parsed, bool(correct), length, cap, a, cfg), forced_budget=forced_budget)


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


# ---------------------------------------------------------------------------------------- TRL callables

def _content(message: Any) -> str:
    """Text of a plain completion or the last message of a conversational one."""
    if isinstance(message, str):
        return message
    if isinstance(message, Mapping):
        content = message.get("content", "")
        if isinstance(content, str):
            return content
        if isinstance(content, Sequence):  # [{"type": "text", "text": ...}, ...]
            return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        return ""
    if isinstance(message, Sequence) and message:
        return _content(message[-1])
    return ""


def forced_budget_of(prompt: Any) -> int | None:
    """The budget a prompt forced: a text prompt ending in ``prefill(N)`` (``protocol.split_prefill``).

    A conversational prompt whose last message is an assistant pre-fill is refused: TRL renders it with
    ``add_generation_prompt=True`` as a closed turn followed by a fresh one, so the model never sees the
    budget as its own opening — scoring against it would reward a budget the model was not given.
    """
    if isinstance(prompt, str):
        return split_prefill(prompt)[1]
    last = prompt[-1] if isinstance(prompt, Sequence) and prompt else None
    if isinstance(last, Mapping) and last.get("role") == "assistant" and split_prefill(_content(last))[1]:
        raise ValueError(
            "a conversational prompt ends in an assistant pre-fill, which TRL renders as a closed turn; "
            "render the prompt to text with protocol.render_prompt(..., budget=N) instead"
        )
    return None


def _column(columns: Mapping[str, Any], name: str, n: int) -> list[Any]:
    values = columns.get(name)
    if values is None or isinstance(values, str | bytes) or not isinstance(values, Sequence):
        return [values] * n
    values = list(values)
    return values + [None] * (n - len(values)) if len(values) < n else values[:n]


def _golds(columns: Mapping[str, Any], n: int) -> list[str | None]:
    if columns.get("answer") is not None:
        return [
            a if isinstance(a, str) else (parse_gold(a) if a is not None else None)
            for a in _column(columns, "answer", n)
        ]
    # TRL's own convention: a raw `solution` text with the answer in #### or \boxed{}.
    return [parse_gold(s) if s is not None else None for s in _column(columns, "solution", n)]


def _alpha_from_state(trainer_state: Any, config: RewardConfig) -> float:
    if trainer_state is None:
        return alpha_at(0, None, config)
    return alpha_at(
        getattr(trainer_state, "global_step", 0), getattr(trainer_state, "max_steps", None), config
    )


def _solution_tokens_from_ids(ids: Any, tokenizer: Any, forced_budget: int | None) -> int:
    """``count_solution_tokens``, cheaply: after a pre-fill every generated token is a solution token, plus
    the pre-fill's own tokens after ``</budget>``; otherwise ``</budget>`` is looked for in a short prefix
    first (the tag opens the completion), so a 48- or 192-token window is decoded instead of the whole text.
    Raises when the tokenizer fails: a guessed length would be a wrong reward, not a degraded one.
    """
    ids = [int(i) for i in ids]
    special = set(getattr(tokenizer, "all_special_ids", None) or ())
    while ids and ids[-1] in special:
        ids.pop()
    if forced_budget is not None:
        return _prefill_solution_tokens(tokenizer, forced_budget) + len(ids)
    for k in (48, 192):
        if k >= len(ids):
            break
        if ids[k - 1] in special:
            continue
        n = count_solution_tokens(ids[:k], tokenizer)
        if n is not None:
            return n + len(ids) - k
    n = count_solution_tokens(ids, tokenizer)
    return n if n is not None else len(ids)  # no </budget>: a format failure; its length is logged only


def _prefill_solution_tokens(tokenizer: Any, budget: int) -> int:
    """Tokens of ``prefill(budget)`` after ``</budget>`` (``<solution>``'s share of a forced completion)."""
    return count_solution_tokens([], tokenizer, forced_budget=budget) or 0


class _BatchReward:
    """Shared batch logic: texts, golds, b_max, α, token lengths → breakdowns → one float each."""

    __name__ = "sblite_reward"
    logs_components = True

    def __init__(self, config: RewardConfig | None = None, tokenizer: Any = None) -> None:
        self.config = config if config is not None else RewardConfig()
        self.tokenizer = tokenizer
        self.last_metrics: dict[str, float] = {}
        self._sums: dict[str, list[float]] = {}
        self.errors = 0  # completions whose value() raised (scored r_f), over the run
        self._warned = False

    # -- lengths
    def _solution_tokens(self, text: str, ids: Any, forced_budget: int | None) -> int | None:
        """Exact solution tokens; None only without a tokenizer (``score_completion`` then estimates)."""
        tok = self.tokenizer
        if tok is None:
            return None
        if ids is not None:
            return _solution_tokens_from_ids(ids, tok, forced_budget)
        full = prefill(forced_budget) + text if forced_budget is not None else text
        ids = encode_completion(tok, full)
        n = count_solution_tokens(ids, tok)
        return n if n is not None else len(ids)

    def _completion_tokens(self, text: str, ids: Any) -> int:
        if ids is not None:
            return len(ids)
        if self.tokenizer is not None:
            return len(encode_completion(self.tokenizer, text))
        return approx_token_count(text)

    # -- batch
    def breakdowns(
        self,
        prompts: Sequence[Any] | None,
        completions: Sequence[Any],
        completion_ids: Sequence[Any] | None = None,
        trainer_state: Any = None,
        **columns: Any,
    ) -> list[RewardBreakdown]:
        """Score a batch and return the full breakdowns (the callable returns only their values).

        A prompt that ends in ``prefill(N)`` forced N: its completion is scored against N
        (``score_completion(..., forced_budget=N)``), whatever budget the completion writes itself.
        """
        n = len(completions)
        alpha = _alpha_from_state(trainer_state, self.config)
        golds = _golds(columns, n)
        caps = _column(columns, "b_max", n)
        ids_list = list(completion_ids) if completion_ids is not None else [None] * n
        prompts = list(prompts) if prompts is not None else []
        out = []
        for i in range(n):
            raw = _content(completions[i])
            forced = forced_budget_of(prompts[i]) if i < len(prompts) else None
            ids = ids_list[i] if i < len(ids_list) else None
            out.append(
                score_completion(
                    raw,
                    golds[i],
                    b_max=caps[i],
                    alpha=alpha,
                    solution_tokens=self._solution_tokens(raw, ids, forced),
                    config=self.config,
                    forced_budget=forced,
                )
            )
        return out

    def value(self, b: RewardBreakdown, text: str, ids: Any) -> float:
        return b.total

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Any] | None = None,
        trainer_state: Any = None,
        **columns: Any,
    ) -> list[float]:
        log_metric = columns.pop("log_metric", None)
        log_extra = columns.pop("log_extra", None)
        completions = list(completions or [])
        bds = self.breakdowns(prompts, completions, completion_ids, trainer_state, **columns)
        ids_list = list(completion_ids) if completion_ids is not None else [None] * len(bds)
        rewards, errors = [], 0
        for i, b in enumerate(bds):
            try:
                r = float(self.value(b, _content(completions[i]), ids_list[i] if i < len(ids_list) else None))
                if not math.isfinite(r):
                    raise ValueError(f"{self.__name__} returned {r}")
            except Exception:  # scored r_f, counted per step (sblite/reward_errors) and warned once
                errors += 1
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "%s raised on a completion; it is scored r_f=%s and counted in sblite/reward_errors "
                        "(this warning is shown once):\n%s",
                        self.__name__,
                        self.config.r_f,
                        traceback.format_exc(),
                    )
                r = float(self.config.r_f)
            rewards.append(r)
        self.errors += errors
        metrics = summarize(bds) if self.logs_components and bds else {}
        metrics[f"{METRIC_PREFIX}reward_errors/{self.__name__}"] = float(errors)
        self._record(metrics, log_metric)
        if self.logs_components and bds and callable(log_extra):
            log_extra("budget", [b.budget for b in bds])
            log_extra("solution_tokens", [b.length for b in bds])
            log_extra("format", [b.reason for b in bds])
        return rewards

    # -- metrics
    def _record(self, metrics: dict[str, float], log_metric: Any) -> None:
        self.last_metrics = metrics
        for key, val in metrics.items():
            acc = self._sums.setdefault(key, [0.0, 0.0])
            acc[0] += val
            acc[1] += 1
        if callable(log_metric):
            for key, val in metrics.items():
                log_metric(key, val)

    def drain_metrics(self) -> dict[str, float]:
        """Mean of each metric since the last drain (what ``RewardMetricsCallback`` logs), then reset."""
        out = {k: s / c for k, (s, c) in self._sums.items() if c}
        self._sums = {}
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r})"


class SelfBudgeterReward(_BatchReward):
    """The SelfBudgeter reward with TRL's signature; reads the ``answer`` and ``b_max`` columns.

    ``completion_ids`` plus a tokenizer give the exact solution length (tokens after ``</budget>``); α
    follows ``trainer_state`` (``global_step / max_steps``). Plain and conversational completions both work,
    and extra columns are ignored.

    >>> reward = SelfBudgeterReward(RewardConfig(alpha_schedule="constant", alpha_start=0.5))
    >>> reward(prompts=["q"], completions=[[{"role": "assistant",
    ...        "content": "<budget>36</budget><solution>1 + 1 = \\\\boxed{2}</solution>"}]],
    ...        answer=["2"], b_max=[None], level=[1])
    [1.0]
    """

    __name__ = "selfbudgeter_reward"


class FormatReward(_BatchReward):
    """1.0 when the budget format parses, else 0.0."""

    __name__ = "format_reward"
    logs_components = False

    def value(self, b, text, ids):
        return 1.0 if b.format_ok else 0.0


class AccuracyReward(_BatchReward):
    """1.0 when the last ``\\boxed{}`` equals the gold answer (format not required), else 0.0."""

    __name__ = "accuracy_reward"
    logs_components = False

    def value(self, b, text, ids):
        return 1.0 if b.correct else 0.0


class BudgetPenaltyOnlyReward(_BatchReward):
    """Ablation: ``r_f`` on a format failure, else P_B alone."""

    __name__ = "budget_penalty_only_reward"

    def value(self, b, text, ids):
        return b.total if not b.format_ok else b.budget_penalty


class PreBOnlyReward(_BatchReward):
    """Ablation: ``r_f`` on a format failure, else PreB alone (no b_max penalty)."""

    __name__ = "preb_only_reward"

    def value(self, b, text, ids):
        return b.total if not b.format_ok else b.preb


class L1ExactReward(_BatchReward):
    """L1 / LCPO "exact" (Aggarwal & Welleck 2025): ``C - a |b - l|``, the stated budget as the target length,
    ``r_f`` on a format failure. ``a`` = 0.0003 as in L1."""

    __name__ = "l1_exact_reward"

    def __init__(self, config: RewardConfig | None = None, tokenizer: Any = None, *, a: float = 3e-4) -> None:
        super().__init__(config, tokenizer)
        self.a = a

    def value(self, b, text, ids):
        if not b.format_ok:
            return b.total
        return (1.0 if b.correct else 0.0) - self.a * abs(b.budget - b.length)


class CosineReward(_BatchReward):
    """Cosine length scaling by whole-completion tokens (Yeo et al. 2025; TRL's ``get_cosine_scaled_reward``):
    ``v_min + (v_max - v_min)(1 + cos(π min(n, L) / L)) / 2``; correct: short → 1.0, long → 0.5; wrong:
    short → -1.0, long → -0.5. Format is not required."""

    __name__ = "cosine_reward"
    logs_components = False

    def __init__(
        self,
        config: RewardConfig | None = None,
        tokenizer: Any = None,
        *,
        max_len: int = 1024,
        correct_range: tuple[float, float] = (0.5, 1.0),
        wrong_range: tuple[float, float] = (-1.0, -0.5),
    ) -> None:
        super().__init__(config, tokenizer)
        self.max_len = max(int(max_len), 1)
        self.correct_range = tuple(correct_range)
        self.wrong_range = tuple(wrong_range)

    def value(self, b, text, ids):
        n = min(self._completion_tokens(text, ids), self.max_len)
        lo, hi = self.correct_range if b.correct else self.wrong_range[::-1]  # wrong: long is less bad
        return lo + (hi - lo) * (1.0 + math.cos(math.pi * n / self.max_len)) / 2.0


class SoftOverlongReward(_BatchReward):
    """DAPO soft overlong punishment (Yu et al. 2025, eq. 13) on whole-completion tokens: 0 up to
    ``L - cache``, then linear down to -1 at ``L``, and -1 beyond. ``cache`` defaults to 20% of ``L``."""

    __name__ = "soft_overlong_reward"
    logs_components = False

    def __init__(
        self,
        config: RewardConfig | None = None,
        tokenizer: Any = None,
        *,
        max_len: int = 1024,
        cache: int | None = None,
    ) -> None:
        super().__init__(config, tokenizer)
        self.max_len = max(int(max_len), 1)
        self.cache = max(int(cache if cache is not None else round(0.2 * self.max_len)), 1)

    def breakdowns(self, prompts, completions, completion_ids=None, trainer_state=None, **columns):
        # Length only: skip parsing and answer checking entirely.
        n = len(completions)
        return [_LENGTH_ONLY] * n

    def value(self, b, text, ids):
        n = self._completion_tokens(text, ids)
        start = self.max_len - self.cache
        if n <= start:
            return 0.0
        if n <= self.max_len:
            return (start - n) / self.cache
        return -1.0


_LENGTH_ONLY = RewardBreakdown(
    total=0.0,
    format_ok=False,
    correct=False,
    budget=None,
    length=0,
    budget_penalty=0.0,
    preb=0.0,
    reason="n/a",
)

#: Recipe names → reward classes. Each is built as ``cls(config, tokenizer, **kwargs)``.
REWARDS: dict[str, type[_BatchReward]] = {
    "selfbudgeter": SelfBudgeterReward,
    "format": FormatReward,
    "accuracy": AccuracyReward,
    "l1_exact": L1ExactReward,
    "cosine": CosineReward,
    "soft_overlong": SoftOverlongReward,
    "budget_penalty_only": BudgetPenaltyOnlyReward,
    "preb_only": PreBOnlyReward,
}


def build_reward_funcs(
    section: Any, tokenizer: Any = None, *, max_completion_length: int | None = None
) -> list[_BatchReward]:
    """The reward callables of a recipe's ``reward`` section, in ``section.funcs`` order.

    ``section`` is a ``config.RewardSection`` (or any ``RewardConfig`` with ``funcs``); its constants and
    ``alpha_schedule`` configure every reward. ``max_completion_length`` (the GRPO one) sets ``cosine`` and
    ``soft_overlong``'s ``L``. Weights are the trainer's business (``GRPOConfig.reward_weights``).

    >>> from sblite.config import RewardSection
    >>> [f.__name__ for f in build_reward_funcs(RewardSection(funcs=["selfbudgeter", "format"]))]
    ['selfbudgeter_reward', 'format_reward']
    """
    names = list(getattr(section, "funcs", None) or ["selfbudgeter"])
    fields = RewardConfig.model_fields
    config = RewardConfig(**{k: getattr(section, k) for k in fields if hasattr(section, k)})
    funcs = []
    for name in names:
        if name not in REWARDS:
            raise ValueError(f"unknown reward {name!r}; known rewards: {', '.join(REWARDS)}")
        cls = REWARDS[name]
        kwargs = {}
        if cls in (CosineReward, SoftOverlongReward) and max_completion_length:
            kwargs["max_len"] = int(max_completion_length)
        funcs.append(cls(config, tokenizer, **kwargs))
    return funcs


# ------------------------------------------------------------------------------------- metrics callback


def _make_callback_class() -> type:
    from transformers import TrainerCallback

    class RewardMetricsCallback(TrainerCallback):
        """Merges the rewards' component metrics (means since the last log) into the trainer's logs.

        Needed only with a TRL that does not pass ``log_metric`` to reward functions; with one that does,
        the keys are already in the logs and are left alone. Use ``RewardMetricsCallback.attach(trainer,
        funcs)`` so it runs before the reporting callbacks (TensorBoard, W&B, the progress bar) see the logs.
        """

        def __init__(self, reward_funcs: Sequence[Any]) -> None:
            self.reward_funcs = [f for f in reward_funcs if hasattr(f, "drain_metrics")]

        @classmethod
        def attach(cls, trainer: Any, reward_funcs: Sequence[Any]) -> RewardMetricsCallback:
            cb = cls(reward_funcs)
            trainer.callback_handler.callbacks.insert(0, cb)
            return cb

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None:
                return control
            merged: dict[str, list[float]] = {}
            for func in self.reward_funcs:
                for key, val in func.drain_metrics().items():
                    merged.setdefault(key, []).append(val)
            added = {k: sum(v) / len(v) for k, v in merged.items() if k not in logs}
            logs.update(added)
            history = getattr(state, "log_history", None)
            if added and history and history[-1].get("step") == state.global_step:
                history[-1].update({k: v for k, v in added.items() if k not in history[-1]})
            return control

    RewardMetricsCallback.__module__ = __name__
    RewardMetricsCallback.__qualname__ = "RewardMetricsCallback"
    return RewardMetricsCallback


def __getattr__(name: str) -> Any:
    # transformers is imported only when the callback is asked for: `import sblite.rewards` stays light.
    if name == "RewardMetricsCallback":
        cls = _make_callback_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
