"""Benchmark: sblite's SelfBudgeter reward vs TRL's ``accuracy_reward`` on the same 10,000 completions.

    python benchmarks/rewards.py                      # writes benchmarks/results/rewards.{json,md}
    python benchmarks/rewards.py --n 2000 --out /tmp  # a quicker run

The completions are built from the GSM8K-test and MATH-500 gold answers (``../shared/data``): reasoning taken
from the reference solution (its ``\\boxed{}`` unwrapped), then a final ``\\boxed{}`` holding the gold answer
as written, an equivalent form (``\\frac{1}{2}`` / ``0.5`` / ``1/2`` / ``\\dfrac``, ``72.0``, ``\\$72``,
``1,000``, units, spacing), a wrong answer, or a malformed ending (no budget tags, absurd or negative or
fractional budgets, unclosed ``\\boxed{``, text after ``</solution>``, truncation, no answer). Each text
carries the truth of its final answer, known by construction.

Both scorers run in this process on the same texts, in GRPO-sized batches of 64, each timed from cold caches
(sblite's and math-verify's). sblite runs its full reward (format + answer check + token-true length with the
Qwen2 tokenizer from ``completion_ids``); TRL's reward checks the answer only. TRL gets each gold wrapped in
``$…$``: its LaTeX extractor needs delimiters (a bare ``\\left( 3, \\frac{\\pi}{2} \\right)`` parses as 3),
so this is TRL at its best. Every verdict disagreement is listed with the construction truth and a judgement.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import re
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sblite import verify  # noqa: E402
from sblite.protocol import parse_gold, render_completion  # noqa: E402
from sblite.rewards import RewardConfig, SelfBudgeterReward  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SBLITE_SHARED_DATA", REPO.parent / "shared" / "data"))
BATCH = 64

_BOXED_RE = re.compile(r"\\boxed\s*\{")


def unbox(text: str) -> str:
    """Reference reasoning with its ``\\boxed{X}`` turned into ``X`` (the completion boxes its own answer)."""
    out, i = [], 0
    for m in _BOXED_RE.finditer(text):
        if m.start() < i:
            continue
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        out.append(text[i : m.start()] + text[m.end() : j - 1])
        i = j
    out.append(text[i:])
    return "".join(out)


def load_items() -> list[dict]:
    items = []
    for line in (SHARED / "gsm8k" / "test.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        body = re.sub(r"<<[^>]*>>", "", row["answer"].rsplit("####", 1)[0]).strip()
        items.append({"source": "gsm8k", "gold": parse_gold(row["answer"]), "body": body})
    for line in (SHARED / "math" / "math500_test.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        items.append({"source": "math500", "gold": row["answer"], "body": unbox(row["solution"]).strip()})
    return items


# ------------------------------------------------------------------------------------------- answer forms

_INT = re.compile(r"-?\d+")
_FRAC = re.compile(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}")


def equivalent_forms(gold: str) -> list[tuple[str, str]]:
    """(form name, text) pairs equal in value to ``gold``."""
    forms = []
    if _INT.fullmatch(gold):
        n = int(gold)
        forms += [("decimal_.0", f"{n}.0"), ("decimal_.00", f"{n}.00"), ("dollar", f"\\${n}"),
                  ("unit_text", f"{n} \\text{{ units}}"), ("frac_over_1", f"\\frac{{{2 * n}}}{{2}}"),
                  ("math_delims", f"${n}$")]  # fmt: skip
        if abs(n) >= 1000:
            forms.append(("thousands_comma", f"{n:,}"))
        return forms
    m = _FRAC.fullmatch(gold)
    if m:
        sign, a, b = m.group(1), int(m.group(2)), int(m.group(3))
        forms += [("slash", f"{sign}{a}/{b}"), ("dfrac", f"{sign}\\dfrac{{{a}}}{{{b}}}")]
        d = b
        for p in (2, 5):
            while d % p == 0:
                d //= p
        if d == 1:
            exact = Decimal(a) / Decimal(b)  # terminating, so exact: no rounding in the "equivalent" form
            forms.append(("decimal", f"{sign}{exact.normalize():f}"))
        return forms
    if "\\frac" in gold:
        forms.append(("dfrac", gold.replace("\\frac", "\\dfrac")))
    if "\\left" in gold:
        forms.append(("no_left_right", gold.replace("\\left", "").replace("\\right", "")))
    if ", " in gold:
        forms.append(("comma_spacing", gold.replace(", ", ",")))
    if " " in gold:
        forms.append(("no_spaces", gold.replace(" ", "")))
    return forms


def wrong_form(gold: str, rng: random.Random) -> str:
    if _INT.fullmatch(gold):
        return str(int(gold) + rng.choice([1, -1, 10, 2]))
    digits = [i for i, ch in enumerate(gold) if ch.isdigit()]
    if digits:
        i = rng.choice(digits)
        return gold[:i] + str((int(gold[i]) + rng.randint(1, 8)) % 10) + gold[i + 1 :]
    return gold + "+1"


MALFORMED = ["no_tags", "budget_1e30", "budget_negative", "budget_fraction", "unclosed_boxed",
             "text_after_solution", "truncated", "no_answer", "two_budgets", "empty"]  # fmt: skip


def build(items: list[dict], n: int, seed: int = 0) -> list[dict]:
    """``n`` completions with the truth of their final answer (``truth``) and how they were made (``kind``)."""
    rng = random.Random(seed)
    items = rng.sample(items, len(items))  # interleave the sources, so any prefix is a mix
    rows = []
    for k in range(n):
        item = items[k % len(items)]
        gold, body = item["gold"], item["body"]
        approx_len = max(8, len(body) // 4)
        budget = max(1, int(approx_len * rng.uniform(0.6, 1.6)))
        roll = rng.random()
        if roll < 0.30:
            kind, ans, truth = "correct:as_gold", gold, True
        elif roll < 0.58:
            forms = equivalent_forms(gold) or [("as_gold", gold)]
            name, ans = rng.choice(forms)
            kind, truth = f"correct:{name}", True
        elif roll < 0.61:  # a second, final box corrects a first wrong one
            kind, ans, truth = "correct:self_correction", gold, True
            body = body + f"\nAt first I got $\\boxed{{{wrong_form(gold, rng)}}}$, but that is wrong."
        elif roll < 0.83:
            kind, ans, truth = "wrong", wrong_form(gold, rng), False
        else:
            kind, ans, truth = "malformed:" + rng.choice(MALFORMED), gold, True
        solution = f"{body}\nThe final answer is $\\boxed{{{ans}}}$."
        text = render_completion(budget, solution)
        mal = kind.removeprefix("malformed:") if kind.startswith("malformed:") else None
        if mal == "no_tags":
            text = solution
        elif mal == "budget_1e30":
            text = text.replace(f"<budget>{budget}<", "<budget>1" + "0" * 30 + "<", 1)
        elif mal == "budget_negative":
            text = text.replace(f"<budget>{budget}<", "<budget>-5<", 1)
        elif mal == "budget_fraction":
            text = text.replace(f"<budget>{budget}<", "<budget>3.7<", 1)
        elif mal == "unclosed_boxed":
            text = render_completion(budget, f"{body}\nThe final answer is $\\boxed{{{ans}")
            truth = False  # no complete final answer
        elif mal == "text_after_solution":
            text += "\nHope this helps!"
        elif mal == "truncated":
            text = text[: max(20, len(text) // 2)]
            truth = False  # cut before the final answer
        elif mal == "no_answer":
            text = render_completion(budget, body)
            truth = False
        elif mal == "two_budgets":
            text = f"<budget>{budget}</budget>" + text
        elif mal == "empty":
            text, truth = "", False
        b_max = rng.choice([None, budget * 2, max(1, budget // 2)])
        rows.append({"source": item["source"], "gold": gold, "text": text, "kind": kind, "truth": truth,
                     "b_max": b_max, "answer": ans})  # fmt: skip
    return rows


# ----------------------------------------------------------------------------------------------- running


def clear_math_verify_caches() -> None:
    from math_verify import parser

    for name in ("parse_latex_cached", "parse_expr_cached"):
        fn = getattr(parser, name, None)
        if fn is not None and hasattr(fn, "cache_clear"):
            fn.cache_clear()


def run_sblite(rows: list[dict], tokenizer, ids: list[list[int]]) -> tuple[list[bool], list[float], float]:
    reward = SelfBudgeterReward(RewardConfig(), tokenizer)
    verify.clear_caches()
    clear_math_verify_caches()
    correct, totals = [], []
    start = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        chunk = rows[i : i + BATCH]
        bds = reward.breakdowns(
            ["q"] * len(chunk),
            [r["text"] for r in chunk],
            completion_ids=ids[i : i + BATCH],
            answer=[r["gold"] for r in chunk],
            b_max=[r["b_max"] for r in chunk],
        )
        correct += [b.correct for b in bds]
        totals += [b.total for b in bds]
    return correct, totals, time.perf_counter() - start


def run_trl(rows: list[dict]) -> tuple[list[float | None], float]:
    from trl.rewards import accuracy_reward

    clear_math_verify_caches()
    out: list[float | None] = []
    start = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        chunk = rows[i : i + BATCH]
        out += accuracy_reward(
            [[{"role": "assistant", "content": r["text"]}] for r in chunk], [f"${r['gold']}$" for r in chunk]
        )
    return out, time.perf_counter() - start


def judge(row: dict, sb: bool, trl: float | None) -> str:
    """Who is right, from the construction truth, with the reason for the usual cases."""
    if trl is None:
        return "sblite: TRL could not parse the gold and skipped the sample (reward None)"
    kind = row["kind"]
    if sb == row["truth"] and not sb and kind.split(":")[-1] in ("no_answer", "unclosed_boxed", "truncated"):
        return (
            "sblite (by policy): there is no complete \\boxed{} final answer, which the prompt requires; TRL "
            "took a number from the reasoning, defensible for free-form grading but, as a reward, it would pay "
            "the model for dropping the box"
        )
    if sb == row["truth"] and sb:
        return f"sblite: {row['answer']!r} equals the gold {row['gold']!r} by construction; TRL missed it"
    if sb == row["truth"]:
        return "sblite: the final answer is wrong by construction"
    if bool(trl) == row["truth"]:
        return "TRL"
    return "neither"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()
    for name in ("math_verify", "math_verify.parser", "math_verify.grader", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(SHARED / "tokenizers" / "qwen2"))
    rows = build(load_items(), args.n)
    ids = [tokenizer.encode(r["text"], add_special_tokens=False) for r in rows]  # TRL hands these over

    # Imports, and ANTLR's lazily built parser DFA (shared by both: whoever runs first would pay for it),
    # warmed on 1,000 other completions outside the timings.
    warm = build(load_items(), 1000, seed=99)
    run_sblite(warm, tokenizer, [tokenizer.encode(r["text"], add_special_tokens=False) for r in warm])
    run_trl(warm)

    sb_correct, sb_total, sb_s = run_sblite(rows, tokenizer, ids)
    trl_out, trl_s = run_trl(rows)

    agree = sum(bool(t) == s for s, t in zip(sb_correct, trl_out, strict=True) if t is not None)
    skipped = sum(t is None for t in trl_out)
    disagreements = []
    for row, sb, trl in zip(rows, sb_correct, trl_out, strict=True):
        if trl is not None and bool(trl) == sb:
            continue
        disagreements.append({
            "source": row["source"], "kind": row["kind"], "gold": row["gold"], "final_answer": row["answer"],
            "truth": row["truth"], "sblite": sb, "trl": trl, "who_is_right": judge(row, sb, trl),
            "text_tail": row["text"][-160:],
        })  # fmt: skip
    by_kind = Counter(d["kind"] for d in disagreements)
    right = Counter(d["who_is_right"].split(":")[0] for d in disagreements)

    def acc_truth(verdicts: list) -> float:
        return sum(bool(v) == r["truth"] for v, r in zip(verdicts, rows, strict=True)) / len(rows)

    result = {
        "n_completions": len(rows),
        "by_source": dict(Counter(r["source"] for r in rows)),
        "by_kind": dict(sorted(Counter(r["kind"] for r in rows).items())),
        "sblite_seconds": round(sb_s, 3),
        "trl_seconds": round(trl_s, 3),
        "sblite_per_sec": round(len(rows) / sb_s, 1),
        "trl_per_sec": round(len(rows) / trl_s, 1),
        "throughput_ratio": round(trl_s / sb_s, 2),
        "agreement": round(agree / (len(rows) - skipped), 5) if len(rows) > skipped else None,
        "agreement_incl_skipped_as_disagreement": round(agree / len(rows), 5),
        "trl_skipped_gold": skipped,
        "verdict_accuracy_vs_construction_truth": {
            "sblite": round(acc_truth(sb_correct), 5),
            "trl": round(acc_truth([bool(t) if t is not None else False for t in trl_out]), 5),
        },
        "n_disagreements": len(disagreements),
        "disagreements_by_kind": dict(by_kind.most_common()),
        "who_is_right": dict(right.most_common()),
        "sblite_reward_mean": round(sum(sb_total) / len(sb_total), 4),
        "notes": [
            "sblite = SelfBudgeterReward with the Qwen2 tokenizer and completion_ids (format + answer + length);",
            "TRL = trl.rewards.accuracy_reward (answer only), golds wrapped in $...$; same texts, same process,",
            "batches of 64, from cold answer caches after a 1,000-sample warm-up of both (ANTLR's DFA). Truth is known by construction.",
        ],
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "trl": __import__("trl").__version__,
            "math_verify": _version("math-verify"),
        },
        "disagreements": disagreements,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rewards.json").write_text(
        json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (args.out / "rewards.md").write_text(_markdown(result), encoding="utf-8")
    summary = {k: v for k, v in result.items() if k not in ("disagreements", "by_kind", "notes")}
    print(json.dumps(summary, indent=1))


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _markdown(r: dict) -> str:
    lines = [
        "# Reward benchmark: sblite SelfBudgeterReward vs trl.rewards.accuracy_reward",
        "",
        "Made by `python benchmarks/rewards.py` (see its docstring for the method).",
        "",
        "| | sblite | TRL |",
        "| --- | ---: | ---: |",
        f"| seconds for {r['n_completions']:,} completions | {r['sblite_seconds']} | {r['trl_seconds']} |",
        f"| completions / s | {r['sblite_per_sec']} | {r['trl_per_sec']} |",
        f"| verdicts matching the construction truth | {r['verdict_accuracy_vs_construction_truth']['sblite']} | "
        f"{r['verdict_accuracy_vs_construction_truth']['trl']} |",
        "",
        f"Throughput ratio (TRL time / sblite time): **{r['throughput_ratio']}×**. Verdict agreement: "
        f"**{r['agreement']}** ({r['n_disagreements']} disagreements; TRL skipped {r['trl_skipped_gold']} golds).",
        "",
        "Disagreements by kind: " + ", ".join(f"{k} {v}" for k, v in r["disagreements_by_kind"].items()),
        "",
        "Who is right: " + ", ".join(f"{k} {v}" for k, v in r["who_is_right"].items()),
        "",
        "| source | kind | gold | final answer | sblite | TRL | right |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    for d in r["disagreements"]:
        lines.append(
            f"| {d['source']} | {d['kind']} | `{esc(d['gold'])}` | `{esc(d['final_answer'])}` | {d['sblite']} | "
            f"{d['trl']} | {esc(d['who_is_right'])} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
