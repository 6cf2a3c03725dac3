"""``sblite eval``'s wall time against its batch size, on the same greedy generations.

    OMP_NUM_THREADS=2 python benchmarks/eval_batch.py --model demo-out/run --batch-sizes 16,48,80

Runs ``eval.run.run_eval`` (what ``sblite eval`` and the demo call) once per ``--batch-sizes`` value, in the
order given, on ``--limit`` questions of ``--dataset``: in ``--mode prefill`` with each of ``--budgets``
pre-filled (the demo's pre-fill sweep), or in self / none mode. Generation is greedy, so a batch size may change
only the time — and, in low precision, a tie between two tokens; the script counts the answers whose text differs
from the first batch size's. Reports seconds, generated tokens/s and the first batch size's time over each
one's. JSON → benchmarks/results/eval_batch.json (``--out``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a run directory or model (as sblite eval --model)")
    ap.add_argument("--stage", default=None, help="the run's stage to load (sft, grpo; default: its last)")
    ap.add_argument("--dataset", default="arith-test")
    ap.add_argument("--mode", default="prefill", choices=["prefill", "self", "none"])
    ap.add_argument("--budgets", default="8,16,32,64,128")
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--batch-sizes", default="16,48,80")
    ap.add_argument("--out", default=str(RESULTS / "eval_batch.json"))
    args = ap.parse_args(argv)

    from sblite.eval.run import EvalOptions, run_eval

    sizes = [int(b) for b in args.batch_sizes.split(",")]
    budgets = [int(b) for b in args.budgets.split(",")]
    runs, first = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for bs in sizes:
            t = time.perf_counter()
            r = run_eval(EvalOptions(model=args.model, stage=args.stage, dataset=args.dataset, mode=args.mode,
                                     budgets=budgets, limit=args.limit,
                                     max_new_tokens=args.max_new_tokens, batch_size=bs, out=f"{tmp}/{bs}"))  # fmt: skip
            wall = time.perf_counter() - t
            texts = [rec["text"] for rec in r["records"]]
            first = first or (bs, wall, texts)
            runs[bs] = {
                "wall_s": round(wall, 2),
                "generate_s": round(r["seconds"], 2),
                "generated_tokens": r["generated_tokens"],
                "tokens_per_s": r["tokens_per_s"],
                "answers": len(texts),
                "answers_differing_from_first": sum(a != b for a, b in zip(texts, first[2], strict=True)),
                "speedup_over_first": round(first[1] / wall, 3),
                "accuracy": r["summary"]["overall"]["accuracy"],
            }
            print(f"batch {bs:>3}: {wall:6.1f} s, {r['tokens_per_s']:.1f} tok/s, {first[1] / wall:.2f}× batch "
                  f"{first[0]}; {runs[bs]['answers_differing_from_first']} of {len(texts)} answers differ")  # fmt: skip
    return write_json(args.out, {"args": vars(args), "runs": runs})


if __name__ == "__main__":
    main()
