"""Evaluation metrics over per-sample records: accuracy, length, compression and budget adherence.

Pure functions over ``EvalRecord`` lists (no model, no I/O), so every number in ``sblite eval``'s report can
be checked on hand-made records. Zero-division cases (no records, no parsable budgets, no correct answers,
constant budgets) give ``None`` rather than a crash or a made-up 0.

Definitions (``b`` the budget: predicted in ``self`` mode, pre-filled in ``prefill`` mode; ``l`` solution
tokens, counted after ``</budget>`` by ``protocol.count_solution_tokens``):

- accuracy: mean correctness over all samples (pass@1 averaged over ``n_samples``); format rate likewise.
- adherence ±p: share of records with a budget where ``|l - b| <= p * b``; over-run rate: ``l > b``.
- budget MAE / MAPE: mean ``|l - b|`` and mean ``|l - b| / b``.
- slope, R²: ordinary least squares of ``l`` on ``b``; Spearman: rank correlation (average ranks for ties).
- generated tokens ``g``: every token the model wrote, the ``<budget>N</budget>`` tag included (the user
  waits for it); a pre-filled tag was written by the user and is not counted. For a plain-prompted baseline
  ``g = l``.
- compression vs a baseline: ``1 - mean(g) / mean(g_baseline)`` over the question ids both runs answered (the
  headline); ``compression_solution`` is the same on ``l``, the figure that leaves the tag out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EvalRecord:
    """One generated sample and how it scored."""

    qid: str
    sample: int
    correct: bool
    format_ok: bool
    length: int
    budget: int | None = None
    level: int | None = None
    difficulty: float | None = None
    mode: str = "self"
    prefill_budget: int | None = None
    finish_reason: str = "stop"
    answer: str | None = None
    gold: str | None = None
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    generated_tokens: int | None = None  # all tokens the model wrote (None in records older than the field)
    guard_tokens: int = 0  # of those, how many the budget guard wrote (sblite.generate.guard)

    @property
    def generated(self) -> int:
        return self.length if self.generated_tokens is None else self.generated_tokens

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _mean(xs: Sequence[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def ols(xs: Sequence[float], ys: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """Slope, intercept and R² of ``y`` on ``x``; ``(None, None, None)`` when ``x`` is constant or too short.

    >>> ols([1, 2, 3], [2, 4, 6])
    (2.0, 0.0, 1.0)
    """
    n = len(xs)
    if n < 2 or n != len(ys):
        return None, None, None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None, None, None
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    syy = sum((y - my) ** 2 for y in ys)
    r2 = (
        1.0
        if syy == 0
        else 1 - sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True)) / syy
    )
    return slope, intercept, r2


def _ranks(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation with average ranks for ties; None when either side is constant.

    >>> round(spearman([1, 2, 3, 4], [10, 20, 30, 45]), 6)
    1.0
    """
    if len(xs) < 2 or len(xs) != len(ys):
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sx = math.sqrt(sum((r - mx) ** 2 for r in rx))
    sy = math.sqrt(sum((r - my) ** 2 for r in ry))
    if sx == 0 or sy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True)) / (sx * sy)


def summarize(records: Sequence[EvalRecord], baseline: Sequence[EvalRecord] | None = None) -> dict[str, Any]:
    """All metrics for one group of records (see the module docstring for definitions)."""
    n = len(records)
    lengths = [r.length for r in records]
    with_budget = [r for r in records if r.budget is not None and r.budget > 0]
    b = [float(r.budget) for r in with_budget]
    lb = [float(r.length) for r in with_budget]
    gaps = [abs(ll - bb) for ll, bb in zip(lb, b, strict=True)]
    slope, intercept, r2 = ols(b, lb)
    out: dict[str, Any] = {
        "n": n,
        "questions": len({r.qid for r in records}),
        "accuracy": _mean([float(r.correct) for r in records]),
        "format_rate": _mean([float(r.format_ok) for r in records]),
        "mean_tokens": _mean(lengths),
        "median_tokens": statistics.median(lengths) if lengths else None,
        "mean_generated_tokens": _mean([r.generated for r in records]),
        "truncated_rate": _mean([float(r.finish_reason == "length") for r in records]),
        "with_budget": len(with_budget),
        "mean_budget": _mean(b),
        "adherence_10": _mean([float(g <= 0.1 * bb) for g, bb in zip(gaps, b, strict=True)]),
        "adherence_50": _mean([float(g <= 0.5 * bb) for g, bb in zip(gaps, b, strict=True)]),
        "overrun_rate": _mean([float(ll > bb) for ll, bb in zip(lb, b, strict=True)]),
        "budget_mae": _mean(gaps),
        "budget_mape": _mean([g / bb for g, bb in zip(gaps, b, strict=True)]),
        "slope": slope,
        "intercept": intercept,
        "r2": r2,
        "spearman_budget_level": spearman(
            [float(r.budget) for r in with_budget if r.level is not None],
            [float(r.level) for r in with_budget if r.level is not None],
        ),
        "spearman_budget_difficulty": spearman(
            [float(r.budget) for r in with_budget if r.difficulty is not None],
            [float(r.difficulty) for r in with_budget if r.difficulty is not None],
        ),
    }
    if baseline is not None:
        out.update(compression(records, baseline))
    return out


def summary_on(records: Iterable[dict[str, Any]], qids: Iterable[str]) -> dict[str, Any]:
    """``summarize`` over the records (a results.json's ``records``) of the questions ``qids`` only: a baseline
    on the questions a pre-fill sweep ran on, so a frontier plot or an accuracy comparison sets like against like.

    >>> recs = [asdict(EvalRecord(q, 0, q == "a", True, n)) for q, n in (("a", 10), ("b", 30))]
    >>> s = summary_on(recs, {"a"}); s["questions"], s["accuracy"], s["mean_tokens"]
    (1, 1.0, 10.0)
    """
    keep = set(qids)
    return summarize([EvalRecord(**r) for r in records if r["qid"] in keep])


def length_budget(records: Iterable[dict[str, Any]], questions: int) -> int:
    """The pre-filled budget that stands for a baseline's mean length (a results.json's ``records``) on the
    questions a sweep limited to ``questions`` runs on, its first that many: rounded, at least 1. A sweep adds it
    so "beats just asking for brevity" compares at the brief base's own length on the sweep's own questions.

    >>> rec = lambda q, n: {"qid": q, "sample": 0, "correct": False, "format_ok": False, "length": n, "mode": "none"}
    >>> length_budget([rec("a", 20), rec("b", 31), rec("c", 90)], 2), length_budget([rec("a", 0)], 1)
    (26, 1)
    """
    records = list(records)
    first = list(dict.fromkeys(r["qid"] for r in records))[:questions]
    return max(1, round(summary_on(records, first)["mean_generated_tokens"] or 1))


def nearest_prefill(sweep: dict[str, Any], tokens: float) -> tuple[str, dict[str, Any]]:
    """``(budget, summary)`` of the pre-filled budget in a prefill-mode ``summary`` whose mean generated tokens
    are nearest ``tokens``: where a sweep meets a baseline's length ("beats just asking for brevity").

    >>> b, s = nearest_prefill({"by_prefill_budget": {"16": {"mean_generated_tokens": 13.0},
    ...                                               "32": {"mean_generated_tokens": 33.0}}}, 24.7)
    >>> b
    '32'
    """
    by = sweep["by_prefill_budget"]
    b = min(by, key=lambda k: abs((by[k]["mean_generated_tokens"] or 0) - tokens))
    return b, by[b]


def beats_brief(brief: dict[str, Any], sweep: dict[str, Any]) -> dict[str, Any]:
    """The trained model against just asking for brevity: ``brief`` (the brief-prompt base's summary on the
    pre-fill sweep's own questions, ``summary_on``) against the sweep's (``sweep``, a prefill-mode summary)
    pre-filled budget whose length is nearest the brief answers' (``nearest_prefill``). ``beats`` when it is at
    least as accurate there.

    >>> brief = {"questions": 2, "accuracy": 0.5, "mean_generated_tokens": 25.0}
    >>> sweep = {"by_prefill_budget": {"16": {"accuracy": 1.0, "mean_generated_tokens": 13.0},
    ...                                "64": {"accuracy": 1.0, "mean_generated_tokens": 60.0}}}
    >>> beats_brief(brief, sweep)
    {'questions': 2, 'brief_accuracy': 0.5, 'brief_tokens': 25.0, 'budget': 16, 'accuracy': 1.0, 'tokens': 13.0, 'beats': True}
    """
    budget, near = nearest_prefill(sweep, brief["mean_generated_tokens"] or 0)
    return {"questions": brief["questions"], "brief_accuracy": brief["accuracy"],
            "brief_tokens": brief["mean_generated_tokens"], "budget": int(budget), "accuracy": near["accuracy"],
            "tokens": near["mean_generated_tokens"], "beats": (near["accuracy"] or 0) >= (brief["accuracy"] or 0)}  # fmt: skip


def compression(records: Sequence[EvalRecord], baseline: Sequence[EvalRecord]) -> dict[str, Any]:
    """``1 - mean generated tokens / baseline's`` on the questions both runs answered (``compression``, the
    headline), the same on solution tokens (``compression_solution``), and the accuracy delta."""
    base_by_q: dict[str, list[EvalRecord]] = {}
    for r in baseline:
        base_by_q.setdefault(r.qid, []).append(r)
    mine = [r for r in records if r.qid in base_by_q]
    theirs = [r for q in {r.qid for r in mine} for r in base_by_q[q]]

    def ratio(mine_mean: float | None, base_mean: float | None) -> float | None:
        return None if not base_mean or mine_mean is None else 1 - mine_mean / base_mean

    gen_mine, gen_base = _mean([r.generated for r in mine]), _mean([r.generated for r in theirs])
    sol_mine, sol_base = _mean([r.length for r in mine]), _mean([r.length for r in theirs])
    acc_mine = _mean([float(r.correct) for r in mine])
    acc_base = _mean([float(r.correct) for r in theirs])
    return {
        "baseline_questions": len({r.qid for r in mine}),
        "baseline_mean_tokens": sol_base,
        "baseline_mean_generated_tokens": gen_base,
        "compression": ratio(gen_mine, gen_base),
        "compression_solution": ratio(sol_mine, sol_base),
        "baseline_accuracy": acc_base,
        "accuracy_delta": None if acc_mine is None or acc_base is None else acc_mine - acc_base,
    }


def level_bucket(r: EvalRecord) -> str:
    if r.level is not None:
        return f"level {r.level}"
    if r.difficulty is not None:
        lo = min(int(r.difficulty * 5), 4) / 5
        return f"difficulty {lo:.1f}-{lo + 0.2:.1f}"
    return "all"


def group_by(records: Iterable[EvalRecord], key: Callable[[EvalRecord], Any]) -> dict[Any, list[EvalRecord]]:
    groups: dict[Any, list[EvalRecord]] = {}
    for r in records:
        groups.setdefault(key(r), []).append(r)
    return dict(
        sorted(
            groups.items(),
            key=lambda kv: (0, kv[0], "") if isinstance(kv[0], int | float) else (1, 0, str(kv[0])),
        )
    )


def report(records: Sequence[EvalRecord], baseline: Sequence[EvalRecord] | None = None) -> dict[str, Any]:
    """Overall, per level (or difficulty bucket) and, for prefill sweeps, per pre-filled budget."""
    out: dict[str, Any] = {"overall": summarize(records, baseline)}
    out["by_level"] = {k: summarize(v, baseline) for k, v in group_by(records, level_bucket).items()}
    sweep = [r for r in records if r.prefill_budget is not None]
    if sweep:
        out["by_prefill_budget"] = {
            str(k): summarize(v, baseline) for k, v in group_by(sweep, lambda r: r.prefill_budget).items()
        }
    return out
