"""Budget SFT on this CPU, before and after this project's CPU speed settings: seconds per optimizer step and
the loss each reaches, same model, data, seed and steps, in one run.

    OMP_NUM_THREADS=2 python benchmarks/cpu_train_speed.py                   # 6 settings × 6 steps, ~14 min
    OMP_NUM_THREADS=2 python benchmarks/cpu_train_speed.py --steps 2 --out /tmp/b.json      # a smoke run

Inputs: the first ``--questions`` GSM8K-train questions (``../shared/data/gsm8k/train.jsonl``) with their
reference solutions as targets (``sblite prepare --labels reference``), each row's budget its token length.
Model and settings: the ``smollm2-135m`` recipe (SmolLM2-135M-Instruct, LoRA r=16 on all linears, batch 8),
SFT stage only, ``--steps`` steps. The settings (``SETTINGS``), each a fresh process (``--child``) timed by
TRL's own ``train_runtime``:

- ``before``, the baseline: what the recipe ran as until this script's commit. TRL's ``SFTConfig`` defaults
  ``gradient_checkpointing`` to True, which sblite did not override, so the recipe's
  ``lora.use_gradient_checkpointing: false`` was not honoured; float32; glibc's malloc;
- ``before + tcmalloc``: that with tcmalloc preloaded (below), to tell the two changes apart;
- ``recipe``: the recipe as shipped now (checkpointing off, as it says; float32);
- ``+ tcmalloc``: that with ``--tcmalloc`` preloaded (Debian's ``libtcmalloc-minimal4``; glibc hands each large
  tensor, such as a batch's 8 × length × 49152 logits, back to the kernel and faults it in again next step;
  tcmalloc keeps it). Skipped with a note when the library is absent;
- ``bf16``: ``model.dtype=bfloat16`` (bf16 weights and autocast; LoRA weights and AdamW stay float32);
- ``bf16 + tcmalloc``.

Rounds alternate the order. Each setting's speed-up is the baseline's median s/step over its own. The loss
columns say whether it learns the same thing: its per-step loss against the baseline's (same data order),
the mean absolute difference, and the mean of the last steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, SHARED, prepare_gsm8k_reference, write_json  # noqa: E402

from sblite.doctor import TCMALLOC  # noqa: E402

#: name → (recipe overrides, preload tcmalloc)
SETTINGS: dict[str, tuple[tuple[str, ...], bool]] = {
    "before": (("sft.trl_args.gradient_checkpointing=true",), False),
    "before + tcmalloc": (("sft.trl_args.gradient_checkpointing=true",), True),
    "recipe": ((), False),
    "+ tcmalloc": ((), True),
    "bf16": (("model.dtype=bfloat16",), False),
    "bf16 + tcmalloc": (("model.dtype=bfloat16",), True),
}


def child(args) -> None:
    """One SFT run of ``--steps`` steps under ``--setting``; prints a JSON line with TRL's timing and the losses."""
    from sblite.recipes import load_recipe
    from sblite.train.run import run_training

    run = Path(args.work) / f"run-{len(os.listdir(args.work))}"
    cfg = load_recipe("smollm2-135m", [
        "stages=[sft]", f"data.path={args.data}", f"output_dir={run}", f"sft.max_steps={args.steps}",
        "sft.save_steps=100000", "sft.seed=0", *SETTINGS[args.setting][0],
    ])  # fmt: skip
    run_training(cfg)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r and "train_runtime" not in r]
    runtime = next(r["train_runtime"] for r in records if "train_runtime" in r)
    print("RESULT " + json.dumps({"train_runtime": runtime, "steps": len(losses), "losses": losses}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--questions", type=int, default=256)
    ap.add_argument("--tcmalloc", default=TCMALLOC, help="the tcmalloc library to preload ('' skips those settings)")
    ap.add_argument("--out", default=str(RESULTS / "cpu_train_speed.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--setting", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if not (SHARED / "gsm8k" / "train.jsonl").is_file():
        sys.exit(f"needs {SHARED}/gsm8k/train.jsonl (../shared/data, or SBLITE_SHARED_DATA)")
    names = list(SETTINGS)
    skipped = None
    if not (args.tcmalloc and Path(args.tcmalloc).is_file()):
        names = [n for n in names if not SETTINGS[n][1]]
        skipped = f"{args.tcmalloc or 'tcmalloc'} not found (apt-get install libtcmalloc-minimal4): settings skipped"
        print(skipped)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = prepare_gsm8k_reference(work, args.questions)
        (work / "runs").mkdir()
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
                if SETTINGS[name][1]:
                    env["LD_PRELOAD"] = args.tcmalloc
                cmd = [sys.executable, __file__, "--child", "--setting", name, "--data", str(data),
                       "--work", str(work / "runs"), "--steps", str(args.steps)]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
                if proc.returncode:
                    sys.exit(f"{name} round {r} failed:\n{proc.stderr[-3000:]}")
                line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
                res = json.loads(line.removeprefix("RESULT "))
                res.update(setting=name, overrides=list(SETTINGS[name][0]), ld_preload=env.get("LD_PRELOAD"),
                           round=r, s_per_step=res["train_runtime"] / res["steps"])  # fmt: skip
                runs.append(res)
                print(f"round {r} {name:16s} {res['s_per_step']:.2f} s/step, last loss {res['losses'][-1]:.3f}")
    by = {n: [x for x in runs if x["setting"] == n] for n in names}
    med = {n: statistics.median(x["s_per_step"] for x in rs) for n, rs in by.items()}
    first = {n: rs[0]["losses"] for n, rs in by.items()}
    tail_n = min(4, args.steps)
    base = names[0]
    summary = {
        n: {"s_per_step": med[n], "speedup": med[base] / med[n],
            "loss_last_mean": statistics.mean(first[n][-tail_n:]),
            "mean_abs_loss_diff_vs_baseline": statistics.mean(
                abs(a - b) for a, b in zip(first[n], first[base], strict=True))}
        for n in by
    }  # fmt: skip
    for n, s in summary.items():
        print(f"{n:16s} {s['s_per_step']:6.2f} s/step  {s['speedup']:.2f}× the baseline  "
              f"loss (last {tail_n}) {s['loss_last_mean']:.3f}  mean |Δloss| {s['mean_abs_loss_diff_vs_baseline']:.3f}")
    write_json(Path(args.out), {
        "benchmark": "cpu_train_speed", "cpu": platform.processor() or platform.machine(),
        "args": vars(args), "baseline": base, "skipped": skipped,
        "inputs": f"GSM8K-train, first {args.questions} questions, reference solutions (labels=reference)",
        "summary": summary, "runs": runs,
    })  # fmt: skip


if __name__ == "__main__":
    main()
