"""Evaluation metrics on hand-made records, including every zero-division case."""

from __future__ import annotations

import pytest

from sblite.eval.metrics import EvalRecord, compression, ols, report, spearman, summarize


def R(qid, length, budget=None, correct=True, level=None, fmt=True, **kw):
    return EvalRecord(
        qid=qid, sample=0, correct=correct, format_ok=fmt, length=length, budget=budget, level=level, **kw
    )


def test_hand_computed_summary():
    recs = [
        R("a", 90, 100, True, 1),  # gap 10: within ±10%, under budget
        R("b", 150, 100, False, 2),  # gap 50: within ±50%, over-run
        R("c", 400, 200, True, 3),  # gap 200: outside ±50%, over-run
        R("d", 30, None, False, 1, fmt=False),  # no budget: counts for accuracy/length only
    ]
    s = summarize(recs)
    assert s["n"] == 4 and s["accuracy"] == 0.5 and s["format_rate"] == 0.75
    assert s["mean_tokens"] == pytest.approx(167.5) and s["median_tokens"] == 120
    assert s["with_budget"] == 3
    assert s["adherence_10"] == pytest.approx(1 / 3) and s["adherence_50"] == pytest.approx(2 / 3)
    assert s["overrun_rate"] == pytest.approx(2 / 3)
    assert s["budget_mae"] == pytest.approx((10 + 50 + 200) / 3)
    assert s["budget_mape"] == pytest.approx((0.1 + 0.5 + 1.0) / 3)
    assert s["spearman_budget_level"] == pytest.approx(spearman([100, 100, 200], [1, 2, 3]))


def test_zero_division_cases_give_none():
    empty = summarize([])
    assert empty["n"] == 0 and empty["accuracy"] is None and empty["mean_tokens"] is None
    no_budgets = summarize([R("a", 10, None, False), R("b", 20, None, False)])
    assert no_budgets["accuracy"] == 0.0  # no correct answers is a real 0, not None
    for key in (
        "adherence_10",
        "adherence_50",
        "budget_mae",
        "budget_mape",
        "slope",
        "r2",
        "spearman_budget_level",
    ):
        assert no_budgets[key] is None, key
    constant = summarize([R("a", 10, 50, level=1), R("b", 20, 50, level=2)])
    assert constant["slope"] is None and constant["spearman_budget_level"] is None


def test_ols_and_spearman():
    assert ols([1, 2, 3, 4], [3, 5, 7, 9]) == pytest.approx((2.0, 1.0, 1.0))
    slope, _, r2 = ols([1, 2, 3], [1, 3, 2])
    assert slope == pytest.approx(0.5) and 0 < r2 < 1
    assert ols([1], [1]) == (None, None, None)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.894427, rel=1e-5)  # ties get average ranks
    assert spearman([1, 2], [5, 5]) is None


def test_compression_uses_only_shared_questions():
    base = [R("a", 200, correct=True), R("b", 100, correct=False), R("z", 1000)]
    mine = [R("a", 50, 60, True), R("b", 50, 60, True), R("new", 10, 20)]
    c = compression(mine, base)
    assert c["baseline_questions"] == 2 and c["baseline_mean_tokens"] == 150
    assert c["compression"] == pytest.approx(1 - 50 / 150)
    assert c["accuracy_delta"] == pytest.approx(0.5)
    assert compression(mine, [])["compression"] is None


def test_report_groups_by_level_and_prefill_budget():
    recs = [
        R("a", 60, 64, level=1, mode="prefill", prefill_budget=64),
        R("a", 120, 128, level=1, mode="prefill", prefill_budget=128),
        R("b", 70, 64, level=2, mode="prefill", prefill_budget=64),
        R("b", 260, 1024, level=2, mode="prefill", prefill_budget=1024),
    ]
    rep = report(recs)
    assert list(rep["by_level"]) == ["level 1", "level 2"]
    assert list(rep["by_prefill_budget"]) == ["64", "128", "1024"]
    assert rep["by_prefill_budget"]["64"]["n"] == 2


def test_difficulty_buckets_when_no_level():
    rep = report([R("a", 10, 10, difficulty=0.05), R("b", 10, 10, difficulty=0.95)])
    assert set(rep["by_level"]) == {"difficulty 0.0-0.2", "difficulty 0.8-1.0"}


@pytest.mark.parametrize(
    ("brief_acc", "by", "budget", "beats"),
    [
        # the pre-fill nearest the brief length decides, not the most accurate one
        (0.5, {"16": (0.25, 14.0), "32": (1.0, 40.0)}, 16, False),
        (0.5, {"16": (0.5, 14.0), "32": (0.0, 40.0)}, 16, True),  # a tie beats: "at least as accurate"
        (0.5, {"16": (0.0, 5.0), "32": (0.75, 30.0)}, 32, True),
        (None, {"16": (None, 20.0)}, 16, True),  # no accuracy on either side: nothing lost
    ],
)
def test_beats_brief_compares_at_the_nearest_prefill(brief_acc, by, budget, beats):
    from sblite.eval.metrics import beats_brief

    brief = {"questions": 4, "accuracy": brief_acc, "mean_generated_tokens": 24.0}
    sweep = {"by_prefill_budget": {b: {"accuracy": a, "mean_generated_tokens": t} for b, (a, t) in by.items()}}
    got = beats_brief(brief, sweep)
    assert (got["budget"], got["beats"]) == (budget, beats)
    assert got["tokens"] == by[str(budget)][1] and got["questions"] == 4
