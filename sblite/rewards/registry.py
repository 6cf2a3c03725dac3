"""The one ``REWARDS`` registry (recipe name → reward class) and ``build_reward_funcs`` for a recipe.

Owns the names a recipe's ``reward.funcs`` may use and how each class is built from the ``reward`` section.
Must not: hold reward logic (that is ``batch`` and ``baselines``) or import torch/transformers/trl.
"""

from __future__ import annotations

from typing import Any

from sblite.config import RewardConfig
from sblite.rewards.baselines import (
    AccuracyReward,
    BudgetPenaltyOnlyReward,
    CosineReward,
    FormatReward,
    L1ExactReward,
    PreBOnlyReward,
    SoftOverlongReward,
)
from sblite.rewards.batch import BatchReward, SelfBudgeterReward

__all__ = ["REWARDS", "build_reward_funcs"]

#: Recipe names → reward classes. Each is built as ``cls(config, tokenizer, **kwargs)``.
REWARDS: dict[str, type[BatchReward]] = {
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
) -> list[BatchReward]:
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
