"""What every benchmark result file shares: the exact command that made it; and the pieces several
benchmarks run the same way (the reproduction's sampled cold start, rendered-arith SFT data, a self-mode +
pre-fill-sweep evaluation).

``write_json(path, result)`` is the only way a benchmark writes its result JSON: it puts ``command`` (the
real ``sys.argv``, the script path made relative to the repository root, behind ``python``) first, so a
figure can always be traced to the run that produced it and re-run as it was.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
#: ``../shared/data`` beside the checkout (GSM8K, SVAMP, …), or ``$SBLITE_SHARED_DATA``
SHARED = Path(os.environ.get("SBLITE_SHARED_DATA", REPO.parent / "shared" / "data"))


def command_line(argv: Sequence[str] | None = None) -> str:
    """``python benchmarks/<script>.py ARGS…`` from ``sys.argv``, quoted so it can be pasted into a shell."""
    args = list(sys.argv if argv is None else argv)
    if not args:
        return "python"
    script = args[0]
    try:
        script = str(Path(script).resolve().relative_to(REPO))
    except (ValueError, OSError):
        pass
    return shlex.join(["python", script, *args[1:]])


def write_json(
    path: str | os.PathLike, result: dict[str, Any], *, indent: int = 2, **dump_kwargs: Any
) -> dict:
    """Write ``result`` with ``command`` (and ``OMP_NUM_THREADS``, and ``LD_PRELOAD`` where set: a malloc such as
    tcmalloc changes CPU timings, as the run saw them) first; returns what was written."""
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    if os.environ.get("LD_PRELOAD"):
        env["LD_PRELOAD"] = os.environ["LD_PRELOAD"]
    out = {
        "command": command_line(),
        "command_env": env,
        **{k: v for k, v in result.items() if k not in ("command", "command_env")},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=indent, **dump_kwargs) + "\n", encoding="utf-8")
    return out


def stage_timer(console) -> tuple[Any, dict[str, float]]:
    """``(timed, timings)``: ``timed(name, fn)`` prints a rule, runs ``fn`` and records its seconds."""
    import time

    timings: dict[str, float] = {}

    def timed(name: str, fn):
        t = time.perf_counter()
        console.rule(f"[bold]{name}")
        value = fn()
        timings[name] = time.perf_counter() - t
        return value

    return timed, timings


def prepare_gsm8k_reference(work: Path, questions: int) -> Path:
    """``work/prepared``: the first ``questions`` GSM8K-train questions with their reference solutions as targets
    (``sblite prepare --labels reference``), budgets in SmolLM2's tokens."""
    from sblite.data.prepare import PrepareOptions, run_prepare

    out = work / "prepared"
    run_prepare(PrepareOptions(dataset=str(SHARED / "gsm8k" / "train.jsonl"), out=str(out), labels="reference",
                               tokenizer="builtin:smollm2-135m", limit=questions, force=True))  # fmt: skip
    return out


def prepare_arith_samples(out: Path, *, limit: int, k: int, max_new_tokens: int, seed: int, styles: Sequence[str],
                          targets: str, console, force: bool = False, renderings: Sequence[str] = (),
                          self_renderings: Sequence[str] = (), stating_questions: int = 0):  # fmt: skip
    """The reproduction's cold-start data: SmolLM2-135M sampled (T=0.8) on the bundled arith questions, with
    ``renderings`` (``data.renderings``) added as pre-filled rows, except ``self_renderings``
    (``data.self_renderings``), added as self rows, also for ``stating_questions`` more questions
    (``data.stating_questions``)."""
    from sblite.data.prepare import PrepareOptions, run_prepare
    from sblite.logs import progress_bars

    with progress_bars(console) as progress:
        return run_prepare(
            PrepareOptions(dataset="arith", out=str(out), labels="sample", model="builtin:smollm2-135m", k=k,
                           temperature=0.8, max_new_tokens=max_new_tokens, batch_size=k * 8, limit=limit, seed=seed,
                           force=force, instruction_in_user=True, targets=targets, styles=tuple(styles),
                           renderings=tuple(renderings), self_renderings=tuple(self_renderings),
                           stating_questions=stating_questions),
            progress=progress,
        )  # fmt: skip


def write_rendered_arith(out: Path, tok, n_train: int, seed: int, levels: Sequence[str], *,
                         prefilled: bool) -> tuple[dict[str, float], int]:  # fmt: skip
    """A prepared directory of ``n_train`` shuffled bundled arith questions, each worked solution rendered at
    ``levels`` (``synthetic.render_solution``, budget = its true length): ordinary SFT rows, or with
    ``prefilled`` pre-filled rows plus the reference rendering as the one ordinary (self-mode) row.
    Returns ``(mean budget per level, SFT rows)``."""
    import random

    from sblite.data.labels import budget_for
    from sblite.data.synthetic import render_solution, write_jsonl

    rows = [json.loads(x) for x in (REPO / "data" / "arith" / "train.jsonl").read_text().splitlines()]
    random.Random(seed).shuffle(rows)
    sft, grpo, lengths = [], [], {v: [] for v in levels}
    for r in rows[:n_train]:
        base = {k: r[k] for k in ("id", "question", "answer", "level")}
        for v in levels:
            budget, completion = budget_for(render_solution(r, v), tok)
            lengths[v].append(budget)
            row = {**base, "id": f"{r['id']}-{v}", "completion": completion, "b_max": budget}
            if not prefilled:
                sft.append(row)
                continue
            sft.append({**row, "prefilled": True})
            if v == "reference":
                sft.append({**row, "id": f"{r['id']}-self"})
        grpo.append({**base, "b_max": None})
    write_jsonl(sft, out / "sft.jsonl")
    write_jsonl(grpo, out / "grpo.jsonl")
    write_jsonl([], out / "rejects.jsonl")
    (out / "report.json").write_text(json.dumps({"read": len(grpo), "kept": len(grpo), "rejected": 0}))
    return {v: sum(x) / len(x) for v, x in lengths.items()}, len(sft)


def eval_self_and_sweep(run_dir: Path, work: Path, n_test: int, budgets: list[int], max_new: int) -> dict:
    """Greedy ``sblite eval`` of a run on ``n_test`` arith-test questions in self mode and with each of
    ``budgets`` pre-filled: per-budget length/adherence/accuracy, the sweep's slope, R², ±50% and accuracy."""
    from sblite.eval.run import EvalOptions, run_eval

    common = dict(model=str(run_dir), dataset="arith-test", limit=n_test, max_new_tokens=max_new, batch_size=16,
                  plots=False)  # fmt: skip
    own = run_eval(EvalOptions(**common, mode="self", out=str(work / "self")))["summary"]["overall"]
    sweep = run_eval(EvalOptions(**common, mode="prefill", budgets=budgets, out=str(work / "sweep")))["summary"]
    keys = ("mean_tokens", "median_tokens", "adherence_50", "accuracy", "format_rate")
    return {
        "self": {k: own.get(k) for k in (*keys, "mean_budget", "slope", "r2", "spearman_budget_level")},
        "prefill": {b: {k: sweep["by_prefill_budget"][str(b)][k] for k in keys} for b in budgets},
        "prefill_slope": sweep["overall"]["slope"],
        "prefill_r2": sweep["overall"]["r2"],
        "prefill_adherence_50": sweep["overall"]["adherence_50"],
        "prefill_accuracy": sweep["overall"]["accuracy"],
    }
