"""Graded arithmetic word problems: exact answers, five difficulty levels, seeded and regenerable.

    python -m sblite.data.synthetic --out data/arith            # regenerate the bundled files

SelfBudgeter needs data the model can *partly* solve: budgets only mean something when easy questions get
short correct answers and hard ones need more tokens (or fail). A 135M model solves almost nothing of GSM8K,
so the CPU demo and reproduction use these problems instead. Each level adds steps and larger numbers:

    level 1  bare sum of two numbers 1-9                      "What is 3 + 4?"
    level 2  one step word problem, +/- with numbers 1-9      "Ann has 3 pens and gets 4 more…"
    level 3  one step, +/- with numbers 10-99, or × 2-9
    level 4  two steps, +/- with numbers 2-50
    level 5  two steps, × then +/- (numbers up to 12 / 40)

Every row has ``question``, ``answer`` (an integer as text, never negative), ``solution`` (a worked
reference ending in ``\\boxed{answer}``), ``level`` and ``id``. The same seed gives the same file.

This module owns generating these problems (and ``write_prepared``, a tiny prepared directory for tests and
benchmarks); it must not read datasets or load a model (``write_prepared`` takes the tokenizer it counts in).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable
from pathlib import Path

from sblite.data.prepared import GRPO_FILE, REJECTS_FILE, REPORT_FILE, SFT_FILE

NAMES = ["Ann", "Ben", "Cara", "Dan", "Eve", "Finn", "Gia", "Hugo", "Ivy", "Jon", "Kim", "Leo", "Mia", "Noah"]
THINGS = ["apples", "books", "coins", "pens", "cards", "eggs", "stamps", "marbles", "shells", "stickers"]
LEVELS = (1, 2, 3, 4, 5)


def _pick(rng: random.Random) -> tuple[str, str]:
    return rng.choice(NAMES), rng.choice(THINGS)


def _add_or_sub(rng: random.Random, lo: int, hi: int, start: int | None = None) -> tuple[str, int, int, str]:
    """One +/- step on ``start`` (or a fresh number). Returns (phrase, operand, result, op) with result ≥ 0."""
    a = start if start is not None else rng.randint(lo, hi)
    b = rng.randint(lo, hi)
    if rng.random() < 0.5 or b > a:
        return "gets {b} more", b, a + b, "+"
    return "gives away {b}", b, a - b, "-"


_LEVEL1_FORMS = ("What is {a} + {b}?", "What is {a} plus {b}?", "Add {a} and {b}.", "Compute {a} + {b}.")


def level1(rng: random.Random) -> tuple[str, list[str], int]:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return rng.choice(_LEVEL1_FORMS).format(a=a, b=b), [f"{a} + {b} = {a + b}."], a + b


def level2(rng: random.Random) -> tuple[str, list[str], int]:
    name, thing = _pick(rng)
    a = rng.randint(1, 9)
    phrase, b, res, op = _add_or_sub(rng, 1, 9, a)
    q = f"{name} has {a} {thing} and {phrase.format(b=b)}. How many {thing} does {name} have now?"
    return q, [f"{a} {op} {b} = {res}."], res


def level3(rng: random.Random) -> tuple[str, list[str], int]:
    name, thing = _pick(rng)
    if rng.random() < 0.35:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        q = f"{name} has {a} boxes with {b} {thing} in each box. How many {thing} does {name} have?"
        return q, [f"{a} × {b} = {a * b}."], a * b
    a = rng.randint(10, 99)
    phrase, b, res, op = _add_or_sub(rng, 10, 99, a)
    q = f"{name} has {a} {thing} and {phrase.format(b=b)}. How many {thing} does {name} have now?"
    return q, [f"{a} {op} {b} = {res}."], res


def level4(rng: random.Random) -> tuple[str, list[str], int]:
    name, thing = _pick(rng)
    a = rng.randint(2, 50)
    p1, b, r1, o1 = _add_or_sub(rng, 2, 50, a)
    p2, c, r2, o2 = _add_or_sub(rng, 2, 50, r1)
    q = (
        f"{name} has {a} {thing}. {name} {p1.format(b=b)}, then {p2.format(b=c)}. "
        f"How many {thing} does {name} have now?"
    )
    return q, [f"{a} {o1} {b} = {r1}.", f"{r1} {o2} {c} = {r2}."], r2


def level5(rng: random.Random) -> tuple[str, list[str], int]:
    name, thing = _pick(rng)
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    r1 = a * b
    p2, c, r2, o2 = _add_or_sub(rng, 2, 40, r1)
    q = (
        f"{name} buys {a} packs of {thing} with {b} in each pack, and then {p2.format(b=c)}. "
        f"How many {thing} does {name} have?"
    )
    return q, [f"{a} × {b} = {r1}.", f"{r1} {o2} {c} = {r2}."], r2


GENERATORS: dict[int, Callable[[random.Random], tuple[str, list[str], int]]] = {
    1: level1,
    2: level2,
    3: level3,
    4: level4,
    5: level5,
}


def generate(n_per_level: int, *, seed: int = 0, levels=LEVELS, prefix: str = "arith") -> list[dict]:
    """``n_per_level`` distinct problems per level, interleaved by level, deterministic in ``seed``."""
    rng = random.Random(seed)
    seen: set[str] = set()
    by_level: dict[int, list[dict]] = {lv: [] for lv in levels}
    for lv in levels:
        tries = 0
        while len(by_level[lv]) < n_per_level:
            tries += 1
            if tries > 100 * n_per_level:
                raise ValueError(f"level {lv}: cannot find {n_per_level} distinct problems")
            q, steps, ans = GENERATORS[lv](rng)
            if q in seen:
                continue
            seen.add(q)
            solution = " ".join(steps) + f" The answer is \\boxed{{{ans}}}."
            by_level[lv].append({"question": q, "answer": str(ans), "solution": solution, "level": lv})
    rows = [row for group in zip(*by_level.values(), strict=True) for row in group]
    for i, row in enumerate(rows):
        row["id"] = f"{prefix}-{i:05d}"
    return rows


#: How much a rendering of the same worked solution says, shortest first (``render_solution``): from the bare
#: answer (~5 tokens) to every step explained and checked (~100-200), so the lengths of one question's
#: renderings span the budgets a user would pre-fill. ``short`` (one sentence naming the answer) fills the
#: gap between the bare answer (~12 tokens with the solution tags) and the reference (~23-37), where 16 lands.
#: Each level opens with its own first word (the long two by ``OPENINGS``): a budget-reading row
#: (``sft.budget_reading_tokens``) trains only a solution's first few tokens, so two levels that open alike cannot
#: be told apart there. When ``checked`` opened as ``explained`` does, a pre-filled 128 wrote the ~99-token
#: ``explained`` on one-step questions, where ``checked`` (~140) is the nearer; the own opening lifts that only
#: together with reading rows that carry their question (``sft.budget_reading_prompt``), since which level is
#: nearest 128 depends on the question (benchmarks/results/reproduce_cpu_openings.md, _both_fixes.md).
VERBOSITY = ("answer", "short", "reference", "steps", "stated", "explained", "checked")
#: the opening sentence of the two long levels: different from their first word on (see ``VERBOSITY``)
OPENINGS = {
    "explained": "Let me read the problem carefully and work through it one step at a time.",
    "checked": "I will work through the problem one step at a time and then check every step by undoing it.",
}
_OPS = {"+": "add", "-": "take away", "×": "multiply by"}
_UNDO = {"+": "-", "-": "+", "×": "÷"}


_STEP_RE = re.compile(r"(\d+) ([+\-×]) (\d+) = (\d+)\.")
_SOLUTION_RE = re.compile(r"((?:\d+ [+\-×] \d+ = \d+\. )+)The answer is \\boxed\{(\d+)\}\.")


def parse_steps(solution: str) -> list[tuple[str, str, str, str]]:
    """``(a, op, b, result)`` of each step of a worked solution in ``generate``'s format; ``ValueError`` for
    any other text (a solution this module did not write cannot be re-rendered).

    >>> parse_steps("9 + 4 = 13. 13 × 2 = 26. The answer is \\\\boxed{26}.")
    [('9', '+', '4', '13'), ('13', '×', '2', '26')]
    """
    m = _SOLUTION_RE.fullmatch(solution.strip())
    if m is None:
        raise ValueError(
            f"not a worked solution of sblite's arithmetic generator ('a + b = c. … The answer is \\boxed{{c}}.'): "
            f"{solution[:60]!r}"
        )
    return [tuple(x) for x in _STEP_RE.findall(m.group(1))]


def render_solution(row: dict, verbosity: str) -> str:
    """The row's worked solution at one ``VERBOSITY`` level, always ending in ``\\boxed{answer}``: the same
    arithmetic said in ~5 to ~200 tokens, so one question can teach several budget → length pairs.

    >>> row = {"answer": "38", "solution": "5 + 22 = 27. 27 + 11 = 38. The answer is \\\\boxed{38}."}
    >>> render_solution(row, "answer"), render_solution(row, "reference") == row["solution"]
    ('\\\\boxed{38}', True)
    >>> render_solution(row, "short")
    'The answer is \\\\boxed{38}.'
    >>> render_solution(row, "steps")
    'Step 1: 5 + 22 = 27. Step 2: 27 + 11 = 38. So the answer is \\\\boxed{38}.'
    >>> [len(render_solution(row, v)) for v in VERBOSITY] == sorted(len(render_solution(row, v)) for v in VERBOSITY)
    True
    """
    if verbosity not in VERBOSITY:
        raise ValueError(f"verbosity {verbosity!r}: choose one of {', '.join(VERBOSITY)}")
    ans = row["answer"]
    steps = parse_steps(row["solution"])
    if verbosity == "answer":
        return f"\\boxed{{{ans}}}"
    if verbosity == "short":
        return f"The answer is \\boxed{{{ans}}}."
    if verbosity == "reference":
        return row["solution"]
    terse = " ".join(f"Step {i}: {a} {op} {b} = {r}." for i, (a, op, b, r) in enumerate(steps, 1))
    if verbosity == "steps":
        return f"{terse} So the answer is \\boxed{{{ans}}}."
    n = "one step" if len(steps) == 1 else f"{len(steps)} steps"
    if verbosity == "stated":
        return f"This takes {n}. {terse} The final number is {ans}, so the answer is \\boxed{{{ans}}}."
    parts = [OPENINGS[verbosity]]
    for i, (a, op, b, r) in enumerate(steps, 1):
        parts.append(
            f"Step {i}: we start from {a} and {_OPS.get(op, op)} {b}. Computing it, {a} {op} {b} = {r}, "
            f"so after this step the number is {r}."
        )
    if verbosity == "checked":
        for i, (a, op, b, r) in enumerate(steps, 1):
            parts.append(
                f"To check step {i}, I undo it: {r} {_UNDO.get(op, op)} {b} = {a}, which is the number we "
                "started from, so this step is right."
            )
        parts.append(f"Every step checks out, and the last step gives {ans}.")
    parts.append(f"Checking each step again gives the same numbers, so the final result is {ans}.")
    return " ".join(parts) + f" The answer is \\boxed{{{ans}}}."


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_prepared(out: Path, tokenizer, n: int = 16, *, seed: int = 0) -> Path:
    """A small ``sblite prepare``-shaped directory of 1-digit sums, budgets counted in ``tokenizer``'s tokens.

    For tests and benchmarks that need training data without running ``prepare``: every row has an SFT
    target; every fourth GRPO row has ``b_max`` null (no correct sample), as real sample-mode data does.
    """
    from sblite.data.labels import budget_for

    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    sft, grpo = [], []
    for i in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        solution = f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."
        budget, completion = budget_for(solution, tokenizer)
        row = {"id": f"q{i}", "source": "fixture", "question": f"What is {a} + {b}?", "answer": str(a + b),
               "level": 1 + i % 2, "difficulty": 0.1 * (1 + i % 2)}
        sft.append({**row, "completion": completion, "b_max": budget})
        grpo.append({**row, "b_max": budget if i % 4 else None})
    for name, rows in ((SFT_FILE, sft), (GRPO_FILE, grpo), (REJECTS_FILE, [])):
        write_jsonl(rows, out / name)
    (out / REPORT_FILE).write_text(json.dumps({"read": n, "kept": n, "rejected": 0}))
    return out


SPLITS = {"train": (120, 1), "test": (40, 2)}  # rows per level, seed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Regenerate the graded arithmetic problems (train and test).")
    ap.add_argument("--out", default="data/arith")
    args = ap.parse_args(argv)
    out = Path(args.out)
    test = generate(SPLITS["test"][0], seed=SPLITS["test"][1], prefix="arith-test")
    held_out = {r["question"] for r in test}
    train = [
        r
        for r in generate(SPLITS["train"][0] + 20, seed=SPLITS["train"][1], prefix="arith-train")
        if r["question"] not in held_out
    ]
    per_level: dict[int, list[dict]] = {}
    for r in train:
        per_level.setdefault(r["level"], []).append(r)
    train = [
        r for group in zip(*[v[: SPLITS["train"][0]] for v in per_level.values()], strict=True) for r in group
    ]
    write_jsonl(train, out / "train.jsonl")
    write_jsonl(test, out / "test.jsonl")
    print(f"wrote {len(train)} train and {len(test)} test problems to {out}")


if __name__ == "__main__":
    main()
