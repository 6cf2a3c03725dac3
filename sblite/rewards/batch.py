"""The SelfBudgeter reward as a TRL reward function: a batch of completions → one float each.

Owns ``BatchReward`` (TRL's signature ``f(prompts, completions, completion_ids, trainer_state, **columns)``
over ``scoring.score_completion``: reads the ``answer``/``solution`` and ``b_max`` columns, measures solution
tokens from ``completion_ids``, takes α from ``trainer_state``, scores a text prompt ending in
``protocol.prefill(N)`` against N, turns an exception inside ``value`` into ``r_f`` counted in
``sblite/reward_errors/<name>``, and accumulates component metrics for ``train.callbacks.RewardMetricsCallback``),
``SelfBudgeterReward``, and ``forced_budget_of``.

Must not: import torch/transformers/trl (a tokenizer is passed in), print or write files, or parse the budget
format itself: the pre-fill and the solution length go through ``sblite.protocol`` (``split_prefill``,
``prefill``, ``encode_completion``, ``count_solution_tokens``). Its warnings go to the ``sblite.rewards.batch``
logger (a child of ``sblite.rewards``).
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from sblite.config import RewardConfig
from sblite.protocol import count_solution_tokens, encode_completion, parse_gold, prefill, split_prefill
from sblite.rewards.scoring import (
    METRIC_PREFIX,
    RewardBreakdown,
    alpha_at,
    approx_token_count,
    score_completion,
    summarize,
)

__all__ = ["BatchReward", "SelfBudgeterReward", "forced_budget_of"]

log = logging.getLogger(__name__)


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


class BatchReward:
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


class SelfBudgeterReward(BatchReward):
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
