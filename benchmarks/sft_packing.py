"""Prefix-shared packing of SFT batches (``sft.pack_shared_prompts``) against TRL's padded batches, and the
question order that gives it prompts to share (``sft.budget_rows_by_question``): seconds per SFT step and
the loss, on the same batches, in one run.

    OMP_NUM_THREADS=2 python benchmarks/sft_packing.py                    # 48 GSM8K questions, 24 batches a order, ~6 min
    OMP_NUM_THREADS=2 python benchmarks/sft_packing.py --prepared demo-out/prepared --batches 8

Inputs: the first ``--questions`` GSM8K-train questions (``../shared/data/gsm8k/train.jsonl``) with their
reference solutions as targets (``sblite prepare --labels reference``), or any prepared folder
(``--prepared``). The rows are what sblite trains (``train.datasets.build_sft_dataset``) under the
``smollm2-135m`` recipe with the reproduction's cold start (``COLD_START``: 3-token budget-reading rows at 30
drawn budgets per question, each with its question's prompt, and 2 budget-stating rows per self row, under
``group_by_length``), in ``--dtype`` (bfloat16, as the reproduction). The trainer is the one ``sblite train`` builds (``train.run._sft_trainer``).

Two orders of the same rows, as the trainer's sampler cuts them (seed 0): the random order of the
reproduction today and ``sft.budget_rows_by_question``. From each, ``--batches`` batches spread evenly over
the epoch; each batch is collated both ways from the same rows and run through the trainer's own
``training_step`` (forward and backward, no optimizer step, so the model stays the same), in alternating order:

- ``padded`` (the baseline): TRL's collator, every row padded to the batch's longest;
- ``packed``: sblite's ``PackedCollator`` on the same rows.

Reports per order the tokens computed (the padded batch's size against the packed rows' real tokens),
seconds per step, the speed-up (padded over packed), and the largest relative difference between the two
losses (the packing is exact; only float order differs). An epoch's projected seconds are the mean step
times the steps per epoch. JSON → benchmarks/results/sft_packing.json (``--out``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, SHARED, prepare_gsm8k_reference, write_json  # noqa: E402

#: the reproduction's cold start (benchmarks/reproduce_cpu.py, row "our SFT"), as recipe overrides
COLD_START = ("sft.budget_reading_tokens=3", "sft.budget_reading_samples=30", "sft.budget_reading_prompt=true",
              "sft.budget_stating_rows=2", "sft.trl_args.train_sampling_strategy=group_by_length")  # fmt: skip


def time_order(prepared: Path, work: Path, by_question: bool, n_batches: int, dtype: str) -> dict:
    """Both collations of ``n_batches`` batches of one order, timed through the trainer's ``training_step``."""
    from rich.console import Console
    from trl import SFTConfig

    from sblite.backends import get_backend
    from sblite.data.prepared import load_prepared
    from sblite.recipes import load_recipe
    from sblite.rundir import RunDir
    from sblite.train.datasets import build_sft_dataset, keep_columns
    from sblite.train.run import _args, _sft_trainer

    console = Console(quiet=True)
    cfg = load_recipe("smollm2-135m", [*COLD_START, f"sft.budget_rows_by_question={str(by_question).lower()}",
                                       "sft.pack_shared_prompts=true", f"output_dir={work}", f"model.dtype={dtype}"])  # fmt: skip
    backend, _ = get_backend("hf")
    model, tok = backend.load(cfg.model, cfg.lora, seed=cfg.sft.seed)
    dataset = build_sft_dataset(load_prepared(prepared).sft, cfg, tok)
    run = RunDir(work)
    args = _args(SFTConfig, cfg.sft, backend, cfg, run, "sft", console, strict=False,
                 extra=keep_columns(dataset, cfg.sft.trl_args))  # fmt: skip
    padded_trainer = _sft_trainer(model, tok, dataset, args, "sft", run, console)
    packed_trainer = _sft_trainer(model, tok, dataset, args, "sft", run, console, pack=True)
    rows = padded_trainer.train_dataset.remove_columns([c for c in ("length",) if c in dataset.column_names])
    order = list(padded_trainer._get_train_sampler())
    size = cfg.sft.per_device_train_batch_size
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    picked = [batches[round(j * (len(batches) - 1) / max(n_batches - 1, 1))] for j in range(n_batches)]
    model.train()
    for t in (padded_trainer, packed_trainer):  # what Trainer.train sets before its first step
        t.current_gradient_accumulation_steps = 1
    trainers = {"padded": padded_trainer, "packed": packed_trainer}
    out = []
    for j, batch in enumerate(picked):
        examples = [rows[i] for i in batch]
        inputs = {name: t.data_collator(examples) for name, t in trainers.items()}
        record = {"rows": len(batch), "padded_tokens": int(inputs["padded"]["input_ids"].numel()),
                  "real_tokens": int(inputs["padded"]["attention_mask"].sum()),
                  "packed_tokens": int(inputs["packed"]["packed_tokens"]),
                  "packed_shape": list(inputs["packed"]["input_ids"].shape)}  # fmt: skip
        for name in (("padded", "packed") if j % 2 == 0 else ("packed", "padded")):
            model.zero_grad()
            t0 = time.perf_counter()
            loss = trainers[name].training_step(model, dict(inputs[name]))
            record[f"s_{name}"] = time.perf_counter() - t0
            record[f"loss_{name}"] = float(loss)
        model.zero_grad()
        out.append(record)
        print(f"batch {j + 1}/{n_batches}: {record['padded_tokens']} padded / {record['packed_tokens']} packed "
              f"tokens, {record['s_padded']:.2f} / {record['s_packed']:.2f} s", flush=True)
    s_padded = statistics.mean(r["s_padded"] for r in out)
    s_packed = statistics.mean(r["s_packed"] for r in out)
    return {
        "examples": len(dataset), "steps_per_epoch": len(batches),
        "padded_tokens": sum(r["padded_tokens"] for r in out), "real_tokens": sum(r["real_tokens"] for r in out),
        "packed_tokens": sum(r["packed_tokens"] for r in out),
        "s_per_step_padded": round(s_padded, 3), "s_per_step_packed": round(s_packed, 3),
        "speedup": round(s_padded / s_packed, 3),
        "epoch_s_padded": round(s_padded * len(batches)), "epoch_s_packed": round(s_packed * len(batches)),
        "max_rel_loss_diff": max(abs(r["loss_packed"] - r["loss_padded"]) / abs(r["loss_padded"]) for r in out),
        "batches": out,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=48)
    ap.add_argument("--prepared", help="a prepared folder instead of GSM8K-train (e.g. demo-out/prepared)")
    ap.add_argument("--batches", type=int, default=24, help="batches timed per order, spread over the epoch")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                    help="model.dtype (bfloat16, as the reproduction trains; float32 shows the losses agree to float32's precision)")
    ap.add_argument("--out", default=str(RESULTS / "sft_packing.json"))
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="sft-packing-"))
    if args.prepared:
        prepared, inputs = Path(args.prepared), f"prepared folder {args.prepared}"
    else:
        if not (SHARED / "gsm8k" / "train.jsonl").is_file():
            sys.exit(f"needs {SHARED}/gsm8k/train.jsonl (../shared/data, or SBLITE_SHARED_DATA)")
        prepared = prepare_gsm8k_reference(work, args.questions)
        inputs = f"GSM8K-train, first {args.questions} questions, reference solutions (labels=reference)"
    orders = {}
    for name, by_question in (("random order", False), ("by question", True)):
        orders[name] = time_order(prepared, work / name.replace(" ", "-"), by_question, args.batches, args.dtype)
        o = orders[name]
        print(f"{name}: {o['padded_tokens']} padded → {o['packed_tokens']} packed tokens; "
              f"{o['s_per_step_padded']} → {o['s_per_step_packed']} s/step ({o['speedup']}×); "
              f"epoch {o['epoch_s_padded']} → {o['epoch_s_packed']} s; max loss diff {o['max_rel_loss_diff']:.1e}")
    baseline, best = orders["random order"]["epoch_s_padded"], orders["by question"]["epoch_s_packed"]
    print(f"the reproduction's order padded → by question packed: {baseline} → {best} s per epoch "
          f"({baseline / best:.2f}×)")
    result = {"args": vars(args), "inputs": inputs, "cold_start": list(COLD_START), "baseline": "random order, padded",
              "orders": orders, "epoch_speedup_vs_baseline": round(baseline / best, 3)}  # fmt: skip
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
