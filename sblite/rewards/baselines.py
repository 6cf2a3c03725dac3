"""Comparison and ablation rewards, each a ``BatchReward`` with its own ``value`` and a fixed ``__name__``.

Owns ``FormatReward``, ``AccuracyReward`` (the two halves of the usual GRPO recipe), the ablations
``BudgetPenaltyOnlyReward`` and ``PreBOnlyReward`` (one SelfBudgeter term each), and the length rewards of
other papers: ``L1ExactReward`` (L1/LCPO), ``CosineReward`` (cosine length scaling), ``SoftOverlongReward``
(DAPO). The registry that names them for recipes is ``sblite.rewards.registry``.

Must not: import torch/transformers/trl, do I/O, or parse the budget format (every breakdown comes from
``scoring.score_completion`` through ``BatchReward.breakdowns``, which uses ``sblite.protocol``).
"""

from __future__ import annotations

import math
from typing import Any

from sblite.config import RewardConfig
from sblite.rewards.batch import BatchReward
from sblite.rewards.scoring import RewardBreakdown

__all__ = [
    "AccuracyReward",
    "BudgetPenaltyOnlyReward",
    "CosineReward",
    "FormatReward",
    "L1ExactReward",
    "PreBOnlyReward",
    "SoftOverlongReward",
]


class FormatReward(BatchReward):
    """1.0 when the budget format parses, else 0.0."""

    __name__ = "format_reward"
    logs_components = False

    def value(self, b, text, ids):
        return 1.0 if b.format_ok else 0.0


class AccuracyReward(BatchReward):
    """1.0 when the last ``\\boxed{}`` equals the gold answer (format not required), else 0.0."""

    __name__ = "accuracy_reward"
    logs_components = False

    def value(self, b, text, ids):
        return 1.0 if b.correct else 0.0


class BudgetPenaltyOnlyReward(BatchReward):
    """Ablation: ``r_f`` on a format failure, else P_B alone."""

    __name__ = "budget_penalty_only_reward"

    def value(self, b, text, ids):
        return b.total if not b.format_ok else b.budget_penalty


class PreBOnlyReward(BatchReward):
    """Ablation: ``r_f`` on a format failure, else PreB alone (no b_max penalty)."""

    __name__ = "preb_only_reward"

    def value(self, b, text, ids):
        return b.total if not b.format_ok else b.preb


class L1ExactReward(BatchReward):
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


class CosineReward(BatchReward):
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


class SoftOverlongReward(BatchReward):
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
