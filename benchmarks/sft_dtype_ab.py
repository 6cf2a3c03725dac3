"""Does bfloat16 training keep what the float32 cold start learned? The reproduction's ``our SFT`` (renderings,
self rows, stating rows, reading rows) trained with ``model.dtype=bfloat16``, evaluated exactly as
``reproduce_cpu.py`` evaluated its float32 twin, side by side with that twin's committed figures.

    OMP_NUM_THREADS=2 python benchmarks/sft_dtype_ab.py --run /tmp/sblite-repro-1call/our_SFT \\
        --baseline-dir /tmp/sblite-reproduce/eval

``--run``: a finished bfloat16 run of that row: ``reproduce_cpu.py`` (``--dtype bfloat16``, its default) trains
it first, on the same prepared data and seed as the float32 row of ``benchmarks/results/reproduce_cpu.json``
(``--reference-row``), which is the baseline. ``--baseline-dir``: the work dir's ``eval`` folder holding the
plain base's results, for compression against the same base run. The evals (greedy, the reproduction's
options: arith-test self mode, the pre-fill sweep, GSM8K-test and SVAMP) write under ``--work``; one already
there with the same options is reused. JSON + markdown → benchmarks/results/sft_dtype_ab.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_json  # noqa: E402

SELF = ("accuracy", "format_rate", "mean_generated_tokens", "mean_budget", "adherence_50", "spearman_budget_level",
        "compression")  # fmt: skip
SWEEP = ("slope", "r2", "adherence_50", "accuracy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--baseline-dir", required=True, help="the reproduction work dir's eval/ (base results)")
    ap.add_argument("--reference", default=str(RESULTS / "reproduce_cpu.json"))
    ap.add_argument("--reference-row", default="our SFT + self reference + stating rows")
    ap.add_argument("--work", default="/tmp/ab-eval")
    ap.add_argument("--out", default=str(RESULTS / "sft_dtype_ab"))
    ap.add_argument("--note", default="", help="how --run was trained beyond its recipe (malloc, sblite commit)")
    args = ap.parse_args()

    from reproduce_cpu import _finished_eval
    from rich.console import Console

    from sblite.eval.run import EvalOptions, run_eval

    ref = json.loads(Path(args.reference).read_text(encoding="utf-8"))
    ref_args, row = ref["args"], args.reference_row
    budgets = sorted(int(b) for b in ref["prefill_sweeps"][row]["by_prefill_budget"])
    common = dict(max_new_tokens=ref_args["max_new_tokens"], batch_size=16, seed=ref_args["seed"],
                  instruction_in_user=True, model=args.run)  # fmt: skip
    console = Console()
    got = {}  # dataset (or "sweep") → summary; each eval writes to --work/<short name>
    for short, ds, n, kw in [
        ("self", "arith-test", ref_args["eval_questions"], {"mode": "self"}),
        ("sweep", "arith-test", ref_args["sweep_questions"], {"mode": "prefill", "budgets": budgets}),
        *[(d.split("-")[0], d, ref_args["held_out_questions"], {"mode": "self"})
          for d in ref_args["held_out"].split(",") if d],
    ]:  # fmt: skip
        opts = EvalOptions(dataset=ds, limit=n, out=f"{args.work}/{short}",
                           baseline=f"{args.baseline_dir}/{ds}-base/results.json", **common, **kw)  # fmt: skip
        got["sweep" if short == "sweep" else ds] = _finished_eval(opts) or run_eval(opts, console)["summary"]

    table = {"self": {}, "sweep": {}, "by_budget": {}}
    for d in [k for k in got if k != "sweep"]:
        before = ref["table"][d][row]
        table["self"][d] = {k: (before.get(k), got[d]["overall"].get(k)) for k in SELF}
    before = ref["prefill_sweeps"][row]
    table["sweep"] = {k: (before["overall"][k], got["sweep"]["overall"][k]) for k in SWEEP}
    table["by_budget"] = {
        b: {k: (before["by_prefill_budget"][b][k], got["sweep"]["by_prefill_budget"][b][k])
            for k in ("mean_tokens", "accuracy")}
        for b in before["by_prefill_budget"]
    }  # fmt: skip
    provenance = json.loads((Path(args.run) / "provenance.json").read_text(encoding="utf-8"))
    metrics = [json.loads(x) for x in (Path(args.run) / "metrics.jsonl").read_text().splitlines()]
    runtime = next(m["train_runtime"] for m in metrics if "train_runtime" in m)
    out = Path(args.out)
    result = write_json(out.with_suffix(".json"), {
        "benchmark": "sft_dtype_ab", "args": vars(args), "run_train_runtime_s": runtime,
        "run_recipe": (Path(args.run) / "recipe.resolved.yaml").read_text(encoding="utf-8"),
        "run_provenance": provenance, "reference_command": ref["command"], "table": table,
    }, default=str)  # fmt: skip

    def cell(pair, pct: bool) -> str:
        return " | ".join("—" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.3g}") for v in pair)

    pct = {"accuracy", "format_rate", "adherence_50", "compression"}
    md = ["# Budget SFT in float32 vs bfloat16 (the reproduction's stating-rows cold start)", "",
          f"Command: `{result['command']}`. float32: the row `{row}` of `{args.reference}` "
          f"(`{ref['command']}`). bfloat16: `{args.run}`, SFT {runtime / 60:.0f} min. Same prepared data and seed; "
          "greedy evaluation in float32, the reproduction's options." + (f" {args.note}" if args.note else ""), "",
          "| set | metric | float32 | bfloat16 |", "| --- | --- | ---: | ---: |"]  # fmt: skip
    for d, cells in table["self"].items():
        md += [f"| {d} (self) | {k} | {cell(v, k in pct)} |" for k, v in cells.items()]
    md += [f"| arith-test sweep | {k} | {cell(v, k in pct)} |" for k, v in table["sweep"].items()]
    md += [f"| pre-fill {b} | mean tokens, accuracy | {v['mean_tokens'][0]:.1f}, {100 * v['accuracy'][0]:.0f}% | "
           f"{v['mean_tokens'][1]:.1f}, {100 * v['accuracy'][1]:.0f}% |" for b, v in table["by_budget"].items()]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()
