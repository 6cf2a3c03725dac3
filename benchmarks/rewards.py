"""Benchmark: sblite's SelfBudgeter reward vs TRL's ``accuracy_reward`` on two input sets, cold and warm caches.

    python benchmarks/rewards.py                        # both sets → benchmarks/results/rewards.{json,md}
    python benchmarks/rewards.py --resample             # first re-sample SmolLM2 (two `sblite prepare` runs)
    python benchmarks/rewards.py --n 2000 --out /tmp    # a quicker run

**constructed** (10,000 by default): completions built from the GSM8K-test and MATH-500 gold answers
(``../shared/data``): reasoning taken from the reference solution (its ``\\boxed{}`` unwrapped), then a final
``\\boxed{}`` holding the gold answer as written, an equivalent form (``\\frac{1}{2}`` / ``0.5`` / ``1/2`` /
``\\dfrac``, ``72.0``, ``\\$72``, ``1,000``, units, spacing), a wrong answer, or a malformed ending (no budget
tags, absurd or negative or fractional budgets, unclosed ``\\boxed{``, text after ``</solution>``, truncation,
no answer). Each text carries the truth of its final answer, known by construction. Every verdict
disagreement is listed with the construction truth and a judgement.

**sampled** (inputs sblite's author did not write): completions that SmolLM2-135M-Instruct
(``builtin:smollm2-135m``) sampled under ``sblite prepare --labels sample`` for the first ``--sample-limit``
GSM8K-test and MATH-500 questions (plain and brief styles, ``-k`` each), read from prepare's sample caches with
the gold answers of its ``grpo.jsonl``, duplicates (same gold, same text) removed. They are collected into
``benchmarks/results/reward_samples.json`` (committed, with the prepare commands that made them) so a re-run
needs no sampling; ``--resample`` re-runs the prepare commands (each resumes from its own cache under
``--sample-dir``) and rewrites that file. They are plain answers without budget tags, so sblite's reward
scores them as format failures; the accuracy verdicts (``RewardBreakdown.correct`` vs TRL's) are compared.
There is no construction truth: disagreements are listed with what each side extracted.

Both scorers run in this process on the same texts, in GRPO-sized batches of 64: ``cold`` clears sblite's
verdict caches and math-verify's parse caches first, ``warm`` scores the same texts again straight after.
Each is repeated ``--repeats`` times, alternating which scorer goes first; the figure is the median and the
ratio is TRL seconds / sblite seconds. sblite runs its full reward (format + answer check + token-true length
from ``completion_ids``); TRL's reward checks the answer only. TRL gets each gold wrapped in ``$…$``: its LaTeX
extractor needs delimiters (a bare ``\\left( 3, \\frac{\\pi}{2} \\right)`` parses as 3), so this is TRL at its
best.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import random
import re
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SHARED, write_json  # noqa: E402

from sblite import verify  # noqa: E402
from sblite.protocol import parse_gold, render_completion  # noqa: E402
from sblite.rewards import RewardConfig, SelfBudgeterReward  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
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


# ------------------------------------------------------------------------------- sampled completions (real)

SAMPLE_DATASETS = ("gsm8k-test", "math500")
SAMPLES_FILE = REPO / "benchmarks" / "results" / "reward_samples.json"
SAMPLE_MODEL = "builtin:smollm2-135m"


def prepare_commands(args) -> list[list[str]]:
    """The ``sblite prepare --labels sample`` runs whose caches hold the sampled completions."""
    return [
        [
            "sblite",
            "prepare",
            "--dataset",
            ds,
            "--labels",
            "sample",
            "--model",
            SAMPLE_MODEL,
            "-k",
            str(args.sample_k),
            "--styles",
            args.sample_styles,
            "--limit",
            str(args.sample_limit),
            "--max-new-tokens",
            str(args.sample_max_new_tokens),
            "--instruction-in-user",
            "--seed",
            str(args.sample_seed),
            "--data-dir",
            str(SHARED),
            "--force",
            "--out",
            str(Path(args.sample_dir) / ds),
        ]
        for ds in SAMPLE_DATASETS
    ]


def _sblite_cli() -> list[str]:
    exe = Path(sys.executable).with_name("sblite")
    return [str(exe)] if exe.is_file() else [sys.executable, "-c", "from sblite.cli import app; app()"]


def resample(args) -> Path:
    """Run the prepare commands (each resumes from its own cache), then collect their samples into
    ``args.samples``: one row per distinct (gold, text), with the question's id, style and gold answer."""
    import shlex

    commands = prepare_commands(args)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for cmd in commands:
        print("$ " + shlex.join(cmd), flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(_sblite_cli() + cmd[1:], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(
                f"sblite prepare failed (exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-3000:]}"
            )
        print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    rows, seen, raw, prov = [], set(), 0, {}
    for ds, cmd in zip(SAMPLE_DATASETS, commands, strict=True):
        out = Path(cmd[cmd.index("--out") + 1])
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        p = report["provenance"]
        prov[ds] = {k: p.get(k) for k in ("source", "input_sha256", "model", "engine", "tokenizer", "k",
                                          "temperature", "top_p", "max_new_tokens", "seed", "limit", "styles",
                                          "instruction_in_user", "versions")}  # fmt: skip
        questions = {}
        for line in (out / "grpo.jsonl").read_text(encoding="utf-8").splitlines():
            q = json.loads(line)
            questions[q["id"]] = q
        for style, cache in zip(p["styles"], p["sample_caches"], strict=True):
            for line in Path(cache).read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                q = questions.get(rec["id"])
                if q is None:  # a longer earlier run's question, outside this --limit
                    continue
                for s in rec["samples"]:
                    raw += 1
                    key = (str(q["answer"]), s["text"])
                    if key in seen:
                        continue
                    seen.add(key)
                    rows.append({"source": ds, "id": q["id"], "style": style, "gold": str(q["answer"]),
                                 "b_max": q.get("b_max"), "text": s["text"], "n_tokens": s["n_tokens"],
                                 "finish_reason": s["finish_reason"]})  # fmt: skip
    write_json(
        args.samples,
        {
            "what": f"completions sampled from {SAMPLE_MODEL} by `sblite prepare --labels sample` on GSM8K-test "
            "and MATH-500 questions (../shared/data), with their gold answers; duplicates (same gold and text) "
            "removed. Plain/brief style answers, not budget format.",
            "prepare_commands": [shlex.join(c) for c in commands],
            "prepare_provenance": prov,
            "n_sampled": raw,
            "n_duplicates_removed": raw - len(rows),
            "n_rows": len(rows),
            "rows": rows,
        },
        indent=1,
        ensure_ascii=False,
    )
    print(f"{len(rows)} distinct completions ({raw - len(rows)} duplicates removed) → {args.samples}")
    return Path(args.samples)


# ----------------------------------------------------------------------------------------------- running


def clear_math_verify_caches() -> None:
    from math_verify import parser

    for name in ("parse_latex_cached", "parse_expr_cached"):
        fn = getattr(parser, name, None)
        if fn is not None and hasattr(fn, "cache_clear"):
            fn.cache_clear()


def run_sblite(rows: list[dict], tokenizer, ids: list[list[int]], *, cold: bool = True):
    """(correct, totals, answers, seconds) of sblite's full reward; ``cold`` clears the verdict caches first."""
    reward = SelfBudgeterReward(RewardConfig(), tokenizer)
    if cold:
        verify.clear_caches()
        clear_math_verify_caches()
    correct, totals, answers = [], [], []
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
        answers += [getattr(b, "answer", None) for b in bds]
    return correct, totals, answers, time.perf_counter() - start


def run_trl(rows: list[dict], *, cold: bool = True, log_extra=None) -> tuple[list[float | None], float]:
    from trl.rewards import accuracy_reward

    if cold:
        clear_math_verify_caches()
    out: list[float | None] = []
    start = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        chunk = rows[i : i + BATCH]
        out += accuracy_reward(
            [[{"role": "assistant", "content": r["text"]}] for r in chunk],
            [f"${r['gold']}$" for r in chunk],
            log_extra=log_extra,
        )
    return out, time.perf_counter() - start


def timed(rows: list[dict], tokenizer, ids, repeats: int) -> dict:
    """Cold (caches cleared) then warm (the same texts again) passes of both scorers, ``repeats`` times,
    alternating which scorer goes first; medians and the ratio TRL time / sblite time for each."""
    import statistics

    t = {"sblite_cold": [], "sblite_warm": [], "trl_cold": [], "trl_warm": []}
    for rep in range(repeats):
        order = ("sblite", "trl") if rep % 2 == 0 else ("trl", "sblite")
        for who in order:
            for mode in ("cold", "warm"):
                if who == "sblite":
                    s = run_sblite(rows, tokenizer, ids, cold=mode == "cold")[-1]
                else:
                    s = run_trl(rows, cold=mode == "cold")[-1]
                t[f"{who}_{mode}"].append(s)
    med = {k: statistics.median(v) for k, v in t.items()}
    n = len(rows)
    return {
        "repeats": repeats,
        "seconds_median": {k: round(v, 4) for k, v in med.items()},
        "per_sec": {k: round(n / v, 1) for k, v in med.items()},
        "ratio_trl_time_over_sblite_time": {
            "cold": round(med["trl_cold"] / med["sblite_cold"], 2),
            "warm": round(med["trl_warm"] / med["sblite_warm"], 2),
        },
        "seconds_all": {k: [round(x, 4) for x in v] for k, v in t.items()},
    }


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


def constructed_section(tokenizer, n: int, repeats: int) -> dict:
    rows = build(load_items(), n)
    ids = [tokenizer.encode(r["text"], add_special_tokens=False) for r in rows]  # TRL hands these over
    sb_correct, sb_total, _, _ = run_sblite(rows, tokenizer, ids)
    trl_out, _ = run_trl(rows)
    timing = timed(rows, tokenizer, ids, repeats)

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

    return {
        "what": "completions built from GSM8K-test and MATH-500 gold answers and reference solutions (equivalent "
        "forms, wrong answers, malformed endings); truth known by construction",
        "n_completions": len(rows),
        "by_source": dict(Counter(r["source"] for r in rows)),
        "by_kind": dict(sorted(Counter(r["kind"] for r in rows).items())),
        "timing": timing,
        "throughput_ratio": timing["ratio_trl_time_over_sblite_time"]["cold"],
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
        "disagreements": disagreements,
    }


_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def sampled_kind(text: str, finish_reason: str) -> str:
    """A mechanical description of a sampled completion's ending (no judgement of its content)."""
    boxed = "boxed" if _BOX.search(text) else "no_boxed"
    return f"{boxed}:{'truncated' if finish_reason == 'length' else 'stopped'}"


def sampled_section(tokenizer, samples_path: Path, repeats: int) -> dict:
    data = json.loads(samples_path.read_text(encoding="utf-8"))
    rows = data["rows"]
    ids = [tokenizer.encode(r["text"], add_special_tokens=False) for r in rows]
    sb_correct, sb_total, sb_answers, _ = run_sblite(rows, tokenizer, ids)
    trl_out, _ = run_trl(rows)
    timing = timed(rows, tokenizer, ids, repeats)

    kinds = [sampled_kind(r["text"], r["finish_reason"]) for r in rows]
    skipped = sum(t is None for t in trl_out)
    agree = sum(bool(t) == s for s, t in zip(sb_correct, trl_out, strict=True) if t is not None)
    dis_idx = [
        i for i, (s, t) in enumerate(zip(sb_correct, trl_out, strict=True)) if t is None or bool(t) != s
    ]
    # What TRL extracted, for the disagreements only (a separate, untimed pass through its log_extra hook).
    extracted: dict[str, list] = {}
    if dis_idx:
        run_trl([rows[i] for i in dis_idx], log_extra=lambda k, v: extracted.setdefault(k, []).extend(v))
    trl_answers = (
        extracted.get("answer_parsed") or extracted.get("answer_parsed_strs") or [None] * len(dis_idx)
    )
    disagreements = []
    for j, i in enumerate(dis_idx):
        r = rows[i]
        disagreements.append({
            "source": r["source"], "id": r["id"], "style": r["style"], "gold": r["gold"], "kind": kinds[i],
            "sblite": sb_correct[i], "sblite_answer": sb_answers[i], "trl": trl_out[i],
            "trl_answer": trl_answers[j] if j < len(trl_answers) else None, "text_tail": r["text"][-240:],
        })  # fmt: skip

    def rate(xs) -> float:
        return round(sum(bool(x) for x in xs) / len(xs), 4) if xs else 0.0

    by_kind = Counter(kinds)
    # Cross-check, untimed: the free-form verifier `sblite prepare` labels with (verify.is_correct: last
    # "answer is" / number, no box needed). It is not a reward; the rows it accepts show what both rewards
    # refuse for want of a \boxed{} final answer.
    lenient = []
    for i, r in enumerate(rows):
        if verify.is_correct(r["text"].strip(), r["gold"]):
            lenient.append({
                "source": r["source"], "id": r["id"], "style": r["style"], "gold": r["gold"],
                "finish_reason": r["finish_reason"], "kind": kinds[i], "sblite_reward_correct": sb_correct[i],
                "trl": trl_out[i], "text_tail": r["text"][-160:],
            })  # fmt: skip
    return {
        "what": data.get("what"),
        "samples_file": str(samples_path.relative_to(REPO))
        if samples_path.is_relative_to(REPO)
        else str(samples_path),
        "samples_sha256": hashlib.sha256(samples_path.read_bytes()).hexdigest(),
        "samples_made_by": data.get("command"),
        "prepare_commands": data.get("prepare_commands"),
        "n_completions": len(rows),
        "n_duplicates_removed": data.get("n_duplicates_removed"),
        "by_source": dict(Counter(r["source"] for r in rows)),
        "by_style": dict(Counter(r["style"] for r in rows)),
        "by_kind": dict(sorted(by_kind.items())),
        "timing": timing,
        "ratio_trl_time_over_sblite_time": timing["ratio_trl_time_over_sblite_time"],
        "accuracy": {"sblite": rate(sb_correct), "trl": rate(trl_out)},
        "accuracy_by_source": {
            src: {
                "sblite": rate([c for c, r in zip(sb_correct, rows, strict=True) if r["source"] == src]),
                "trl": rate([t for t, r in zip(trl_out, rows, strict=True) if r["source"] == src]),
            }
            for src in sorted({r["source"] for r in rows})
        },
        "sblite_format_ok": sum(t != RewardConfig().r_f for t in sb_total),
        "sblite_reward_mean": round(sum(sb_total) / len(sb_total), 4),
        "agreement": round(agree / (len(rows) - skipped), 5) if len(rows) > skipped else None,
        "trl_skipped_gold": skipped,
        "n_disagreements": len(disagreements),
        "disagreements_by_kind": dict(Counter(d["kind"] for d in disagreements).most_common()),
        "disagreements_by_direction": dict(
            Counter(
                "sblite correct, TRL not" if d["sblite"] else "TRL correct, sblite not" for d in disagreements
            ).most_common()
        ),
        "disagreements": disagreements,
        "prepare_verifier_correct": {
            "n": len(lenient),
            "n_finished": sum(x["finish_reason"] == "stop" for x in lenient),
            "rows": lenient,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", default="constructed,sampled", help="comma-separated: constructed, sampled")
    ap.add_argument("--n", type=int, default=10_000, help="constructed completions")
    ap.add_argument("--repeats", type=int, default=3, help="timed cold+warm passes per scorer")
    ap.add_argument("--samples", type=Path, default=SAMPLES_FILE, help="sampled completions (JSON)")
    ap.add_argument("--resample", action="store_true", help="run `sblite prepare --labels sample` first")
    ap.add_argument("--sample-dir", default="/tmp/sblite-reward-samples")
    ap.add_argument("--sample-limit", type=int, default=40)
    ap.add_argument("--sample-k", type=int, default=2)
    ap.add_argument("--sample-styles", default="plain,brief")
    ap.add_argument("--sample-max-new-tokens", type=int, default=128)
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()
    inputs = [x.strip() for x in args.inputs.split(",") if x.strip()]
    if unknown := set(inputs) - {"constructed", "sampled"}:
        ap.error(f"--inputs: unknown {', '.join(sorted(unknown))}")
    for name in ("math_verify", "math_verify.parser", "math_verify.grader", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if args.resample:
        resample(args)

    from transformers import AutoTokenizer

    # Imports, and ANTLR's lazily built parser DFA (shared by both: whoever runs first would pay for it),
    # warmed on 1,000 constructed completions (another seed) outside the timings.
    qwen = AutoTokenizer.from_pretrained(str(SHARED / "tokenizers" / "qwen2"))
    warm = build(load_items(), 1000, seed=99)
    run_sblite(warm, qwen, [qwen.encode(r["text"], add_special_tokens=False) for r in warm])
    run_trl(warm)

    result: dict = {"benchmark": "rewards"}
    if "constructed" in inputs:
        result["constructed"] = constructed_section(qwen, args.n, args.repeats)
    if "sampled" in inputs:
        from sblite.models import resolve_model

        smol = AutoTokenizer.from_pretrained(str(resolve_model(SAMPLE_MODEL)))  # the sampled model's tokens
        result["sampled"] = sampled_section(smol, args.samples, args.repeats)
    result["notes"] = [
        "sblite = SelfBudgeterReward (format + answer + length; token counts from completion_ids: Qwen2 "
        "tokenizer for constructed, SmolLM2's for sampled); TRL = trl.rewards.accuracy_reward (answer only), "
        "golds wrapped in $...$; same texts, same process, batches of 64.",
        "cold: sblite's verdict caches and math-verify's parse caches cleared before the pass; warm: the same "
        "texts again right after, caches kept. ANTLR's parser DFA is warmed for both beforehand on 1,000 other "
        "completions. Ratio = TRL seconds / sblite seconds (median over repeats).",
        "sampled: no construction truth; disagreements are listed with each side's extracted answer.",
    ]
    result["environment"] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "trl": __import__("trl").__version__,
        "math_verify": _version("math-verify"),
    }
    written = write_json(args.out / "rewards.json", result, indent=1, ensure_ascii=False)
    (args.out / "rewards.md").write_text(_markdown(written), encoding="utf-8")
    for name in ("constructed", "sampled"):
        if name in result:
            sec = result[name]
            r = sec["timing"]["ratio_trl_time_over_sblite_time"]
            print(
                f"{name}: {sec['n_completions']} completions; TRL time / sblite time: cold {r['cold']}×, warm "
                f"{r['warm']}×; agreement {sec['agreement']}, {sec['n_disagreements']} disagreements"
            )
    print(f"→ {args.out / 'rewards.json'}, {args.out / 'rewards.md'}")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _markdown(r: dict) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [
        "# Reward benchmark: sblite SelfBudgeterReward vs trl.rewards.accuracy_reward",
        "",
        f"Made by `{r['command']}` (see its docstring for the method).",
        "",
    ]
    for name in ("constructed", "sampled"):
        if name not in r:
            continue
        s = r[name]
        t = s["timing"]
        lines += [
            f"## {name} completions ({s['n_completions']:,})",
            "",
            s.get("what") or "",
            "",
            "| | sblite | TRL | TRL time / sblite time |",
            "| --- | ---: | ---: | ---: |",
            f"| seconds, cold caches (median of {t['repeats']}) | {t['seconds_median']['sblite_cold']} | "
            f"{t['seconds_median']['trl_cold']} | **{t['ratio_trl_time_over_sblite_time']['cold']}×** |",
            f"| seconds, warm caches (median of {t['repeats']}) | {t['seconds_median']['sblite_warm']} | "
            f"{t['seconds_median']['trl_warm']} | **{t['ratio_trl_time_over_sblite_time']['warm']}×** |",
            f"| completions / s, cold | {t['per_sec']['sblite_cold']} | {t['per_sec']['trl_cold']} | |",
        ]
        if name == "constructed":
            v = s["verdict_accuracy_vs_construction_truth"]
            lines += [
                f"| verdicts matching the construction truth | {v['sblite']} | {v['trl']} | |",
                "",
                f"Verdict agreement: **{s['agreement']}** ({s['n_disagreements']} disagreements; TRL skipped "
                f"{s['trl_skipped_gold']} golds).",
                "",
                "Disagreements by kind: "
                + ", ".join(f"{k} {v}" for k, v in s["disagreements_by_kind"].items()),
                "",
                "Who is right: " + ", ".join(f"{k} {v}" for k, v in s["who_is_right"].items()),
                "",
                "| source | kind | gold | final answer | sblite | TRL | right |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            for d in s["disagreements"]:
                lines.append(
                    f"| {d['source']} | {d['kind']} | `{esc(d['gold'])}` | `{esc(d['final_answer'])}` | "
                    f"{d['sblite']} | {d['trl']} | {esc(d['who_is_right'])} |"
                )
        else:
            a = s["accuracy"]
            lines += [
                f"| answers judged correct | {a['sblite']} | {a['trl']} | |",
                "",
                f"Samples: `{s['samples_file']}` (sha256 {s['samples_sha256'][:12]}…), made by "
                f"`{s['samples_made_by']}`, which ran:",
                "",
                *[f"    {c}" for c in s["prepare_commands"] or []],
                "",
                f"{s['n_duplicates_removed']} duplicates removed. By source: "
                + ", ".join(f"{k} {v}" for k, v in s["by_source"].items())
                + "; by ending: "
                + ", ".join(f"{k} {v}" for k, v in s["by_kind"].items())
                + f". sblite format ok: {s['sblite_format_ok']} (plain answers have no budget tags).",
                "",
                f"Verdict agreement: **{s['agreement']}** ({s['n_disagreements']} disagreements"
                + (
                    ": "
                    + ", ".join(f"{k} {v}" for k, v in s["disagreements_by_direction"].items())
                    + "; by ending: "
                    + ", ".join(f"{k} {v}" for k, v in s["disagreements_by_kind"].items())
                    if s["disagreements"]
                    else ""
                )
                + ").",
                "",
                f"`sblite prepare`'s free-form labelling verifier (`verify.is_correct`, no box needed) accepts "
                f"{s['prepare_verifier_correct']['n']} of these ({s['prepare_verifier_correct']['n_finished']} "
                "finished, the ones prepare may use as SFT targets); both rewards need a `\\boxed{}` answer:",
                "",
                "| source | id | ending | gold | reward (sblite) | TRL | text (end) |",
                "| --- | --- | --- | --- | --- | --- | --- |",
                *[
                    f"| {x['source']} | {x['id']} | {x['kind']} | `{esc(x['gold'])}` | {x['sblite_reward_correct']} | "
                    f"{x['trl']} | {esc(x['text_tail'][-120:])} |"
                    for x in s["prepare_verifier_correct"]["rows"]
                ],
                "",
            ]
            if s["disagreements"]:
                lines += [
                    "Disagreements:",
                    "",
                    "| source | id | ending | gold | sblite answer | TRL answer | sblite | TRL | text (end) |",
                    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
                ]
            for d in s["disagreements"]:
                lines.append(
                    f"| {d['source']} | {d['id']} | {d['kind']} | `{esc(d['gold'])}` | `{esc(d['sblite_answer'])}` | "
                    f"`{esc(d['trl_answer'])}` | {d['sblite']} | {d['trl']} | {esc(d['text_tail'][-120:])} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
