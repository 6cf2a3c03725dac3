"""The SelfBudgeter reward (METHOD.md, Phase 2) and the comparison rewards, as pure functions and TRL callables.

GRPO learns only what the reward says, so everything here is small, exact and total: any string a model can
write scores a finite float with a reason, lengths are real tokens of the solution part (the protocol's
``count_solution_tokens``), and correctness goes through ``sblite.verify`` (fast path, cached math-verify,
a timeout that works in worker threads).

Layers, from the inside out, one module each:

- ``scoring``: the scalar cores ``budget_penalty`` (P_B), ``score_budget`` (PreB), ``alpha_at`` (the tolerance
  schedule), and ``score_completion``: one completion → ``RewardBreakdown`` (``total`` plus every component);
- ``batch``: ``BatchReward``, TRL's reward signature over a batch, and ``SelfBudgeterReward``; each reward has a
  fixed ``__name__`` so TRL logs ``rewards/<name>/mean``;
- ``baselines``: the comparison and ablation rewards (format, accuracy, L1, cosine, DAPO overlong, ...);
- ``registry``: ``REWARDS`` (one class per recipe name) and ``build_reward_funcs(section, tokenizer)``.

Per-component metrics (format rate, accuracy, budget-penalty rate, PreB, mean budget and length) go to TRL's
``log_metric`` when the trainer passes it (TRL >= 1.16), and are always accumulated on the callable for
``sblite.train.callbacks.RewardMetricsCallback`` (older TRL).

This package re-exports the public API and must not import torch, transformers or trl: ``import sblite.rewards``
stays light (the tokenizer is passed in; the trainer callback lives in ``sblite.train``).

>>> cfg = RewardConfig()
>>> r = score_completion("<budget>10</budget><solution>1+1 = \\\\boxed{2}</solution>", "2",
...                      alpha=0.5, solution_tokens=5)
>>> r.format_ok, r.correct, r.budget_penalty, round(r.preb, 4), round(r.total, 4)
(True, True, 0.0, 1.0, 1.0)
>>> score_completion("just 2", "2", alpha=0.5).total  # format failure: r_f
-1.0
"""

from __future__ import annotations

from sblite.config import RewardConfig
from sblite.rewards import baselines  # the comparison rewards, also reachable by name through REWARDS
from sblite.rewards.batch import BatchReward, SelfBudgeterReward, forced_budget_of
from sblite.rewards.registry import REWARDS, build_reward_funcs
from sblite.rewards.scoring import (
    METRIC_PREFIX,
    RewardBreakdown,
    alpha_at,
    approx_token_count,
    budget_penalty,
    score_budget,
    score_completion,
    summarize,
)

__all__ = [
    "METRIC_PREFIX",
    "REWARDS",
    "baselines",
    "BatchReward",
    "RewardBreakdown",
    "RewardConfig",
    "SelfBudgeterReward",
    "alpha_at",
    "approx_token_count",
    "budget_penalty",
    "build_reward_funcs",
    "forced_budget_of",
    "score_budget",
    "score_completion",
    "summarize",
]
