"""Does giving the budget-stating rows a ``length`` of their own (``sft.budget_stating_length: own``, 1.57× fewer
SFT tokens: sft_padding.json) change what the cold start learns? SFT only, on one prepared cold start, per
grouping and seed.

    OMP_NUM_THREADS=1 python benchmarks/stating_batching.py run --grouping per-kind --seed 43 \
        --prepared /tmp/demo-c3/prepared --recipe /tmp/demo-c4/run/recipe.resolved.yaml --work /tmp/e-c4-43
    python benchmarks/stating_batching.py collect /tmp/e-*/res.json        # the table: JSON + markdown

``run`` trains the recipe's SFT stage (``stages=[sft]``, ``sft.seed=--seed``) on ``--prepared`` with the
``length`` column grouped one of three ways under ``group_by_length``:

- ``one-shared``: ``sft.budget_stating_length: reading`` (the default): the reading and the stating rows under
  one shared length, so they share batches and every reading row is padded to a prompt's length;
- ``per-kind``: ``sft.budget_stating_length: own``: one shared length for the reading rows, another for the
  stating rows;
- ``stating-own``: the stating rows at their own true length (the reading rows shared; not a recipe setting).

then evaluates the SFT adapter as the demo does: self mode on the first ``--eval-questions`` arith-test
questions, and the pre-fill sweep 8/16/32/64/128 on the first ``--sweep-questions``, greedy, ``--max-new-tokens``.
Writes ``WORK/res.json``. ``collect`` puts res.json files side by side (per grouping: each seed, and the mean).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_json  # noqa: E402

GROUPINGS = ("per-kind", "one-shared", "stating-own")
BUDGETS = [8, 16, 32, 64, 128]


#: the recipe's sft.budget_stating_length for each grouping
STATING_LENGTH = {"one-shared": "reading", "per-kind": "own", "stating-own": "own"}


def _true_length_stating_rows() -> None:
    """``stating-own``: ``build_sft_dataset`` gives each stating row its own true length."""
    import sblite.train.datasets as D

    own = D.shared_lengths
    D.shared_lengths = lambda examples: own(
        [{**e, D.LENGTH_COLUMN: len(e["input_ids"])} if e[D.LENGTH_COLUMN] == D.STATING else e for e in examples]
    )


def run(args) -> dict:
    if args.grouping == "stating-own":
        _true_length_stating_rows()
    from sblite.eval.run import EvalOptions, run_eval
    from sblite.recipes import load_recipe
    from sblite.train.run import run_training

    work = Path(args.work)
    cfg = load_recipe(args.recipe, ["stages=[sft]", f"output_dir={work / 'run'}", f"data.path={args.prepared}",
                                    f"sft.seed={args.seed}", f"sft.budget_stating_length={STATING_LENGTH[args.grouping]}"])  # fmt: skip
    run_training(cfg)
    common = dict(model=str(work / "run"), stage="sft", dataset="arith-test", max_new_tokens=args.max_new_tokens,
                  batch_size=80, seed=0)  # fmt: skip
    own = run_eval(EvalOptions(**common, out=str(work / "self"), mode="self", limit=args.eval_questions))
    sweep = run_eval(EvalOptions(**common, out=str(work / "sweep"), mode="prefill", limit=args.sweep_questions,
                                 budgets=BUDGETS))["summary"]  # fmt: skip
    s = own["summary"]["overall"]
    res = {"grouping": args.grouping, "seed": args.seed, "accuracy": s["accuracy"], "adherence_50": s["adherence_50"],
           "spearman_budget_level": s["spearman_budget_level"],
           "stated_budgets": sorted({r["budget"] for r in own["records"] if r.get("budget") is not None}),
           "sweep_tokens": {b: v["mean_tokens"] for b, v in sweep["by_prefill_budget"].items()},
           "sweep": {k: sweep["overall"][k] for k in ("slope", "r2", "adherence_50", "accuracy")}}  # fmt: skip
    (work / "res.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res))
    return res


def collect(args) -> dict:
    rows = [json.loads(Path(f).read_text()) for f in args.files]
    table = {}
    for g in GROUPINGS:
        mine = sorted((r for r in rows if r["grouping"] == g), key=lambda r: r["seed"])
        if mine:
            mean = {k: round(statistics.mean(r[k] for r in mine), 3)
                    for k in ("accuracy", "adherence_50", "spearman_budget_level")}  # fmt: skip
            swept = [r["sweep"]["slope"] for r in mine if r.get("sweep")]
            mean["sweep_slope"] = round(statistics.mean(swept), 3) if swept else None
            table[g] = {"seeds": mine, "mean": mean}
    lines = ["| grouping | seed | acc (self) | own ±50% | ρ(budget, level) | budgets stated | pre-fill 8/16/32/64/128 "
             "(tokens) | slope (R²) | pre-fill ±50% |", "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |"]
    for g, t in table.items():
        for r in t["seeds"]:
            sw = r.get("sweep")  # None: a demo's SFT eval, self mode only
            toks = "/".join(f"{r['sweep_tokens'][str(b)]:.0f}" for b in BUDGETS) if sw else "—"
            fit = f"{sw['slope']:.2f} ({sw['r2']:.2f}) | {sw['adherence_50']:.0%}" if sw else "— | —"
            lines.append(f"| {g} | {r['seed']} | {r['accuracy']:.0%} | {r['adherence_50']:.0%} | "
                         f"{r['spearman_budget_level']:.2f} | {', '.join(map(str, r['stated_budgets']))} | {toks} | "
                         f"{fit} |")  # fmt: skip
        m = t["mean"]
        slope = f"{m['sweep_slope']:.2f}" if m["sweep_slope"] is not None else "—"
        lines.append(f"| **{g}, mean** | | {m['accuracy']:.0%} | {m['adherence_50']:.0%} | "
                     f"{m['spearman_budget_level']:.2f} | | | {slope} | |")
    print("\n".join(lines))
    out = write_json(Path(args.out).with_suffix(".json"), {"files": args.files, "table": table})
    Path(args.out).with_suffix(".md").write_text(
        f"# SFT alone per `length` grouping and seed (`benchmarks/stating_batching.py`)\n\n`{out['command']}`\n\n"
        + "\n".join(lines) + "\n", encoding="utf-8")  # fmt: skip
    return table


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--grouping", choices=GROUPINGS, required=True)
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--prepared", required=True)
    r.add_argument("--recipe", required=True)
    r.add_argument("--work", required=True)
    r.add_argument("--eval-questions", type=int, default=30)
    r.add_argument("--sweep-questions", type=int, default=16)
    r.add_argument("--max-new-tokens", type=int, default=192)
    c = sub.add_parser("collect")
    c.add_argument("files", nargs="+")
    c.add_argument("--out", default=str(RESULTS / "stating_batching.json"))
    args = ap.parse_args(argv)
    return run(args) if args.cmd == "run" else collect(args)


if __name__ == "__main__":
    main()
